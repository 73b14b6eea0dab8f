"""Encoded image bytes to the model's uint8 input: the one decoder training and inference share.

`decode_image` also says what the file was (`ImageFormat`: format, size, mode, JPEG
quality and quantization tables), which JPEG-aware features and prediction warnings
read. An image reaches the model's square size by resizing, or with `crop` by a centred
crop at its native resolution where it is large enough: the crop's offsets are
multiples of 8, so a JPEG keeps its 8x8 grid and its pixel-level traces.

`decode_photo` gives the whole photo instead, upright by its EXIF orientation, for
finding faces (`faces`, `face_crop`); the same guards apply.

`decode_image` either returns an array of exactly (size, size, 1 or 3) uint8 or raises
`ImageDecodeError`, whatever the bytes: PIL raises many exception types on malformed
input (OSError, SyntaxError, ValueError, struct.error, ...), and callers should need to
handle only one. A property-based test feeds it arbitrary bytes to hold it to that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

from fakeface_jax.data import jpeg_tables
from fakeface_jax.data import preprocessing

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Larger images are refused before decoding: a few header bytes can claim gigapixels.
MAX_PIXELS = 64 * 1024 * 1024
# A JPEG's block size: crop offsets that are multiples of it keep the file's grid.
JPEG_BLOCK = 8


class ImageDecodeError(ValueError):
  """The bytes are not an image this project can read; the message says why."""


@dataclasses.dataclass(frozen=True)
class ImageFormat:
  """What an encoded image was, before decoding made it the model's input."""
  format: str  # PIL's name: JPEG, PNG, WEBP, ...
  width: int
  height: int
  mode: str  # PIL's: RGB, L (gray), RGBA, P (palette), CMYK, ...
  # Of a JPEG: the libjpeg quality its luminance table is nearest to, and its own
  # (2, 8, 8) tables; None and jpeg_tables.NO_TABLES otherwise.
  jpeg_quality: int | None
  tables: np.ndarray = dataclasses.field(repr=False, compare=False)

  def native(self, image_size: int, crop: bool) -> bool:
    """Whether decoding keeps the file's own pixels: no resize to (image_size)^2
    needed, or with `crop` a centred crop of them (`decode_with_format`)."""
    if crop:
      return min(self.width, self.height) >= image_size
    return self.width == self.height == image_size

  def grid_tables(self, image_size: int, crop: bool = False) -> np.ndarray:
    """The tables whose 8x8 grid still lines up with the decoded (image_size)^2 pixels:
    a JPEG whose pixels decoding keeps (`native`) has them; anything else NO_TABLES."""
    aligned = self.jpeg_quality is not None and self.native(image_size, crop)
    return self.tables if aligned else jpeg_tables.NO_TABLES


def read_format(image: Image.Image) -> ImageFormat:
  """The `ImageFormat` of an opened (not yet converted) PIL image."""
  quantization = getattr(image, "quantization", None) if image.format == "JPEG" else None
  tables = jpeg_tables.tables_of(quantization)
  quality = jpeg_tables.estimate_quality(tables[0]) if quantization else None
  return ImageFormat(image.format or "unknown", image.width, image.height, image.mode,
                     quality, tables)


def read_header(data: bytes) -> ImageFormat:
  """The `ImageFormat` of encoded bytes, from the header alone (no pixels decoded)."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      return read_format(image)
  except Exception as e:  # pylint: disable=broad-except
    raise ImageDecodeError(f"cannot read image header: {type(e).__name__}: "
                           f"{' '.join(str(e).split())}") from e


def decode_image(data: bytes, image_size: int, grayscale: bool,
                 crop: bool = False) -> np.ndarray:
  """Encoded image bytes -> uint8 (image_size, image_size, 1 or 3)."""
  return decode_with_format(data, image_size, grayscale, crop)[0]


def grid_offset(side: int, size: int) -> int:
  """Where a centred `size` of a `side` starts, rounded down onto the 8-pixel JPEG grid,
  so that a crop there keeps the grid of the whole."""
  return (side - size) // 2 // JPEG_BLOCK * JPEG_BLOCK


def _to_size(image: Image.Image, image_size: int, native: bool) -> Image.Image:
  """An opened image -> RGB (image_size)^2: its centred crop on the JPEG grid where
  `native`, else resized (JPEG `draft` first lets libjpeg decode at a reduced scale,
  much faster for large images; the resize is antialiased bilinear)."""
  if native:
    top, left = (grid_offset(side, image_size) for side in (image.height, image.width))
    return image.convert("RGB").crop((left, top, left + image_size, top + image_size))
  image.draft("RGB", (image_size, image_size))
  return image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)


@contextlib.contextmanager
def _opened(data: bytes):
  """The opened image of `data` and its `ImageFormat`, refusing decompression bombs;
  any failure inside, PIL's many exception types included, is an `ImageDecodeError`."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
          raise ImageDecodeError(f"image of {width}x{height} pixels is larger than the "
                                 f"{MAX_PIXELS:,} pixels allowed")
        yield image, read_format(image)
  except ImageDecodeError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Malformed input makes PIL raise almost any exception type; all mean "not readable".
    raise ImageDecodeError(f"cannot decode image: {type(e).__name__}: "
                           f"{' '.join(str(e).split())}") from e


def decode_with_format(data: bytes, image_size: int, grayscale: bool,
                       crop: bool = False) -> tuple[np.ndarray, ImageFormat]:
  """Encoded image bytes -> uint8 (image_size, image_size, 1 or 3) and its `ImageFormat`.

  Any mode (palette, alpha, 16-bit, CMYK, gray) is converted to RGB first, alpha
  dropped. With `crop`, an image at least image_size on each side keeps its own pixels
  (`ImageFormat.native`); smaller ones, and every image without it, are resized.
  """
  with _opened(data) as (image, image_format):
    image = _to_size(image, image_size, image_format.native(image_size, crop))
    array = np.asarray(image, dtype=np.uint8)
  if array.shape != (image_size, image_size, 3):
    raise ImageDecodeError(f"decoded to unexpected shape {array.shape}")
  return (preprocessing.to_grayscale_uint8(array) if grayscale else array), image_format


def decode_photo(data: bytes) -> tuple[np.ndarray, ImageFormat]:
  """Encoded bytes -> the whole photo as uint8 (H, W, 3) RGB, turned upright by its EXIF
  orientation (as a phone shows it, and as faces must stand for the detector), and its
  `ImageFormat` (of the file as stored)."""
  with _opened(data) as (image, image_format):
    array = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
  if array.ndim != 3 or min(array.shape[:2]) < 1:
    raise ImageDecodeError(f"decoded to unexpected shape {array.shape}")
  return array, image_format
