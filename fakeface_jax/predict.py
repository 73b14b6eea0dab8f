r"""Predicts fake or real for image files and folders with a trained run.

  fakeface-predict --workdir runs/default photo.jpg dir/ > preds.csv
  fakeface-predict --workdir runs/default --format json --output preds.jsonl dir/

Writes one row per file (to stdout unless --output), with the columns
  path,p_fake,prediction,warnings,format,width,height,jpeg_quality,jpeg_grid,
  feature_distance,error
p_fake with 6 decimals. `prediction` is `fake` when p_fake >= the run's decision
threshold (chosen on its validation split, else 0.5). `warnings` lists, separated by
`;`, why the prediction has no basis in the training data (`domain.WARNINGS`):
upscaled, size, format, mode, jpeg_quality, jpeg_grid, features. The file's own
`format`, `width` and `height`, its JPEG quality (estimated from its quantization
tables), `jpeg_grid` (`aligned`: read on its own 8x8 grid with its own tables; `moved`:
a JPEG resized to the model's input; `none`: not a JPEG), and `feature_distance`, its
distance from the training images in the model's embedding (the cut-off is in
WORKDIR/training_domain.json). A file that cannot be read, or does not exist, gets its
error and empty fields; the other files go on, and the exit status is then
`SOME_FILES_FAILED` (3). A summary line goes to stderr.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable

import numpy as np
from absl import flags
from absl import logging

from fakeface_jax import cli
from fakeface_jax import errors
from fakeface_jax import inference
from fakeface_jax.data import image_decoding

FLAGS = flags.FLAGS

# Exit status when some inputs got an error row instead of a prediction.
SOME_FILES_FAILED = 3


def define_flags() -> None:
  """Defines the command line; called by the entry points, not on import."""
  flags.DEFINE_string("workdir", None, "Run directory written by fakeface-train.")
  flags.DEFINE_string("output", "-", "Output file (CSV or JSON lines); '-' for stdout.")
  flags.DEFINE_string("checkpoint", "best", "best, last, or a step number.")
  flags.DEFINE_enum("format", "csv", ["csv", "json"], "Output format.")
  flags.DEFINE_integer("batch_size", 64, "Images per compiled batch.")

COLUMNS = ("path", "p_fake", "prediction", "warnings", "format", "width", "height",
           "jpeg_quality", "jpeg_grid", "feature_distance", "error")


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
    rows[i].update(
        p_fake=float(p), prediction="fake" if predictor.is_fake(p) else "real",
        warnings=";".join(predictor.warnings(image_format, d)),
        format=image_format.format, width=image_format.width, height=image_format.height,
        jpeg_quality=image_format.jpeg_quality,
        jpeg_grid=_grid(image_format, files.jpeg_tables[i]),
        feature_distance=None if d is None else round(d, 4))
  return rows


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


def main(argv: list[str]) -> int:
  logging.set_verbosity(logging.WARNING)  # The summary line below is the output.
  start = time.perf_counter()
  predictor = inference.load_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.batch_size)
  paths = inference.find_images(argv[1:])
  if not paths:
    raise errors.UserError(f"no image files in {' '.join(argv[1:])}")
  rows = predict_files(predictor, paths)
  write_rows(rows, FLAGS.output, FLAGS.format)
  seconds = time.perf_counter() - start
  fake = sum(r["prediction"] == "fake" for r in rows)
  failed = sum(r["error"] is not None for r in rows)
  warned = sum(bool(r["warnings"]) for r in rows)
  print(f"{len(rows)} files: {fake} fake, {len(rows) - fake - failed} real, {failed} "
        f"unreadable, {warned} with warnings (threshold {predictor.threshold:.3f}, "
        f"checkpoint step {predictor.step}) in {seconds:.1f}s -> "
        f"{'stdout' if FLAGS.output == '-' else FLAGS.output}", file=sys.stderr)
  if predictor.training_domain is None:
    print(f"note: {FLAGS.workdir} records no description of its training data (trained "
          "before it was recorded): only the 'upscaled' warning is checked; retrain the "
          "run to get every warning", file=sys.stderr)
  return SOME_FILES_FAILED if failed else cli.OK


def run() -> None:
  """Console-script entry point (`fakeface-predict`)."""
  cli.run(main, name="fakeface-predict", doc=__doc__, define_flags=define_flags,
          required=("workdir",), arguments="IMAGE_OR_FOLDER...")


if __name__ == "__main__":
  run()
