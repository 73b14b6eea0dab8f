r"""Study 2's two runs: the small CNN on ciplab's hard fakes, with an 8:2 split.

  python -m fakeface_jax.experiments.sweep --sweep configs/sweeps/study2.py --workdir runs/study2 \
      --set data.manual_dir=/path/to/real_and_fake_face

Both use rotation and flip augmentation and Keras-style inverse-time decay with
decay = lr / epochs. Run A: 20 images, lr 1e-4, 10 epochs, batch 8. Run B: 400
images, lr 1e-3, 30 epochs, batch 32. Images are balanced real/hard-fake and split
8:2 (stratified, seeded); the study reported about 60-80% accuracy.
"""

import ml_collections


def _run(name: str, images: int, lr: float, epochs: int, batch: int) -> dict:
  return {
      "name": name,
      "config": "configs/cnn.py",
      "overrides": {
          "data.name": "ciplab",
          "data.fake_difficulties": "hard",
          "data.examples_per_class": images // 2,
          "data.test_fraction": 0.2,
          "learning_rate": lr,
          "num_epochs": epochs,
          "batch_size": batch,
          "eval_batch_size": batch,
      },
      "reported": "0.60-0.80",
  }


def get_config() -> ml_collections.ConfigDict:
  sweep = ml_collections.ConfigDict()
  sweep.name = "study2"
  sweep.runs = [
      _run("run_a_20img", 20, 1e-4, 10, 8),
      _run("run_b_400img", 400, 1e-3, 30, 32),
  ]
  return sweep
