"""Co-occurrence features of pixel residuals, as pure JAX functions.

Spatial rich models (Fridrich & Kodovsky 2012), carried to GAN detection by Nataraj et al.
(2019): a high-pass residual of each colour plane (first and second differences of
neighbouring pixels) is rounded, truncated to [-T, T], and the joint histogram of three
consecutive residual values along a row or a column is counted. Generators and cameras
leave different local correlations between neighbouring pixels, and the histograms keep
exactly that, whatever the image shows.

On the 140k subset the spectrum alone is near chance (see docs/results.md) while these
histograms, with a linear head, separate StyleGAN from FFHQ better than this project's
models trained on the pixels: the traces survive the dataset's resizing as correlations
between neighbours, not as spectral peaks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Residuals of a plane p, each a (N, H-2, W-2) map centred on the same pixels.
RESIDUALS = ("dx", "dy", "dxx", "dyy")
# Each residual's triples are counted along rows and along columns.
DIRECTIONS = ("row", "column")
# Added to the normalised histogram before the log: empty bins stay finite, at a level
# below a single count in a 256x256 image (1 / 65,000).
LOG_EPS = 1e-5


def residual_maps(plane: jax.Array) -> tuple[jax.Array, ...]:
  """(N, H, W) float plane -> its RESIDUALS, in that order, each (N, H-2, W-2)."""
  centre = plane[:, 1:-1, 1:-1]
  right, left = plane[:, 1:-1, 2:], plane[:, 1:-1, :-2]
  down, up = plane[:, 2:, 1:-1], plane[:, :-2, 1:-1]
  return (right - centre, down - centre, right + left - 2 * centre, down + up - 2 * centre)


def quantize(residual: jax.Array, truncation: int) -> jax.Array:
  """Rounds and truncates to [-T, T], shifted to the bin indices 0..2T (int32)."""
  return (jnp.clip(jnp.round(residual), -truncation, truncation) + truncation).astype(jnp.int32)


def triple_codes(bins: jax.Array, num_levels: int, direction: str) -> jax.Array:
  """Bin indices -> one code in [0, num_levels**3) per three consecutive pixels."""
  if direction == "row":
    first, second, third = bins[:, :, :-2], bins[:, :, 1:-1], bins[:, :, 2:]
  elif direction == "column":
    first, second, third = bins[:, :-2], bins[:, 1:-1], bins[:, 2:]
  else:
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
  return (first * num_levels + second) * num_levels + third


def histogram(codes: jax.Array, num_bins: int) -> jax.Array:
  """(N, ...) integer codes -> (N, num_bins) normalised counts."""
  # bincount is a scatter-add: on CPU ~8x faster here than sorting, and ~100x less
  # memory than summing one-hot vectors.
  counts = jax.vmap(lambda c: jnp.bincount(c.ravel(), length=num_bins))(codes)
  return counts.astype(jnp.float32) / codes[0].size


def cooccurrence_features(images: jax.Array, truncation: int = 2) -> jax.Array:
  """(N, H, W, C) pixels in [0, 255] -> (N, F) log co-occurrence histograms.

  F = C * len(RESIDUALS) * len(DIRECTIONS) * (2T + 1)**3: 3,000 for RGB with T = 2.
  Images must be at their native resolution: resizing rewrites the very correlations
  between neighbouring pixels that the histograms count.
  """
  if images.shape[1] < 5 or images.shape[2] < 5:
    raise ValueError(f"co-occurrence features need images of at least 5x5, got {images.shape}")
  num_levels = 2 * truncation + 1
  features = []
  for channel in range(images.shape[-1]):
    for residual in residual_maps(images[..., channel].astype(jnp.float32)):
      bins = quantize(residual, truncation)
      for direction in DIRECTIONS:
        features.append(histogram(triple_codes(bins, num_levels, direction), num_levels**3))
  return jnp.log(jnp.concatenate(features, axis=-1) + LOG_EPS)
