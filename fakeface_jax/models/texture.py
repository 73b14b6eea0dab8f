"""Co-occurrence features of pixel residuals, as pure JAX functions.

Spatial rich models (Fridrich & Kodovsky 2012), carried to GAN detection by Nataraj et al.
(2019): a high-pass residual of each color plane (first and second differences of
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
# Planes the histograms are counted on, by name: RGB, and JPEG's luma/chroma, in which
# the color correlations of cameras and generators differ from those within a plane.
COLOR_SPACES = ("rgb", "ycbcr")
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


def ycbcr(rgb: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(N, H, W, 3) RGB in [0, 255] -> JPEG's (JFIF) Y, Cb, Cr planes, each (N, H, W).

  Y uses JPEG's BT.601 weights, as the encoder did; it is not the project's gray
  (`preprocessing.GRAY_WEIGHTS`, BT.709, which the studies' inputs follow).

  Cb and Cr are centred on 0 rather than 128: only differences of them are ever used.
  """
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  return (0.299 * r + 0.587 * g + 0.114 * b,
          -0.168736 * r - 0.331264 * g + 0.5 * b,
          0.5 * r - 0.418688 * g - 0.081312 * b)


def color_planes(images: jax.Array, color_space: str) -> tuple[jax.Array, ...]:
  """(N, H, W, C) float pixels -> the planes of `color_space`, each (N, H, W).

  "rgb" takes the image's own channels (one for gray images); "ycbcr" needs RGB.
  """
  if color_space == "rgb":
    return tuple(images[..., c] for c in range(images.shape[-1]))
  if color_space == "ycbcr":
    if images.shape[-1] != 3:
      raise ValueError(f"the ycbcr color space needs RGB images, got {images.shape}")
    return ycbcr(images)
  raise ValueError(f"color_space must be one of {COLOR_SPACES}, got {color_space!r}")


def cross_band_features(images: jax.Array, truncation: int) -> jax.Array:
  """(N, H, W, 3) -> (N, len(RESIDUALS) * (2T + 1)**3): for each residual, the joint
  histogram of its R, G and B values at the same pixel (Barni et al. 2020's cross-band
  co-occurrences, on residuals)."""
  num_levels = 2 * truncation + 1
  channels = [residual_maps(images[..., c]) for c in range(3)]
  features = []
  for red, green, blue in zip(*channels):
    r, g, b = (quantize(x, truncation) for x in (red, green, blue))
    features.append(histogram((r * num_levels + g) * num_levels + b, num_levels**3))
  return jnp.concatenate(features, axis=-1)


def cooccurrence_features(images: jax.Array, truncation: int = 2,
                          color_spaces: tuple[str, ...] = ("rgb",),
                          cross_band: bool = False) -> jax.Array:
  """(N, H, W, C) pixels in [0, 255] -> (N, F) log co-occurrence histograms.

  Per plane of each color space, F grows by len(RESIDUALS) * len(DIRECTIONS) *
  (2T + 1)**3 (1,000 with T = 2: 3,000 for RGB); `cross_band` adds
  `cross_band_features`. Images must be at their native resolution: resizing rewrites
  the very correlations between neighbouring pixels that the histograms count.
  """
  if images.shape[1] < 5 or images.shape[2] < 5:
    raise ValueError(f"co-occurrence features need images of at least 5x5, got {images.shape}")
  images = images.astype(jnp.float32)
  num_levels = 2 * truncation + 1
  features = []
  for color_space in color_spaces:
    for plane in color_planes(images, color_space):
      for residual in residual_maps(plane):
        bins = quantize(residual, truncation)
        for direction in DIRECTIONS:
          features.append(histogram(triple_codes(bins, num_levels, direction), num_levels**3))
  if cross_band:
    if images.shape[-1] != 3:
      raise ValueError(f"cross-band features need RGB images, got {images.shape}")
    features.append(cross_band_features(images, truncation))
  return jnp.log(jnp.concatenate(features, axis=-1) + LOG_EPS)
