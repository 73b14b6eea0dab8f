"""Encoded image bytes to the model's uint8 input: the one decoder training and inference share.

`decode_image` either returns an array of exactly (size, size, 1 or 3) uint8 or raises
`ImageDecodeError`, whatever the bytes: PIL raises many exception types on malformed
input (OSError, SyntaxError, ValueError, struct.error, ...), and callers should need to
handle only one. A property-based test feeds it arbitrary bytes to hold it to that.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from fakeface_jax import preprocessing

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Larger images are refused before decoding: a few header bytes can claim gigapixels.
MAX_PIXELS = 64 * 1024 * 1024


class ImageDecodeError(ValueError):
  """The bytes are not an image this project can read; the message says why."""


def decode_image(data: bytes, image_size: int, grayscale: bool) -> np.ndarray:
  """Encoded image bytes -> uint8 (image_size, image_size, 1 or 3).

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
  return preprocessing.to_grayscale_uint8(array) if grayscale else array
