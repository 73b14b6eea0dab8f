r"""The content branch: a model reading the face itself, on general.py's mixture.

  python main.py --config configs/content.py --workdir runs/content --leave_out
  python main.py --config configs/content.py:cnn,pseudo --workdir runs/content_cnn --leave_out

From the repository root with ../shared beside it. Colour faces at 64 px, flipped at
random, trained on the sources and re-saved copies of configs/general.py. Arguments,
comma-separated: `cnn` swaps study 1's MLP (Flatten -> Dense 128 -> Dense 64 -> Dense 2)
for the residual CNN of configs/residual_cnn.py (16, 32, 64 channels, global pooling);
`pseudo` adds general.py's pseudo-fake copies. It reads what a face looks like at low
resolution, where the residual features of configs/general.py read pixel-level traces
that resampling and re-encoding change. Its left-out tables beside general.py's:
docs/results.md, "Unseen sources".
"""

import ml_collections

from configs import general
from configs import mlp
from configs import residual_cnn

OPTIONS = ("cnn", "pseudo")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = [option for option in arg.split(",") if option]
  if not set(options) <= set(OPTIONS):
    raise ValueError(f"configs/content.py takes any of {OPTIONS}, comma-separated, got {arg!r}")
  if "cnn" in options:
    config = residual_cnn.get_config()
    config.model.features = (16, 32, 64)
    config.augment.device.crop_size = 0  # The whole 64 px face, as evaluation sees it.
  else:
    config = mlp.get_config("color,taper")
  mixed = general.get_config("pseudo" if "pseudo" in options else "")
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
