r"""Predicts fake or real for image files and folders with a trained run.

  python -m fakeface_jax.predict --workdir runs/default --output preds.csv photo.jpg dir/
  fakeface-predict --workdir runs/default --format json --output preds.jsonl dir/

Writes one row per file: `path,p_fake,prediction,error`. `prediction` is `fake` when
p_fake >= the run's decision threshold (chosen on its validation split, else 0.5). A
file that cannot be read gets its error and empty fields; the other files go on.
"""

from __future__ import annotations

import csv
import json
import sys
import time

from absl import app
from absl import flags
from absl import logging

from fakeface_jax import checkpointing
from fakeface_jax import cpu_runtime
from fakeface_jax import inference

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command line; called by the entry points, not on import."""
  flags.DEFINE_string("workdir", None, "Run directory written by main.py.")
  flags.DEFINE_string("output", None, "Output file (CSV or JSON lines); '-' for stdout.")
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
    rows[i].update(p_fake=round(float(p), 6),
                   prediction="fake" if predictor.is_fake(p) else "real")
  return rows


def write_rows(rows: list[dict], output: str, fmt: str) -> None:
  stream = sys.stdout if output == "-" else open(output, "w", newline="")
  try:
    if fmt == "json":
      for row in rows:
        stream.write(json.dumps(row) + "\n")
    else:
      writer = csv.DictWriter(stream, fieldnames=COLUMNS)
      writer.writeheader()
      writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
  finally:
    if stream is not sys.stdout:
      stream.close()


def main(argv):
  logging.set_verbosity(logging.WARNING)  # The summary line below is the output.
  paths = inference.find_images(argv[1:])
  if not paths:
    raise app.UsageError("give image files or folders to predict on")
  start = time.perf_counter()
  try:
    predictor = inference.load_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.batch_size)
  except checkpointing.CheckpointError as e:
    sys.exit(f"error: {e}")
  rows = predict_files(predictor, paths)
  write_rows(rows, FLAGS.output, FLAGS.format)
  seconds = time.perf_counter() - start
  fake = sum(r["prediction"] == "fake" for r in rows)
  failed = sum(r["error"] is not None for r in rows)
  print(f"{len(rows)} files: {fake} fake, {len(rows) - fake - failed} real, {failed} "
        f"unreadable (threshold {predictor.threshold:.3f}, checkpoint step "
        f"{predictor.step}) in {seconds:.1f}s -> {FLAGS.output}", file=sys.stderr)


def run():
  """Console-script entry point (`fakeface-predict`)."""
  cpu_runtime.reexec_with_huge_pages()
  define_flags()
  flags.mark_flags_as_required(["workdir", "output"])
  app.run(main)


if __name__ == "__main__":
  run()
