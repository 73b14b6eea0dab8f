r"""Rebuilds the detector shipped in the package (fakeface_jax/pretrained) from its config.

  python -m tools.package_model --config configs/general.py --workdir runs/general

From the repository root with ../shared beside it. Trains the config in the workdir
(resumable; a finished run is read back, not trained again), then writes the run's
best checkpoint, its threshold, config and training domain into fakeface_jax/pretrained,
which `fakeface-predict` uses when no --workdir is given. It checks that the written
model scores as the run does, and that it stays under MAX_MEGABYTES. docs/model_card.md
holds what the shipped model was trained on and its figures.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from fakeface_jax import inference
from fakeface_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory to train in (or read back).")
flags.DEFINE_string("output", inference.PACKAGED_DIR, "Where to write the packaged model.")
flags.mark_flags_as_required(["config", "workdir"])

MAX_MEGABYTES = 20


def main(argv: list[str]) -> None:
  del argv
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  run = inference.load_run(FLAGS.workdir)
  inference.write_packaged(run, FLAGS.output)
  packaged = inference.load_packaged(directory=FLAGS.output)
  probe = np.random.default_rng(0).integers(
      0, 256, (4, run.image_size, run.image_size, 1 if run.grayscale else 3), np.uint8)
  np.testing.assert_allclose(packaged.p_fake(probe), run.p_fake(probe), atol=1e-6)
  megabytes = sum(os.path.getsize(os.path.join(FLAGS.output, name))
                  for name in os.listdir(FLAGS.output)) / 2**20
  if megabytes > MAX_MEGABYTES:
    raise SystemExit(f"the packaged model takes {megabytes:.1f} MB, over {MAX_MEGABYTES} MB")
  print(f"packaged {FLAGS.workdir} (checkpoint step {run.step}, threshold "
        f"{run.threshold:.3f}) into {FLAGS.output}: {megabytes:.2f} MB")


if __name__ == "__main__":
  app.run(main)
