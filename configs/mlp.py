r"""Study 1: the tapering MLP (Flatten -> Dense 128 -> Dense 64 -> Dense 2) at 100x100.

`get_config("COLOR,STRUCTURE")` with COLOR in gray/color and STRUCTURE in same/taper/double:

  python main.py --config configs/mlp.py:gray,taper --workdir runs/mlp_gray_taper \
      --config.data.name=real_vs_fake_140k --config.data.manual_dir=/path/to/140k

On the built-in dataset (no download):

  python main.py --config configs/mlp.py:gray,taper --workdir runs/mlp_synthetic
"""

import ml_collections

from configs import default

COLORS = ("gray", "color")


def get_config(arg: str = "gray,taper") -> ml_collections.ConfigDict:
  color, structure = (part.strip() for part in arg.split(","))
  if color not in COLORS:
    raise ValueError(f"configs/mlp.py: color must be one of {COLORS}, got {color!r}")
  config = default.get_config()
  config.batch_size = 200
  config.eval_batch_size = 200
  config.num_epochs = 20
  config.learning_rate = 1e-3
  config.data.image_size = 100
  config.data.grayscale = color == "gray"
  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  config.model.node_structure = structure
  config.model.width = 128
  config.augment.device.flip = False
  return config
