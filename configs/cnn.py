r"""Study 2: the four-conv, two-pool CNN with rotation and flip augmentation.

Adam with Keras-style inverse-time decay (lr / (1 + decay * step), decay = lr / epochs),
study 2's run B settings (lr 1e-3, 30 epochs, batch 32), at 128x128 color:

  python main.py --config configs/cnn.py --workdir runs/cnn \
      --config.data.name=ciplab --config.data.manual_dir=/path/to/real_and_fake_face

On the built-in dataset (no download):

  python main.py --config configs/cnn.py --workdir runs/cnn_synthetic
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 30
  config.learning_rate = 1e-3
  config.lr_schedule = "inverse_time"
  config.data.image_size = 128
  config.model.features = (32, 32, 64, 64)
  config.augment.device.flip = True
  config.augment.device.rotation_degrees = 20.0
  return config
