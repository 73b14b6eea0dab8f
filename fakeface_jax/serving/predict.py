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
from collections.abc import Callable

import numpy as np
from absl import flags
from absl import logging
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from fakeface_jax import cli
from fakeface_jax.data import jpeg_tables
from fakeface_jax import errors

# Loaded on first use: `--help` and usage errors answer without JAX.
jax = cli.lazy_import("jax")
image_decoding = cli.lazy_import("fakeface_jax.data.image_decoding")
inference = cli.lazy_import("fakeface_jax.serving.inference")

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

COLUMNS = ("path", "face", "x0", "y0", "x1", "y1", "face_score", "p_fake", "prediction",
           "image_prediction", "scored", "warnings", "format", "width", "height",
           "jpeg_quality", "jpeg_grid", "feature_distance", "error")
FACE_COLUMNS = ("face", "x0", "y0", "x1", "y1", "face_score")
# A face row's fields that come from what was scored: its crop, or its whole file.
SCORE_COLUMNS = ("p_fake", "scored", "warnings", "jpeg_grid", "feature_distance")


def _grid(image_format: image_decoding.ImageFormat, tables: np.ndarray) -> str:
  """`jpeg_grid` of a file from the tables decoding gave it (`inference.decode_files`)."""
  if image_format.jpeg_quality is None:
    return "none"
  return "aligned" if tables.any() else "moved"


def predict_files(predictor: inference.Predictor, paths: list[str],
                  transform: Callable[[bytes], bytes] | None = None) -> list[dict]:
  """One row per path, in order (COLUMNS); rows of unreadable files carry only path and
  error. `transform` changes each file's bytes before decoding (evaluate's shifts)."""
  files = inference.decode_files(predictor, paths, transform)
  ok = [i for i, error in enumerate(files.errors) if error is None]
  p_fake, distance = predictor.score(files.images[ok], files.jpeg_tables[ok])
  rows = [dict.fromkeys(COLUMNS) | {"path": path, "error": error}
          for path, error in zip(paths, files.errors)]
  for k, (i, p) in enumerate(zip(ok, p_fake)):
    image_format = files.formats[i]
    d = None if distance is None else float(distance[k])
    verdict = "fake" if predictor.is_fake(p) else "real"
    rows[i].update(
        p_fake=float(p), prediction=verdict, image_prediction=verdict, scored="file",
        warnings=";".join(predictor.warnings(image_format, d)),
        format=image_format.format, width=image_format.width, height=image_format.height,
        jpeg_quality=image_format.jpeg_quality,
        jpeg_grid=_grid(image_format, files.jpeg_tables[i]),
        feature_distance=None if d is None else round(d, 4))
  return rows


def predict_faces(predictor: inference.Predictor, paths: list[str],
                  transform: Callable[[bytes], bytes] | None = None) -> list[dict]:
  """One row per face found (COLUMNS), files in order and each file's faces the largest
  first; one row without a face for a file with none, and one with only path and error
  for a file that could not be read. A face image that `Predictor.scores_whole` takes
  gives its largest face's row the whole file's score; the other faces are scored by
  their crops, with the predictor's `crop_model`. `transform` changes each file's bytes
  before anything else (evaluate's shifts)."""
  cropper = predictor.crop_model
  found = inference.decode_faces(cropper, paths, transform)
  faces_of = [np.flatnonzero(found.file_index == i) for i in range(len(paths))]
  whole = _scored_whole(predictor, paths, found, faces_of, cropper.crop_settings.margin,
                        transform)
  # A file scored whole gives its largest face that score instead of its crop's.
  crops = np.array([k for i, faces in enumerate(faces_of)
                    for k in (faces[1:] if i in whole else faces)], np.int64)
  p_fake, distance = cropper.score(found.images[crops])
  scores = {}
  for n, k in enumerate(crops):
    d = None if distance is None else float(distance[n])
    image_format = found.formats[found.file_index[k]]
    scores[k] = {
        "p_fake": float(p_fake[n]), "scored": "face",
        "prediction": "fake" if cropper.is_fake(p_fake[n]) else "real",
        "warnings": ";".join(cropper.face_warnings(image_format, found.sides[k], d)),
        "jpeg_grid": _grid(image_format, jpeg_tables.NO_TABLES),
        "feature_distance": None if d is None else round(d, 4)}
  for i, file_row in whole.items():
    scores[faces_of[i][0]] = {key: file_row[key] for key in (*SCORE_COLUMNS, "prediction")}
  rows = []
  for i, (path, image_format, error) in enumerate(zip(paths, found.formats, found.errors)):
    row = dict.fromkeys(COLUMNS) | {"path": path, "error": error}
    faces = faces_of[i]
    if error is None:
      row.update(format=image_format.format, width=image_format.width,
                 height=image_format.height, jpeg_quality=image_format.jpeg_quality)
    if error is not None or not len(faces):
      rows.append(row | ({} if error else {"warnings": "no_face",
                                           "jpeg_grid": _grid(image_format,
                                                              jpeg_tables.NO_TABLES)}))
      continue
    verdict = "fake" if any(scores[k]["prediction"] == "fake" for k in faces) else "real"
    for face, k in enumerate(faces):
      x0, y0, x1, y1 = (round(float(v), 1) for v in found.boxes[k])
      rows.append(row | scores[k] | {
          "face": face, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
          "face_score": round(float(found.scores[k]), 4), "image_prediction": verdict})
  return rows


