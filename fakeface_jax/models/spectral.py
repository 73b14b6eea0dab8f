"""Frequency-domain features as pure JAX functions (shared with the analysis), and the
spectral baseline model on them.

The azimuthally averaged log power spectrum (Durall et al. 2020) summarises how much
energy an image has at each spatial frequency, whatever the direction; generator
upsampling tends to leave its mark at the high end.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fakeface_jax.data import preprocessing
from fakeface_jax.models import base

# Added to |F|^2 before the log. Far below the power of uint8 rounding noise at the
# 0-255 scale (about H*W/12), so real images never see it, while empty rings stay at a
# finite level instead of float32 noise around log(1e-8).
LOG_EPS = 1e-3


@functools.cache
def ring_weights(height: int, width: int, num_bins: int) -> np.ndarray:
  """(H*W, num_bins) matrix averaging each ring of integer radius about the FFT centre."""
  # After fftshift the zero frequency sits at (H//2, W//2) for even and odd sizes alike.
  y, x = np.indices((height, width))
  radius = np.rint(np.hypot(y - height // 2, x - width // 2)).astype(np.int64).ravel()
  inside = radius < num_bins
  weights = np.zeros((height * width, num_bins), np.float32)
  weights[np.flatnonzero(inside), radius[inside]] = 1
  counts = weights.sum(axis=0)
  # Every ring below min(H, W)//2 is non-empty; a larger num_bins can leave empty ones.
  return weights / np.maximum(counts, 1)


def radial_log_power(gray: jax.Array, num_bins: int) -> jax.Array:
  """(N, H, W) gray images -> (N, num_bins) ring-averaged log(|FFT|^2 + LOG_EPS)."""
  n, height, width = gray.shape
  spectrum = jnp.fft.fftshift(jnp.fft.fft2(gray), axes=(-2, -1))
  log_power = jnp.log(jnp.abs(spectrum) ** 2 + LOG_EPS)
  # A matmul with a constant averaging matrix is one fused op and vmaps for free,
  # where a per-ring loop or scatter would not.
  weights = jnp.asarray(ring_weights(height, width, num_bins))
  return log_power.reshape(n, height * width) @ weights


def spectrum_features(images: jax.Array, num_bins: int) -> jax.Array:
  """Ring-averaged log power spectrum of the gray image, per image (N, num_bins)."""
  return radial_log_power(preprocessing.gray_plane(images), num_bins)


class SpectralClassifier(base.Detector):
  """Durall et al. (2020): azimuthally averaged log power spectrum -> a small classifier.

  The spectrum goes through LayerNorm so that the head sees its shape rather than the
  overall image energy; `hidden=()` makes the head logistic regression.
  """
  num_bins: int = 64
  hidden: Sequence[int] = ()
  num_classes: int = base.NUM_CLASSES
  fixed_features: ClassVar[bool] = True

  def features(self, images: jnp.ndarray) -> jnp.ndarray:
    """The parameter-free part: float images in [0, 1] -> (N, num_bins) spectrum."""
    return spectrum_features(images * 255.0, self.num_bins)

  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    return self.head(self.features(images), train)

  @nn.compact
  def head(self, features: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """(N, num_bins) `features` -> (N, 2) logits: every parameter of the model."""
    del train  # Same in training and evaluation.
    x = nn.LayerNorm()(features)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)
