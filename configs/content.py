r"""The content branch: study 1's MLP reading the face itself, on general.py's mixture.

  python main.py --config configs/content.py --workdir runs/content --leave_out

From the repository root with ../shared beside it. Flatten -> Dense 128 -> Dense 64 ->
Dense 2 on colour faces at 64 px, flipped at random, trained on the sources and re-saved
copies of configs/general.py (`:pseudo` adds its pseudo-fake copies too). It reads what a
face looks like at low resolution, where the residual features of configs/general.py
read pixel-level traces that resampling and re-encoding change. Its left-out table
beside general.py's: docs/results.md, "Unseen sources".
"""

import ml_collections

from configs import general
from configs import mlp


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = mlp.get_config("color,taper")
  mixed = general.get_config(arg)
  config.data.mixture = mixed.data.mixture
  config.data.validation_fraction = mixed.data.validation_fraction
  config.max_real_fpr = mixed.max_real_fpr
  # Low resolution: what the face is, not how its pixels were made.
  config.data.image_size = 64
  config.batch_size = 64
  config.eval_batch_size = 256
  config.num_epochs = 20
  config.augment.device.flip = True
  return config
