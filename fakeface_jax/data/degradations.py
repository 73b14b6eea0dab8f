"""Image degradations for robustness reports: what happens to images once they are online.

Each degradation maps a uint8 batch (N, H, W, C) to a uint8 batch of the same shape, so
the model sees them exactly as it sees clean images; `TABLES_AFTER` says what each does
to the images' JPEG grid. `resave` does it to a file instead: its bytes, rescaled and
re-encoded, as a user's copy of an image would be (evaluate's format shifts), and
`FileResave` draws such a copy for every file of a training source (config.data.resave).
All are pure functions of their inputs (and `seed` where randomness is involved): the
same call gives the same bytes.
JPEG goes through PIL because it is a codec, not an array operation; the rest are NumPy.
"""

from __future__ import annotations

import dataclasses
import io
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables

# The highest JPEG quality written: PIL's documentation advises against higher ones,
# at which its encoder turns parts of JPEG's compression off.
MAX_QUALITY = 95


def _check_batch(images: np.ndarray) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(f"expected a uint8 batch (N, H, W, C), got {images.dtype} {images.shape}")
  return images


def _to_pil(image: np.ndarray) -> Image.Image:
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _from_pil(image: Image.Image, channels: int) -> np.ndarray:
  array = np.asarray(image)
  return array[..., None] if channels == 1 else array


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
  """Re-encodes every image as a baseline JPEG at `quality` (1-MAX_QUALITY) and decodes
  it."""
  images = _check_batch(images)
  if not 1 <= quality <= MAX_QUALITY:
    raise ValueError(f"JPEG quality must be in [1, {MAX_QUALITY}], got {quality}")
  out = np.empty_like(images)
  for i, image in enumerate(images):
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, format="JPEG", quality=quality)
    out[i] = _from_pil(Image.open(buffer), images.shape[-1])
  return out


def downscale(images: np.ndarray, factor: float) -> np.ndarray:
  """Resizes by `factor` (antialiased) and back to the original size (bicubic)."""
  images = _check_batch(images)
  if not 0 < factor < 1:
    raise ValueError(f"downscale factor must be in (0, 1), got {factor}")
  height, width = images.shape[1:3]
  small = (max(1, round(width * factor)), max(1, round(height * factor)))
  out = np.empty_like(images)
  for i, image in enumerate(images):
    reduced = _to_pil(image).resize(small, Image.Resampling.LANCZOS)
    out[i] = _from_pil(reduced.resize((width, height), Image.Resampling.BICUBIC),
                       images.shape[-1])
  return out


def _gaussian_kernel(sigma: float) -> np.ndarray:
  radius = max(1, int(np.ceil(3 * sigma)))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  return taps / taps.sum()


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
  """Separable Gaussian blur with standard deviation `sigma` pixels, edges reflected.
  One image at a time in float32: a whole split in float64 would take 8 bytes, and a
  temporary of that size per kernel tap, for each byte of the batch."""
  images = _check_batch(images)
  if sigma <= 0:
    raise ValueError(f"blur sigma must be positive, got {sigma}")
  kernel = _gaussian_kernel(sigma).astype(np.float32)
  out = np.empty_like(images)
  for i, image in enumerate(images):
    out[i] = np.clip(np.rint(_blur_image(image.astype(np.float32), kernel)), 0, 255)
  return out


def _blur_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  radius = len(kernel) // 2
  for axis in (0, 1):
    pad = [(0, 0)] * 3
    pad[axis] = (radius, radius)
    padded = np.pad(image, pad, mode="reflect")
    length = image.shape[axis]
    image = np.zeros_like(image)
    for k, weight in enumerate(kernel):
      image += weight * np.take(padded, np.arange(k, k + length), axis=axis)
  return image