def _scored_whole(predictor: inference.Predictor, paths: list[str],
                  found: inference.DecodedFaces, faces_of: list[np.ndarray],
                  margin: float, transform: Callable[[bytes], bytes] | None
                  ) -> dict[int, dict]:
  """`predict_files`' rows, by file index, of the files that `Predictor.scores_whole`
  scores whole (face images of the kind a whole-image run was trained on), given each
  file's faces, the largest first, cropped at `margin` times FFHQ's side, and each
  file's bytes after `transform`."""
  # A file with a face was read; its square at FFHQ's framing is its crop's / margin.
  chosen = [i for i, faces in enumerate(faces_of) if len(faces)
            and predictor.scores_whole(found.formats[i], found.sides[faces[0]] / margin)]
  resaved = [i for i in chosen if predictor.resaves_whole(found.formats[i])]
  as_is = [i for i in chosen if i not in resaved]
  groups = [(as_is, transform, "file")]
  if resaved:
    as_training_file = predictor.training_domain.as_training_file
    groups.append((resaved, (lambda data: as_training_file(transform(data))) if transform
                   else as_training_file, "resaved"))
  rows = {}
  for files, read, scored in groups:
    for i, row in zip(files, predict_files(predictor, [paths[i] for i in files], read)
                      if files else []):
      # A file that changed between the two reads keeps its crop's score.
      if row["error"] is None:
        rows[i] = row | {"scored": scored}
  return rows


def image_verdicts(predictor: inference.Predictor, paths: list[str]) -> list[str | None]:
  """Each file's verdict (`image_prediction`) as the run was trained to give it: of its
  faces for a run trained on face crops, of the whole file otherwise; None where there
  is none (no face, or unreadable)."""
  by_file = rows_by_file((predict_faces if predictor.trained_on_faces else predict_files)(
      predictor, paths))
  return [by_file[path][0]["image_prediction"] for path in paths]


def rows_by_file(rows: list[dict]) -> dict[str, list[dict]]:
  """Each file's rows (one per face, or one), files in order; a file's first row carries
  what is the file's (its verdict, format, error)."""
  by_file = {}
  for row in rows:
    by_file.setdefault(row["path"], []).append(row)
  return by_file


def image_rows(rows: list[dict]) -> list[dict]:
  """One row per file, files in order: its first row (its verdict, format, error), with
  `p_fake` the highest of its faces' (None for a file with none, or unreadable) and
  `warnings` each of its faces' once: a photo is as fake as its fakest face, as
  `image_prediction` says, and as doubtful as its most doubtful."""
  merged = []
  for own in rows_by_file(rows).values():
    scores = [r["p_fake"] for r in own if r["p_fake"] is not None]
    warned = dict.fromkeys(w for r in own if r["warnings"] for w in r["warnings"].split(";"))
    merged.append(own[0] | {"p_fake": max(scores, default=None),
                            "warnings": ";".join(warned)})
  return merged


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
      writer = csv.DictWriter(stream, fieldnames=COLUMNS)
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
  for number, (path, faces) in enumerate(rows_by_file(rows).items()):
    if faces[0]["error"] is not None:
      continue
    with open(path, "rb") as f:
      photo = _annotated(f.read(), [r for r in faces if r["face"] is not None])
    name = os.path.splitext(os.path.basename(path))[0]
    photo.save(os.path.join(folder, f"{number:04d}_{name}.png"))


def _summary(rows: list[dict], faces: bool) -> str:
  """Counts of the summary line: files by their verdict (a photo is fake when any of its
  faces is), and with faces on, the faces found and the files without one."""
  files = {path: file_rows[0] for path, file_rows in rows_by_file(rows).items()}
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
  rows = (predict_faces if faces else predict_files)(predictor, paths)
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
