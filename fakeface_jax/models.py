"""Flax linen models: study 1's tapering MLP and study 2's small ConvNet.

Models take float images in [0, 1] (the input pipeline's `preprocessing.rescale` is the
studies' `Rescaling(1/255)` layer) of shape (N, H, W, C) and return logits for the two
classes, 0 = fake and 1 = real.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fakeface_jax import conv

NUM_CLASSES = 2

# Hidden layer widths of study 1's node structures, relative to the first layer's width.
NODE_STRUCTURES = {
    "same": (1, 1),
    "taper": (1, 0.5),
    "double": (1, 2),
}


class TaperingMLP(nn.Module):
  """Study 1: Flatten -> Dense -> Dense -> Dense(2), ReLU between.

  With `node_structure="taper"` and `width=128` on 100x100 gray input this is the study's
  128 -> 64 -> 2 network with 1,288,514 parameters.
  """
  node_structure: str = "taper"
  width: int = 128
  num_classes: int = NUM_CLASSES

  @property
  def hidden_sizes(self) -> tuple[int, ...]:
    return tuple(int(self.width * r) for r in NODE_STRUCTURES[self.node_structure])

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = images.reshape((images.shape[0], -1))
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(self.num_classes)(x)


class ConvNet(nn.Module):
  """Study 2: pairs of 3x3 VALID ReLU convolutions, each pair followed by 2x2 max-pooling,
  then flatten and dense layers to two logits.

  The default `features=(32, 32, 64, 64)` is the study's four-conv, two-pool network.
  """
  features: Sequence[int] = (32, 32, 64, 64)
  dense_features: Sequence[int] = ()
  conv_impl: str = "auto"
  num_classes: int = NUM_CLASSES

  def feature_map_size(self, image_size: int) -> int:
    """Spatial size after the conv stack; must be >= 1 for an image to fit."""
    size = image_size
    for i, _ in enumerate(self.features):
      size -= 2
      if i % 2 == 1:
        size //= 2
    return size

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = images
    for i, width in enumerate(self.features):
      x = nn.relu(conv.Conv2D(width, (3, 3), padding="VALID", impl=self.conv_impl)(x))
      if i % 2 == 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    for width in self.dense_features:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": TaperingMLP,
    "cnn": ConvNet,
}


def create_model(model_config: Any) -> nn.Module:
  """Builds the model named by `model_config.name`, passing its other keys as fields."""
  kwargs = {k: v for k, v in model_config.items() if k != "name"}
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  return MODELS[model_config.name](**kwargs)
