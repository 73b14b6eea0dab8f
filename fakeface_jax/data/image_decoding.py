"""Encoded image bytes to the model's uint8 input: the one decoder training and inference share.

`decode_image` also says what the file was (`ImageFormat`: format, size, mode, JPEG
quality and quantization tables), which JPEG-aware features and prediction warnings
read. It either returns an array of exactly (size, size, 1 or 3) uint8 or raises
`ImageDecodeError`, whatever the bytes: PIL raises many exception types on malformed
input (OSError, SyntaxError, ValueError, struct.error, ...), and callers should need to
handle only one. A property-based test feeds it arbitrary bytes to hold it to that.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image

from fakeface_jax import preprocessing
from fakeface_jax.data import jpeg_tables

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Larger images are refused before decoding: a few header bytes can claim gigapixels.
MAX_PIXELS = 64 * 1024 * 1024


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

  def grid_tables(self, image_size: int) -> np.ndarray:
    """The tables whose 8x8 grid still lines up with the decoded (image_size)^2 pixels:
    a JPEG not resized on decoding keeps them; anything else has NO_TABLES."""
    aligned = self.jpeg_quality is not None and self.width == self.height == image_size
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


def decode_image(data: bytes, image_size: int, grayscale: bool) -> np.ndarray:
  """Encoded image bytes -> uint8 (image_size, image_size, 1 or 3)."""
  return decode_with_format(data, image_size, grayscale)[0]


def decode_with_format(data: bytes, image_size: int,
                       grayscale: bool) -> tuple[np.ndarray, ImageFormat]:
  """Encoded image bytes -> uint8 (image_size, image_size, 1 or 3) and its `ImageFormat`.

  Any mode (palette, alpha, 16-bit, CMYK, gray) is converted to RGB first, alpha
  dropped. JPEG `draft` lets libjpeg decode at a reduced scale, which is much faster
  for large images; the final resize is antialiased bilinear.
  """
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
          raise ImageDecodeError(f"image of {width}x{height} pixels is larger than the "
                                 f"{MAX_PIXELS:,} pixels allowed")
        image_format = read_format(image)
        image.draft("RGB", (image_size, image_size))
        image = image.convert("RGB").resize((image_size, image_size),
                                            Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
  except ImageDecodeError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Malformed input makes PIL raise almost any exception type; all mean "not readable".
    raise ImageDecodeError(f"cannot decode image: {type(e).__name__}: "
                           f"{' '.join(str(e).split())}") from e
  if array.shape != (image_size, image_size, 3):
    raise ImageDecodeError(f"decoded to unexpected shape {array.shape}")
  return (preprocessing.to_grayscale_uint8(array) if grayscale else array), image_format
