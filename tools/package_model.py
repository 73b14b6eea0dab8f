r"""Rebuilds the detector shipped in the package (fakeface_jax/pretrained) from its config.

  python -m tools.package_model --config configs/general.py --workdir runs/general
  python -m tools.package_model --config configs/general.py:faces \
      --workdir runs/general_faces --output fakeface_jax/pretrained/faces

From the repository root with ../shared beside it. Trains the config in the workdir
(resumable; a finished run is packaged as it is), then writes the run's
best checkpoint, its threshold, config and training domain into fakeface_jax/pretrained,
which `fakeface-predict` uses when no --workdir is given; the second command packages
the run that scores faces inside larger photos (`inference.FACES_DIR`, the packaged
model's `face_model`). It checks that the written
model scores as the run does, that the whole package stays under MAX_MEGABYTES, and records each
source's test accuracy as predict scores it (FIGURES_JSON), which
tests/packaged_model_test.py reproduces. docs/model_card.md holds what the shipped model
was trained on and its figures.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from fakeface_jax import classes
from fakeface_jax import rundir
from fakeface_jax.evaluation import metrics
from fakeface_jax.serving import inference
from fakeface_jax.serving import scoring
from fakeface_jax.training import train

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line; defined when run, not on import (the packaged model's test
  imports this module's figures)."""
  config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Run directory to train in (or read back).")
  flags.DEFINE_string("output", inference.PACKAGED_DIR, "Where to write the packaged model.")
  flags.mark_flags_as_required(["config", "workdir"])

MAX_MEGABYTES = 20


def _test_files(workdir: str, config) -> dict[str, tuple[list[str], list[int]]]:
  """Each clean (not re-saved) source's test files, from the run's manifest, as paths
  under its manual_dir, and their labels (0 fake, 1 real)."""
  sources = {name: source for name, source in config.data.mixture.items()
             if "resave" not in source} if config.data.get("mixture") else {
                 config.data.name: {"manual_dir": config.data.manual_dir}}
  files = {name: ([], []) for name in sources}
  with open(os.path.join(workdir, rundir.MANIFEST_CSV), newline="") as f:
    for row in csv.DictReader(f):
      name, _, path = row["path"].rpartition(":")
      name = name or config.data.name
      if row["role"] == "test" and name in files:
        files[name][0].append(os.path.join(sources[name]["manual_dir"], path))
        files[name][1].append(classes.NAMES.index(row["label"]))
  return files


def verdict_figures(predictor: inference.Predictor, paths: list[str], labels: list[int]
                    ) -> dict[str, float]:
  """Accuracy of the files' verdicts as `fakeface-predict` gives them, the share of real
  files called fake, and of fake files called fake (no verdict counts as wrong)."""
  # No verdict becomes -1: neither class, so wrong and never fake.
  predicted = np.array([-1 if v is None else classes.NAMES.index(v)
                        for v in scoring.image_verdicts(predictor, paths)])
  return {"accuracy": metrics.accuracy(labels, predicted),
          "real_false_positive_rate": metrics.called_fake_share(labels, predicted,
                                                                classes.REAL),
          "fake_recall": metrics.called_fake_share(labels, predicted, classes.FAKE)}


def write_figures(predictor: inference.Predictor, files, path: str) -> dict:
  """`verdict_figures` of each source's test files, written to `path` with the files
  (and read back by the packaged model's test)."""
  figures = {name: {"files": paths, "labels": labels,
                    **verdict_figures(predictor, paths, labels)}
             for name, (paths, labels) in files.items()}
  with open(path, "w") as f:
    json.dump(figures, f)
  return figures


def megabytes_of(directory: str) -> float:
  """The size of every file under `directory`, in MiB."""
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(directory) for name in names) / 2**20


def main(argv: list[str]) -> None:
  del argv
  if not os.path.exists(os.path.join(FLAGS.workdir, rundir.TEST_METRICS_JSON)):
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)  # Written when a run finishes.
  run = inference.load_run(FLAGS.workdir)
  inference.write_packaged(run, FLAGS.output)
  figures = write_figures(run, _test_files(FLAGS.workdir, run.config),
                          os.path.join(FLAGS.output, inference.FIGURES_JSON))
  packaged = inference.load_packaged(directory=FLAGS.output)
  probe = np.random.default_rng(0).integers(
      0, 256, (4, run.image_size, run.image_size, 1 if run.grayscale else 3), np.uint8)
  np.testing.assert_allclose(packaged.p_fake(probe), run.p_fake(probe), atol=1e-6)
  package = os.path.abspath(FLAGS.output)
  if package.startswith(inference.PACKAGED_DIR + os.sep):
    package = inference.PACKAGED_DIR  # The face model counts with the model it serves.
  megabytes = megabytes_of(package)
  if megabytes > MAX_MEGABYTES:
    raise SystemExit(f"the packaged model takes {megabytes:.1f} MB, over {MAX_MEGABYTES} MB")
  print(f"packaged {FLAGS.workdir} (checkpoint step {run.step}, threshold "
        f"{run.threshold:.3f}) into {FLAGS.output}: {megabytes:.2f} MB; test accuracy "
        + ", ".join(f"{name} {f['accuracy']:.3f} ({len(f['files'])} files)"
                    for name, f in figures.items()))


if __name__ == "__main__":
  define_flags()
  app.run(main)
