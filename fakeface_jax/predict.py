r"""Predicts fake or real for image files and folders with a trained run.

  fakeface-predict --workdir runs/default photo.jpg dir/ > preds.csv
  fakeface-predict --workdir runs/default --format json --output preds.jsonl dir/

Writes one row per file (to stdout unless --output): `path,p_fake,prediction,error`,
p_fake with 6 decimals. `prediction` is `fake` when p_fake >= the run's decision
threshold (chosen on its validation split, else 0.5). A file that cannot be read, or
does not exist, gets its error and empty fields; the other files go on, and the exit
status is then `SOME_FILES_FAILED` (3). A summary line goes to stderr.
"""

from __future__ import annotations

import csv
import json
import sys
import time

from absl import flags
from absl import logging

from fakeface_jax import cli
from fakeface_jax import errors
from fakeface_jax import inference

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

COLUMNS = ("path", "p_fake", "prediction", "error")


def predict_files(predictor: inference.Predictor, paths: list[str]) -> list[dict]:
  """One row per path, in order; rows of unreadable files carry only path and error."""
  images, errors = inference.decode_files(predictor, paths)
  ok = [i for i, error in enumerate(errors) if error is None]
  p_fake = predictor.p_fake(images[ok])
  rows = [{"path": path, "p_fake": None, "prediction": None, "error": error}
          for path, error in zip(paths, errors)]
  for i, p in zip(ok, p_fake):
    rows[i].update(p_fake=float(p),
                   prediction="fake" if predictor.is_fake(p) else "real")
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
  print(f"{len(rows)} files: {fake} fake, {len(rows) - fake - failed} real, {failed} "
        f"unreadable (threshold {predictor.threshold:.3f}, checkpoint step "
        f"{predictor.step}) in {seconds:.1f}s -> "
        f"{'stdout' if FLAGS.output == '-' else FLAGS.output}", file=sys.stderr)
  return SOME_FILES_FAILED if failed else cli.OK


def run() -> None:
  """Console-script entry point (`fakeface-predict`)."""
  cli.run(main, name="fakeface-predict", doc=__doc__, define_flags=define_flags,
          required=("workdir",), arguments="IMAGE_OR_FOLDER...")


if __name__ == "__main__":
  run()