def gaussian_noise(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
  """Adds N(0, sigma^2) noise in 0-255 units, from a generator seeded by `seed`."""
  images = _check_batch(images)
  if sigma < 0:
    raise ValueError(f"noise sigma must be non-negative, got {sigma}")
  rng = np.random.default_rng(seed)
  out = np.empty_like(images)
  for i, image in enumerate(images):  # one image at a time, as in gaussian_blur
    out[i] = np.clip(np.rint(image + rng.normal(0.0, sigma, image.shape)), 0, 255)
  return out


# The largest rescaling of a re-saved copy: a face image enlarged into a larger photo
# (a 256 px face at 45% of a 1600 px one is 2.8x).
MAX_RESAVE_SCALE = 4.0


# JPEG chroma subsampling as PIL numbers it: 4:4:4 (every colour sample kept), 4:2:2,
# 4:2:0 (libjpeg's default).
SUBSAMPLINGS = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def resave(data: bytes, quality: int, scale: float = 1.0,
           subsampling: str = "4:2:0") -> bytes:
  """An encoded image's bytes -> the same image rescaled by `scale` (Lanczos,
  antialiased when shrinking) and saved as a JPEG at `quality` (PIL's standard tables)
  with chroma `subsampling` (a key of SUBSAMPLINGS)."""
  if not 1 <= quality <= MAX_QUALITY or not 0 < scale <= MAX_RESAVE_SCALE:
    raise ValueError(f"resave needs quality in [1, {MAX_QUALITY}] and scale in (0, "
                     f"{MAX_RESAVE_SCALE:g}], got {quality} and {scale}")
  if subsampling not in SUBSAMPLINGS:
    raise ValueError(f"resave's subsampling must be one of {list(SUBSAMPLINGS)}, got "
                     f"{subsampling!r}")
  with Image.open(io.BytesIO(data)) as image:
    image = image.convert("RGB")
    if scale != 1:
      image = image.resize(_scaled_size(image.width, image.height, scale),
                           Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality,
               subsampling=SUBSAMPLINGS[subsampling])
  return buffer.getvalue()


def _scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
  return max(1, round(width * scale)), max(1, round(height * scale))


def resaved_format(data: bytes, quality: int, scale: float = 1.0
                   ) -> image_decoding.ImageFormat:
  """What `resave(data, quality, scale)` writes, from `data`'s header alone: the same
  `ImageFormat` that `image_decoding.read_header` reads of the copy, without encoding it
  (describe reads every training file's format)."""
  source = image_decoding.read_header(data)
  width, height = _scaled_size(source.width, source.height, scale)
  tables = jpeg_tables.standard_tables(quality)
  return image_decoding.ImageFormat("JPEG", width, height, "RGB",
                                    jpeg_tables.estimate_quality(tables[0]), tables)


@dataclasses.dataclass(frozen=True)
class FileResave:
  """Every file of a source re-saved once (`resave`), as copies passed around online
  are: rescaled by a factor in [min_scale, max_scale] (above 1: enlarged, as a face
  pasted into a larger photo) and JPEG-encoded at a quality in
  [min_quality, max_quality], both drawn per file from (seed, its path). A file gets
  the same copy in every role, run and process, so its features can be cached, and a
  source and its re-saved copy split their files alike (the paths are the same)."""
  min_scale: float
  max_scale: float
  min_quality: int
  max_quality: int
  seed: int = 0

  def __post_init__(self):
    if not 1 <= self.min_quality <= self.max_quality <= MAX_QUALITY:
      raise ValueError(f"resave quality must be a range within [1, {MAX_QUALITY}], got "
                       f"({self.min_quality}, {self.max_quality})")
    if not 0 < self.min_scale <= self.max_scale <= MAX_RESAVE_SCALE:
      raise ValueError(f"resave scale must be a range within (0, {MAX_RESAVE_SCALE:g}], got "
                       f"({self.min_scale}, {self.max_scale})")

  @classmethod
  def from_config(cls, resave_config: Any) -> FileResave | None:
    """config.data.resave (quality and scale ranges, seed) -> FileResave, or None where
    its quality is (0, 0): the files as they are."""
    if tuple(resave_config.quality) == (0, 0):
      return None
    (min_scale, max_scale), (min_quality, max_quality) = resave_config.scale, resave_config.quality
    return cls(float(min_scale), float(max_scale), int(min_quality), int(max_quality),
               int(resave_config.seed))

  def settings(self, path: str) -> tuple[float, int]:
    """The scale and JPEG quality of `path`'s copy."""
    rng = np.random.default_rng([self.seed, zlib.crc32(path.encode())])
    return (float(rng.uniform(self.min_scale, self.max_scale)),
            int(rng.integers(self.min_quality, self.max_quality + 1)))

  def __call__(self, data: bytes, path: str) -> bytes:
    scale, quality = self.settings(path)
    return resave(data, quality, scale)

  def copy_format(self, data: bytes, path: str) -> image_decoding.ImageFormat:
    """The `ImageFormat` of `self(data, path)`, without encoding it (`resaved_format`)."""
    scale, quality = self.settings(path)
    return resaved_format(data, quality, scale)


# name -> fn(images, seed); "clean" is the reference row of every robustness report.
DEGRADATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "clean": lambda images, seed: _check_batch(images),
    "jpeg90": lambda images, seed: jpeg(images, 90),
    "jpeg75": lambda images, seed: jpeg(images, 75),
    "jpeg50": lambda images, seed: jpeg(images, 50),
    "downscale0.5": lambda images, seed: downscale(images, 0.5),
    "blur1": lambda images, seed: gaussian_blur(images, 1.0),
    "blur2": lambda images, seed: gaussian_blur(images, 2.0),
    "noise5": lambda images, seed: gaussian_noise(images, 5.0, seed),
}
# What a degradation leaves of the images' JPEG grid: tables (2, 8, 8) for all, or None
# where each image keeps its own (the pixels stay where they were).
TABLES_AFTER: dict[str, np.ndarray | None] = {
    "jpeg90": jpeg_tables.standard_tables(90),
    "jpeg75": jpeg_tables.standard_tables(75),
    "jpeg50": jpeg_tables.standard_tables(50),
    "downscale0.5": jpeg_tables.NO_TABLES,
}
