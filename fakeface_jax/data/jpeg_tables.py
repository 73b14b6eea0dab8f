"""JPEG quantization tables: libjpeg's standard ones, a file's own, and the quality they imply.

A JPEG file stores the tables its encoder divided the DCT coefficients by (PIL exposes
them as `Image.quantization`, in natural order). Features that read the quantized
coefficients back from the pixels need each image's own tables; an image whose 8x8 grid
no longer lines up with the pixels (resized, cropped, not a JPEG at all) has none, which
this project writes as an all-zero (2, 8, 8) array: `NO_TABLES`.
"""

from __future__ import annotations

import numpy as np

# ITU T.81 Annex K tables, which libjpeg (and so PIL) scales for a quality setting.
BASE_LUMINANCE_TABLE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
])
BASE_CHROMINANCE_TABLE = np.array([
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
] + [[99] * 8] * 4)
QUALITIES = np.arange(1, 101)
# Luminance then chrominance, (2, 8, 8); dtype wide enough for 16-bit tables.
TABLES_DTYPE = np.uint16
NO_TABLES = np.zeros((2, 8, 8), TABLES_DTYPE)


def quantization_table(quality: int, chroma: bool = False) -> np.ndarray:
  """The (8, 8) table libjpeg uses at `quality` (1-100), in natural (not zigzag) order."""
  if not 1 <= quality <= 100:
    raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
  scale = 5000 // quality if quality < 50 else 200 - 2 * quality
  base = BASE_CHROMINANCE_TABLE if chroma else BASE_LUMINANCE_TABLE
  return np.clip((base * scale + 50) // 100, 1, 255)


def standard_tables(quality: int) -> np.ndarray:
  """(2, 8, 8): the luminance and chrominance tables PIL writes at `quality`."""
  return np.stack([quantization_table(quality), quantization_table(quality, True)]
                  ).astype(TABLES_DTYPE)


# (100, 8, 8): the luminance table of every quality, to estimate a file's quality by.
STANDARD_LUMINANCE = np.stack([quantization_table(int(q)) for q in QUALITIES])


def estimate_quality(luminance: np.ndarray) -> int:
  """The libjpeg quality whose luminance table is nearest (L1) to `luminance` (8, 8).

  Exact for files written by libjpeg, PIL, OpenCV and most software; for other encoders
  (cameras, Photoshop) it is the standard quality of the most similar coarseness.
  """
  distances = np.abs(STANDARD_LUMINANCE - np.asarray(luminance)).sum(axis=(1, 2))
  return int(QUALITIES[np.argmin(distances)])


def tables_of(quantization: dict[int, list[int]] | None) -> np.ndarray:
  """PIL's `Image.quantization` -> (2, 8, 8) luminance and chrominance tables.

  A grayscale JPEG has one table: its chrominance is written as the luminance's. None
  (not a JPEG) gives `NO_TABLES`.
  """
  if not quantization:
    return NO_TABLES
  luminance = np.reshape(quantization[0], (8, 8))
  chrominance = np.reshape(quantization.get(1, quantization[0]), (8, 8))
  return np.stack([luminance, chrominance]).astype(TABLES_DTYPE)
