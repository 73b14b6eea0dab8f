"""A small residual CNN with global average pooling, with NPR and spectral options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from fakeface_jax.models import base
from fakeface_jax.models import conv
from fakeface_jax.models import spectral

NPR_INPUTS = ("none", "only", "both")  # Image only, residual only, both.


def upsampling_residual(images: jax.Array) -> jax.Array:
  """NPR (Tan et al. 2024): x - up(down(x)) with 2x nearest-neighbour resampling.

  Generator upsampling correlates neighbouring pixels; the residual keeps exactly the
  part of the image that a 2x2 block average cannot explain.
  """
  n, h, w, c = images.shape
  blocks = images[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
  means = blocks.mean(axis=(2, 4), keepdims=True)
  residual = (blocks - means).reshape(n, h // 2 * 2, w // 2 * 2, c)
  return jnp.pad(residual, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))


class ResidualBlock(nn.Module):
  """Two 3x3 SAME convolutions with GroupNorm and a skip connection."""
  features: int
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    skip = x
    if x.shape[-1] != self.features:
      skip = conv.Conv2D(self.features, (1, 1), use_bias=False, impl=self.conv_impl)(x)
    y = conv.Conv2D(self.features, (3, 3), padding="SAME", use_bias=False,
                    impl=self.conv_impl)(x)
    y = nn.relu(nn.GroupNorm(num_groups=min(8, self.features))(y))
    y = conv.Conv2D(self.features, (3, 3), padding="SAME", use_bias=False,
                    impl=self.conv_impl)(y)
    y = nn.GroupNorm(num_groups=min(8, self.features))(y)
    return nn.relu(y + skip)


class ResidualCNN(base.Detector):
  """A small residual CNN with global average pooling (Wang et al. 2020, NPR options).

  Each stage is one residual block followed by 2x2 average pooling (the first stage
  keeps full resolution, where generator traces live). Options: `npr_input` feeds
  the upsampling residual instead of (or, with "both", beside) the image;
  `spectral_bins` > 0 concatenates the log spectrum to the pooled features.
  GroupNorm rather than BatchNorm keeps the train state free of batch statistics, so
  the shared train step and checkpoints work unchanged.
  """
  size_agnostic: ClassVar[bool] = True
  features: Sequence[int] = (16, 32, 64, 128)
  npr_input: str = "none"  # One of NPR_INPUTS.
  spectral_bins: int = 0
  conv_impl: str = "auto"
  num_classes: int = base.NUM_CLASSES

  def __post_init__(self):
    if self.npr_input not in NPR_INPUTS:
      raise ValueError(f"npr_input must be one of {', '.join(NPR_INPUTS)}, got "
                       f"{self.npr_input!r}")
    conv.resolve_impl(self.conv_impl)  # Refuses an unknown impl now, not at the first call.
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = images - 0.5
    if self.npr_input != "none":
      # The residual is small: scale it to the image's range.
      residual = upsampling_residual(images) * 4.0
      x = residual if self.npr_input == "only" else jnp.concatenate([x, residual], -1)
    for i, width in enumerate(self.features):
      x = ResidualBlock(width, self.conv_impl)(x)
      if i < len(self.features) - 1:
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.mean(axis=(1, 2))
    if self.spectral_bins:
      x = jnp.concatenate(
          [x, nn.LayerNorm()(spectral.spectrum_features(images * 255.0, self.spectral_bins))], -1)
    return nn.Dense(self.num_classes)(x)
