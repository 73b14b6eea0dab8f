r"""Spectral baseline (Durall et al. 2020): ring-averaged log power spectrum -> logistic.

  python main.py --config configs/spectral.py --workdir runs/spectral_140k \
      --config.data.name=real_vs_fake_140k --config.data.manual_dir=/path/to/140k

On the built-in dataset (no download):
  python main.py --config configs/spectral.py --workdir runs/spectral
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.batch_size = 64
  config.num_epochs = 30
  config.learning_rate = 3e-3
  config.lr_schedule = "cosine"
  config.data.image_size = 256  # Native size of the 140k images: keep every frequency.
  config.data.grayscale = True
  config.model = ml_collections.ConfigDict()
  config.model.name = "spectral"
  config.model.num_bins = 128
  config.model.hidden = ()
  config.augment.device.flip = False
  return config
