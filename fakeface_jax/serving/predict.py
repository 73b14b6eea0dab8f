r"""Predicts fake or real for the faces in image files and folders with a trained run.

  fakeface-predict --workdir runs/default photo.jpg dir/ > preds.csv
  fakeface-predict photo.jpg                  # the detector shipped in the package
  fakeface-predict --workdir runs/default --format json --output preds.jsonl dir/
  fakeface-predict --workdir runs/default --annotate annotated/ photo.jpg

Finds every face in each photo (`data.faces`), crops it aligned at the model's input
size as training framed its faces (`data.face_crop`), and writes one row per face (to
stdout unless --output), with the columns
  path,face,x0,y0,x1,y1,face_score,p_fake,prediction,image_prediction,scored,warnings,
  format,width,height,jpeg_quality,jpeg_grid,feature_distance,error
`face` numbers a photo's faces from 0, the largest first; x0..y1 is the detector's
box in the photo's pixels (after its EXIF orientation) and `face_score` its confidence.
p_fake has 6 decimals. `prediction` is `fake` when p_fake >= the run's decision
threshold (chosen on its validation split, else 0.5); `image_prediction`, on each of a
photo's rows, is `fake` when any of its faces is. `scored` says what p_fake is of: the
face's crop (`face`), the whole file (`file`), or the whole file made as the training
files were made from larger originals (`resaved`: `TrainingDomain.as_training_file`).
A run trained on whole face images scores a photo that is one of them whole, as it was
trained (`Predictor.scores_whole`): as it is where its size is among the training
images' and its largest face spans at least half its shorter side; re-saved at their
size where it is larger and its face spans at least 0.85 of it, as in an original of
such an image. That score goes on its largest face's row. A photo with no face gets one
row with an empty `face`, no score and the warning `no_face`. `--faces off` scores each
whole file instead, one row per file with the face columns empty.

`warnings` lists, separated by `;`, why a prediction has no basis in the training data
(`domain.WARNINGS`): small_face (the face's square is smaller than the model's input, so
upscaled; `upscaled` for a whole file), size (the face's size in pixels, or the whole
file's, outside the training images' range), format, mode, jpeg_quality, jpeg_grid,
features. The file's own `format`, `width` and `height`, its JPEG quality (estimated
from its quantization tables), `jpeg_grid` (`aligned`: read on its own 8x8 grid with
its own tables; `moved`: resized or cropped off it, as every face crop is; `none`: not
a JPEG), and `feature_distance`, its distance from the training images in the model's
embedding (the cut-off is in WORKDIR/training_domain.json). A file that cannot be
read, or does not exist, gets its error and empty fields; the other files go on, and
the exit status is then `SOME_FILES_FAILED` (3). A summary line goes to stderr.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time

from absl import flags
from absl import logging
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from fakeface_jax import cli
from fakeface_jax import errors

# Loaded on first use: `--help` and usage errors answer without JAX.
jax = cli.lazy_import("jax")
image_decoding = cli.lazy_import("fakeface_jax.data.image_decoding")
inference = cli.lazy_import("fakeface_jax.serving.inference")
scoring = cli.lazy_import("fakeface_jax.serving.scoring")

FLAGS = flags.FLAGS

# Exit status when some inputs got an error row instead of a prediction.
SOME_FILES_FAILED = 3


def define_flags() -> None:
  """Defines the command line; called by the entry points, not on import."""
  flags.DEFINE_string("workdir", None, "Run directory written by fakeface-train; without "
                      "it, the detector shipped in the package (docs/model_card.md).")
  flags.DEFINE_string("output", "-", "Output file (CSV or JSON lines); '-' for stdout.")
  flags.DEFINE_string("checkpoint", "best", "best, last, or a step number.")
  flags.DEFINE_enum("format", "csv", ["csv", "json"], "Output format.")
  # Small: a photo or two, the usual call, pays for a whole batch of the model's features.
  flags.DEFINE_integer("batch_size", 8, "Faces (or files) per compiled batch.")
  flags.DEFINE_enum("faces", "on", ["on", "off"],
                    "on: find the faces and score each; off: score each whole file.")
  flags.DEFINE_string("annotate", None, "Folder to write each input into as a PNG with "
                      "its faces' boxes and p_fake drawn.")

def _p_fake_text(p_fake: float | None) -> str:
  # One fixed format in CSV and JSON: json.dumps would write 1e-07 and 1.0.
  return "" if p_fake is None else f"{p_fake:.6f}"


def _json_line(row: dict) -> str:
  # A fixed-point literal is still a JSON number; null for unreadable files.
  fields = (f"{json.dumps(k)}: {_p_fake_text(v) or 'null'}" if k == "p_fake"
            else f"{json.dumps(k)}: {json.dumps(v)}" for k, v in row.items())
  return "{" + ", ".join(fields) + "}\n"


def write_rows(rows: list[dict], output: str, fmt: str) -> None:
  """Writes rows as CSV or JSON lines to the file `output`, or to stdout for '-'."""
  stream = sys.stdout if output == "-" else open(output, "w", newline="")
  try:
    if fmt == "json":
      stream.writelines(_json_line(row) for row in rows)
    else:
      writer = csv.DictWriter(stream, fieldnames=scoring.COLUMNS)
      writer.writeheader()
      writer.writerows({k: "" if v is None else v for k, v in row.items()}
                       | {"p_fake": _p_fake_text(row["p_fake"])} for row in rows)
  finally:
    if stream is not sys.stdout:
      stream.close()


def _annotated(data: bytes, faces: list[dict]) -> Image.Image:
  """The photo with each face's box and p_fake drawn: red for fake, green for real."""
  photo = Image.fromarray(image_decoding.decode_photo(data)[0])
  draw = ImageDraw.Draw(photo)
  width = max(2, round(max(photo.size) / 300))
  font = ImageFont.load_default(size=max(12, round(max(photo.size) / 40)))
  for face in faces:
    color = (230, 40, 40) if face["prediction"] == "fake" else (40, 200, 60)
    box = [face[k] for k in ("x0", "y0", "x1", "y1")]
    draw.rectangle(box, outline=color, width=width)
    draw.text((box[0], box[1] - width), f"{face['face']}: {face['p_fake']:.2f}", fill=color,
              font=font, anchor="lb", stroke_width=max(1, width // 2), stroke_fill="black")
  return photo


def annotate(rows: list[dict], folder: str) -> None:
  """Writes each readable input to `folder` as NNNN_NAME.png (NNNN its place among the
  inputs, so names never clash) with its faces drawn."""
  os.makedirs(folder, exist_ok=True)
  for number, (path, faces) in enumerate(scoring.rows_by_file(rows).items()):
    if faces[0]["error"] is not None:
      continue
    with open(path, "rb") as f:
      photo = _annotated(f.read(), [r for r in faces if r["face"] is not None])
    name = os.path.splitext(os.path.basename(path))[0]
    photo.save(os.path.join(folder, f"{number:04d}_{name}.png"))


def _summary(rows: list[dict], faces: bool) -> str:
  """Counts of the summary line: files by their verdict (a photo is fake when any of its
  faces is), and with faces on, the faces found and the files without one."""
  files = {path: file_rows[0] for path, file_rows in scoring.rows_by_file(rows).items()}
  verdicts = [r["image_prediction"] for r in files.values()]
  failed = sum(r["error"] is not None for r in files.values())
  warned = len({r["path"] for r in rows if r["warnings"] and r["warnings"] != "no_face"})
  text = f"{len(files)} files"
  if faces:
    found = sum(r["face"] is not None for r in rows)
    no_face = sum(r["warnings"] == "no_face" for r in files.values())
    text += f" ({found} faces, {no_face} without a face)"
  return (f"{text}: {verdicts.count('fake')} fake, {verdicts.count('real')} real, {failed} "
          f"unreadable, {warned} with warnings")


def _models(predictor: inference.Predictor, faces: bool) -> str:
  """The summary's thresholds and checkpoints: of the face model too, where one scored
  the faces in larger photos at its own threshold."""
  text = f"threshold {predictor.threshold:.3f}, checkpoint step {predictor.step}"
  if faces and predictor.face_model is not None:
    text += (f"; faces in larger photos: threshold {predictor.face_model.threshold:.3f}, "
             f"step {predictor.face_model.step}")
  return text


def use_compilation_cache() -> None:
  """Keeps compiled programs in the user's cache folder, so that a later predict loads
  them instead of compiling (seconds of a short run); JAX_COMPILATION_CACHE_DIR, where
  set, is used instead."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  jax.config.update("jax_compilation_cache_dir", os.path.join(cache, "fakeface_jax", "jax"))
  # Every program: predict's are small and compile in a fraction of a second each.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def main(argv: list[str]) -> int:
  logging.set_verbosity(logging.WARNING)  # The summary line below is the output.
  start = time.perf_counter()
  predictor = (inference.load_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.batch_size)
               if FLAGS.workdir else inference.load_packaged(FLAGS.batch_size))
  paths = inference.find_images(argv[1:])
  if not paths:
    raise errors.UserError(f"no image files in {' '.join(argv[1:])}")
  faces = FLAGS.faces == "on"
  rows = (scoring.predict_faces if faces else scoring.predict_files)(predictor, paths)
  write_rows(rows, FLAGS.output, FLAGS.format)
  if FLAGS.annotate:
    annotate(rows, FLAGS.annotate)
  seconds = time.perf_counter() - start
  print(f"{_summary(rows, faces)} ({_models(predictor, faces)}) in {seconds:.1f}s -> "
        f"{'stdout' if FLAGS.output == '-' else FLAGS.output}", file=sys.stderr)
  if predictor.training_domain is None:
    print(f"note: {FLAGS.workdir} records no description of its training data (trained "
          "before it was recorded): only the 'upscaled' warning is checked; retrain the "
          "run to get every warning", file=sys.stderr)
  return SOME_FILES_FAILED if any(r["error"] for r in rows) else cli.OK


def _command(argv: list[str]) -> int:
  """`main` with the user's compilation cache: the command's choice, not the library's
  (tests and other callers of `main` choose their own)."""
  use_compilation_cache()
  return main(argv)


def run() -> None:
  """Console-script entry point (`fakeface-predict`)."""
  cli.run(_command, name="fakeface-predict", doc=__doc__, define_flags=define_flags,
          arguments="IMAGE_OR_FOLDER...", huge_pages=False)


if __name__ == "__main__":
  run()
