r"""A two-run grid on the built-in dataset, to try the sweep runner in a minute:

  python -m fakeface_jax.experiments.sweep --sweep configs/sweeps/tiny.py --workdir runs/sweep_tiny
"""

import ml_collections

_SMALL = {"data.image_size": 32, "data.synthetic.num_train": 64,
          "data.synthetic.num_validation": 32, "data.synthetic.num_test": 32,
          "batch_size": 16, "eval_batch_size": 32}


def get_config() -> ml_collections.ConfigDict:
  sweep = ml_collections.ConfigDict()
  sweep.name = "tiny"
  sweep.runs = [
      {"name": "mlp_gray_taper", "config": "configs/mlp.py:gray,taper",
       "overrides": {**_SMALL, "num_epochs": 2}},
      {"name": "cnn", "config": "configs/default.py",
       "overrides": {**_SMALL, "num_epochs": 2, "model.features": (4, 4, 4, 4)},
       "reported": 0.5},
  ]
  return sweep
