"""Study 1's tapering MLP: Flatten -> Dense -> Dense -> Dense(2)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fakeface_jax.models import base

# Hidden layer widths of study 1's node structures, relative to the first layer's width.
NODE_STRUCTURES = {
    "same": (1, 1),
    "taper": (1, 0.5),
    "double": (1, 2),
}


class TaperingMLP(base.Detector):
  """Study 1: Flatten -> Dense -> Dense -> Dense(2), ReLU between.

  With `node_structure="taper"` and `width=128` on 100x100 gray input this is the study's
  128 -> 64 -> 2 network with 1,288,514 parameters.
  """
  node_structure: str = "taper"
  width: int = 128
  num_classes: int = base.NUM_CLASSES

  def __post_init__(self):
    if self.node_structure not in NODE_STRUCTURES:
      raise ValueError(f"unknown node_structure {self.node_structure!r}; choose from "
                       f"{', '.join(NODE_STRUCTURES)}")
    super().__post_init__()

  @property
  def hidden_sizes(self) -> tuple[int, ...]:
    return tuple(int(self.width * r) for r in NODE_STRUCTURES[self.node_structure])

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = images.reshape((images.shape[0], -1))
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(self.num_classes)(x)
