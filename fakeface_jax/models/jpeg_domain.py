"""JPEG-domain features, pure JAX: quantized DCT coefficients (Frank et al. 2020; Kodovsky &
Fridrich's JPEG rich model, 2012) and DCT residuals (DCTR, Holub & Fridrich 2015).

A JPEG file stores, for each 8x8 block of the Y, Cb and Cr planes, the DCT coefficients
divided by a quantization table and rounded. Decoding and re-doing the forward transform
on the decoded pixels gives those integers back to within a few hundredths (measured on
the 140k subset: mean distance to the nearest integer 0.013-0.019), so the coefficients
the encoder chose can be read from the pixels alone, as long as the block grid starts at
the top-left corner and the tables are known: each image's own, read from its file
(`data.jpeg_tables`). An image without them (not a JPEG, or resized so that its grid no
longer lines up) is quantized with a fallback quality's standard tables, and its DCTR
histograms are pooled over the grid positions, since it has no grid to place them on.

How often each integer occurs at each of the 64 frequencies, and how pairs of
coefficients co-occur within a block and between neighbouring blocks, describe the image
the encoder saw more finely than pixels do. DCTR looks at the same quantization from
every position rather than only the grid's: the DCT of the 8x8 window at each pixel,
histogrammed by where the window sits relative to the grid. On the 140k subset DCTR is
the strongest single cue this project has found that separates StyleGAN from FFHQ
(docs/results.md).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fakeface_jax.data import jpeg_tables
from fakeface_jax.models import texture

BLOCK = 8
# Neighbouring coefficient pairs whose joint histograms are counted, as the axes of an
# (N, block row, block column, frequency row, frequency column) array along which the
# neighbour is one step further: the next frequency within a block, and the same
# frequency in the next block.
NEIGHBOURS = {
    "intra_right": (4,), "intra_down": (3,), "intra_diagonal": (3, 4),
    "inter_right": (2,), "inter_down": (1,), "inter_diagonal": (1, 2),
}


def dct_matrix() -> np.ndarray:
  """Orthonormal 8-point DCT-II matrix: coefficients = D @ block @ D.T (JPEG's transform)."""
  k = np.arange(BLOCK)[:, None]
  n = np.arange(BLOCK)[None, :]
  d = np.cos(math.pi * (2 * n + 1) * k / (2 * BLOCK)) * math.sqrt(2 / BLOCK)
  d[0] /= math.sqrt(2)
  return d.astype(np.float32)


def block_dct(plane: jax.Array) -> jax.Array:
  """(N, H, W) -> (N, H/8, W/8, 8, 8) DCT of the 8x8 blocks of a grid from the top-left.

  A trailing partial block (H or W not a multiple of 8) is dropped, as it would be padded
  by the encoder with content this function cannot see.
  """
  n, h, w = plane.shape
  rows, cols = h // BLOCK, w // BLOCK
  blocks = plane[:, :rows * BLOCK, :cols * BLOCK].reshape(n, rows, BLOCK, cols, BLOCK)
  d = jnp.asarray(dct_matrix())
  return jnp.einsum("ki,nbicj,lj->nbckl", d, blocks, d)


def subsample_2x2(plane: jax.Array) -> jax.Array:
  """(N, H, W) -> (N, H/2, W/2) means of 2x2 pixels: libjpeg's 4:2:0 chroma subsampling."""
  n, h, w = plane.shape
  return plane[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2).mean((2, 4))


def _check_rgb_of_two_blocks(images: jax.Array, what: str) -> None:
  """Refuses anything but (N, H, W, 3) images with H and W of at least 16 (two blocks)."""
  if images.shape[-1] != 3 or images.shape[1] < 2 * BLOCK or images.shape[2] < 2 * BLOCK:
    raise ValueError(f"{what} need RGB images of at least 16x16, got {images.shape}")


def image_tables(tables: jax.Array | None, num_images: int,
                 fallback_quality: int) -> tuple[jax.Array, jax.Array]:
  """Each image's (2, 8, 8) tables, all zero where it has no grid (None: every image
  has the fallback's) -> float32 (N, 2, 8, 8) tables to quantize with, the standard
  ones of `fallback_quality` where an image has none, and whether it has a grid (N,)."""
  fallback = jnp.asarray(jpeg_tables.standard_tables(fallback_quality), jnp.float32)
  if tables is None:
    return (jnp.broadcast_to(fallback, (num_images, 2, BLOCK, BLOCK)),
            jnp.ones((num_images,), bool))
  tables = jnp.asarray(tables, jnp.float32)
  has_grid = tables.reshape(num_images, -1).max(-1) > 0
  return jnp.where(has_grid[:, None, None, None], tables, fallback), has_grid


def estimated_quality(luminance: jax.Array) -> jax.Array:
  """(N, 8, 8) luminance tables -> (N,) nearest libjpeg quality
  (`jpeg_tables.estimate_quality`, jit-able)."""
  standard = jnp.asarray(jpeg_tables.STANDARD_LUMINANCE, jnp.float32)
  distances = jnp.abs(standard[None] - luminance[:, None]).sum(axis=(2, 3))
  return jnp.asarray(jpeg_tables.QUALITIES)[jnp.argmin(distances, axis=1)]


def quantized_coefficients(images: jax.Array, tables: jax.Array) -> list[jax.Array]:
  """(N, H, W, 3) RGB pixels in [0, 255] and float (N, 2, 8, 8) luminance and
  chrominance tables (`image_tables`) -> the rounded Y, Cb, Cr JPEG coefficients.

  Each is an int32 (N, rows, cols, 8, 8) array. Chroma is subsampled 2x2 first, as
  libjpeg's default encoding (and the 140k subset's) does.
  """
  _check_rgb_of_two_blocks(images, "JPEG features")
  y, cb, cr = texture.ycbcr(images.astype(jnp.float32))
  luminance = tables[:, 0, None, None]
  chrominance = tables[:, 1, None, None]
  return [jnp.round(block_dct(y - 128.0) / luminance).astype(jnp.int32)] + [
      jnp.round(block_dct(subsample_2x2(c)) / chrominance).astype(jnp.int32)
      for c in (cb, cr)]


def coefficient_histograms(coefficients: jax.Array, truncation: int) -> jax.Array:
  """(N, rows, cols, 8, 8) integers -> (N, 64 * (2T + 1)): per frequency, how often each
  value in [-T, T] occurs (values beyond are counted at +-T)."""
  n = coefficients.shape[0]
  bins = texture.quantize(coefficients, truncation).reshape(n, -1, BLOCK * BLOCK)
  num_levels = 2 * truncation + 1
  codes = jnp.arange(BLOCK * BLOCK) * num_levels + bins
  return texture.histogram(codes, BLOCK * BLOCK * num_levels) * BLOCK * BLOCK


def shifted_pairs(array: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """Each element of `array` (N, ...) and its neighbour one step further along `axes`."""
  first = tuple(slice(None, -1) if a in axes else slice(None) for a in range(array.ndim))
  second = tuple(slice(1, None) if a in axes else slice(None) for a in range(array.ndim))
  return array[first], array[second]


def coefficient_cooccurrences(coefficients: jax.Array, truncation: int) -> jax.Array:
  """(N, rows, cols, 8, 8) integers -> (N, len(NEIGHBOURS) * 64 * (2T + 1)**2): for each
  neighbour relation and frequency, the joint histogram of a coefficient and its
  neighbour, both truncated to [-T, T]."""
  n = coefficients.shape[0]
  bins = texture.quantize(coefficients, truncation)
  num_levels = 2 * truncation + 1
  frequency = jnp.arange(BLOCK * BLOCK).reshape(BLOCK, BLOCK)
  features = []
  for axes in NEIGHBOURS.values():
    first, second = shifted_pairs(bins, axes)
    # Pairs are labelled by the first coefficient's frequency.
    index = frequency[:first.shape[3], :first.shape[4]]
    codes = (index * num_levels + first) * num_levels + second
    features.append(texture.histogram(codes.reshape(n, -1), BLOCK * BLOCK * num_levels**2)
                    * index.size)
  return jnp.concatenate(features, axis=-1)


def jpeg_features(images: jax.Array, tables: jax.Array, histogram_truncation: int = 4,
                  pair_truncation: int = 2) -> jax.Array:
  """(N, H, W, 3) pixels in [0, 255] -> (N, F) log-frequencies of the JPEG coefficients.

  F = 3 planes * 64 frequencies * ((2 * 4 + 1) + 6 * (2 * 2 + 1)**2) = 30,528 with the
  defaults. `tables` (N, 2, 8, 8) are the encoder's (`image_tables`): with other tables
  the rounded values are not the stored integers and the histograms blur.
  """
  features = []
  for coefficients in quantized_coefficients(images, tables):
    features.append(coefficient_histograms(coefficients, histogram_truncation))
    features.append(coefficient_cooccurrences(coefficients, pair_truncation))
  return jnp.log(jnp.concatenate(features, axis=-1) + texture.LOG_EPS)


def sliding_block_dct(plane: jax.Array) -> jax.Array:
  """(N, H, W) -> (N, H-7, W-7, 64): the 8x8 DCT of the block at every position.

  Channel 8k + l is the response to basis pattern (k, l). The transform is separable, so
  it runs as two passes of eight 8-tap filters: 7x fewer FLOPs than 64 8x8 filters, and
  on CPU 23 against 37 ms an image for the whole of `dctr_features` at 256 px.
  """
  d = jnp.asarray(dct_matrix())
  h, w = plane.shape[1:]
  windows = jnp.stack([plane[:, :, j:w - BLOCK + 1 + j] for j in range(BLOCK)], -1)
  along_rows = jnp.einsum("nhwj,lj->nhwl", windows, d)
  windows = jnp.stack([along_rows[:, i:h - BLOCK + 1 + i] for i in range(BLOCK)], -1)
  responses = jnp.einsum("nhwli,ki->nhwkl", windows, d)
  return responses.reshape(*responses.shape[:3], BLOCK * BLOCK)


def dctr_step(quality: jax.Array | int) -> jax.Array:
  """DCTR's quantization step for `quality` (a number or an array of them): 4 at 75,
  scaled as libjpeg scales its tables (and kept above 0 at quality 100, where the
  tables are all ones)."""
  quality = jnp.asarray(quality, jnp.float32)
  scale = jnp.where(quality < 50, 50 / quality, 2 - quality / 50)
  return jnp.maximum(8 * scale, 0.25)


def dctr_features(images: jax.Array, tables: jax.Array, has_grid: jax.Array,
                  truncation: int = 4) -> jax.Array:
  """Holub & Fridrich's DCT residuals (DCTR, 2015) of the luma: (N, 64 * 64 * (T + 1)).

  The luma is filtered with each of the 64 8x8 DCT basis patterns at every position
  (not only on the block grid); the magnitudes are divided by `dctr_step` of the quality
  of each image's luminance table (`image_tables`), rounded and truncated to T, and
  histogrammed separately for each of the 64 positions relative to the 8x8 grid, where
  the effect of JPEG's quantization differs. An image without a grid (`has_grid` False)
  gets the histograms of all positions together, the same at each.
  """
  _check_rgb_of_two_blocks(images, "DCTR features")
  luma = texture.ycbcr(images.astype(jnp.float32))[0]
  responses = sliding_block_dct(luma)
  n, h, w, _ = responses.shape
  rows, cols = h // BLOCK, w // BLOCK
  step = dctr_step(estimated_quality(tables[:, 0]))[:, None, None, None]
  magnitudes = jnp.abs(responses[:, :rows * BLOCK, :cols * BLOCK]) / step
  magnitudes = magnitudes.reshape(n, rows, BLOCK, cols, BLOCK, BLOCK * BLOCK)
  # Counts of round(m) >= t for t = 1..T, per grid position and basis pattern, by
  # comparison and sum: no scatter, which is slow on CPU for 4M values per image.
  at_least = jnp.stack([(magnitudes >= t - 0.5).sum(axis=(1, 3))
                        for t in range(1, truncation + 1)], axis=-1).astype(jnp.float32)
  total = jnp.full(at_least.shape[:-1] + (1,), rows * cols, jnp.float32)
  cumulative = jnp.concatenate([total, at_least, jnp.zeros_like(total)], axis=-1)
  counts = cumulative[..., :-1] - cumulative[..., 1:]
  pooled = jnp.broadcast_to(counts.mean(axis=(1, 2), keepdims=True), counts.shape)
  counts = jnp.where(has_grid[:, None, None, None, None], counts, pooled)
  # (N, phase row, phase column, basis, T + 1) -> basis-major features.
  counts = counts.transpose(0, 3, 1, 2, 4).reshape(n, -1)
  return jnp.log(counts / (rows * cols) + texture.LOG_EPS)
