"""The decoder's contract, fuzzed: any bytes give a valid image or ImageDecodeError."""

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

from fakeface_jax.data import image_decoding

SIZE = 16


def encode(fmt, mode):
  array = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array).convert(mode).save(buffer, format=fmt)
  return buffer.getvalue()


SEEDS = {name: encode(fmt, mode) for name, fmt, mode in [
    ("jpeg", "JPEG", "RGB"), ("jpeg_gray", "JPEG", "L"), ("jpeg_cmyk", "JPEG", "CMYK"),
    ("png_alpha", "PNG", "RGBA"), ("webp", "WEBP", "RGB"), ("bmp", "BMP", "RGB"),
]}


def check_contract(data: bytes, grayscale: bool = False):
  try:
    image = image_decoding.decode_image(data, SIZE, grayscale)
  except image_decoding.ImageDecodeError:
    return None
  assert image.shape == (SIZE, SIZE, 1 if grayscale else 3) and image.dtype == np.uint8
  return image


@pytest.mark.parametrize("name", sorted(SEEDS))
@pytest.mark.parametrize("grayscale", [False, True])
def test_valid_images_of_every_mode_decode_to_the_configured_shape(name, grayscale):
  assert check_contract(SEEDS[name], grayscale) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data):
  check_contract(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(SEEDS)),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10_000)))
def test_mutated_and_truncated_images(seed, edits, cut):
  data = bytearray(SEEDS[seed])
  for position, value in edits:
    data[position % len(data)] = value
  if cut is not None:
    data = data[:cut % (len(data) + 1)]
  check_contract(bytes(data), grayscale=bool(len(edits) % 2))


def png_header_claiming(width, height):
  def chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))
  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
          + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height, message", [
    (9_000, 8_000, "larger than"),   # Over this project's limit.
    (12_000, 10_000, "Bomb"),        # Over PIL's warning limit, turned into an error.
    (100_000, 100_000, "Bomb"),      # Over PIL's own error limit.
])
def test_decompression_bombs_are_refused_before_decoding(width, height, message):
  with pytest.raises(image_decoding.ImageDecodeError, match=message):
    image_decoding.decode_image(png_header_claiming(width, height), SIZE, False)


def test_errors_name_the_cause():
  with pytest.raises(image_decoding.ImageDecodeError, match="cannot decode image"):
    image_decoding.decode_image(b"definitely not an image", SIZE, False)


# Quadrants of distinct colors: a swapped channel order, a flip or a transpose each
# move a color to a place where the test looks for another.
QUADRANT_COLORS = {"top_left": (255, 0, 0), "top_right": (0, 255, 0),
                    "bottom_left": (0, 0, 255), "bottom_right": (255, 255, 255)}


def quadrant_image(size=16):
  half = size // 2
  array = np.zeros((size, size, 3), np.uint8)
  array[:half, :half] = QUADRANT_COLORS["top_left"]
  array[:half, half:] = QUADRANT_COLORS["top_right"]
  array[half:, :half] = QUADRANT_COLORS["bottom_left"]
  array[half:, half:] = QUADRANT_COLORS["bottom_right"]
  return array


def quadrant_centres(image):
  """Each quadrant's central pixel, away from the edges that resizing and JPEG blur."""
  q = image.shape[0] // 4
  return {"top_left": image[q, q], "top_right": image[q, 3 * q],
          "bottom_left": image[3 * q, q], "bottom_right": image[3 * q, 3 * q]}


@pytest.mark.parametrize("fmt, save_kwargs, tolerance", [
    ("PNG", {}, 0), ("JPEG", {"quality": 100, "subsampling": 0}, 8)])
@pytest.mark.parametrize("size", [16, 8])
def test_decoding_keeps_color_order_and_orientation(fmt, save_kwargs, tolerance, size):
  buffer = io.BytesIO()
  Image.fromarray(quadrant_image(32)).save(buffer, format=fmt, **save_kwargs)
  image = image_decoding.decode_image(buffer.getvalue(), size, grayscale=False)
  for place, pixel in quadrant_centres(image).items():
    np.testing.assert_allclose(pixel, QUADRANT_COLORS[place], atol=tolerance, err_msg=place)
  if fmt == "PNG" and size == 16:  # A 2x downscale of flat quadrants is exact inside them.
    np.testing.assert_array_equal(image[1:7, 1:7], np.broadcast_to((255, 0, 0), (6, 6, 3)))


def test_grayscale_decoding_weights_red_green_blue_as_bt709_luma():
  buffer = io.BytesIO()
  Image.fromarray(quadrant_image(16)).save(buffer, format="PNG")
  gray = quadrant_centres(image_decoding.decode_image(buffer.getvalue(), 16, grayscale=True))
  # BT.709 luma (scikit-image's rgb2gray, as the studies used) of pure red, green, blue
  # and white: 0.2125, 0.7154, 0.0721 of 255, rounded.
  assert {place: int(value[0]) for place, value in gray.items()} == {
      "top_left": 54, "top_right": 182, "bottom_left": 18, "bottom_right": 255}


def jpeg_of(height: int, width: int) -> bytes:
  array = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="JPEG", quality=80)
  return buffer.getvalue()


def test_native_crop_keeps_the_files_pixels_centred_on_its_jpeg_grid():
  data = jpeg_of(40, 60)
  full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  image, image_format = image_decoding.decode_with_format(data, 24, False, crop=True)
  # Centring offsets (8, 18) rounded down to the 8-pixel grid: (8, 16).
  np.testing.assert_array_equal(image, full[8:32, 16:40])
  np.testing.assert_array_equal(image_format.grid_tables(24, crop=True), image_format.tables)
  assert not image_format.grid_tables(24).any()  # The same file resized has no grid.


def test_native_crop_resizes_an_image_smaller_than_the_input_as_decoding_always_did():
  data = jpeg_of(20, 40)
  cropped, image_format = image_decoding.decode_with_format(data, 24, False, crop=True)
  np.testing.assert_array_equal(cropped, image_decoding.decode_image(data, 24, False))
  assert not image_format.grid_tables(24, crop=True).any()
