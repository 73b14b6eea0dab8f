"""Degradations at the ends of their ranges and on the second image axis.

Each degradation is checked against a reference written out here with PIL or NumPy on
non-square images (height != width), so a width used for a height shows; each range
is checked at both ends and as a single value `(q, q)`.
"""

import io

import numpy as np
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

from fakeface_jax.data import degradations
from fakeface_jax.data import image_decoding


def _batch(height=12, width=20, channels=3, seed=0, n=2):
  return np.random.default_rng(seed).integers(0, 256, (n, height, width, channels), np.uint8)


def _encoded(width=40, height=24, seed=0) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(_batch(height, width, seed=seed, n=1)[0]).save(buffer, format="PNG")
  return buffer.getvalue()


@settings(max_examples=30)
@given(height=st.integers(1, 24), width=st.integers(1, 24),
       factor=st.floats(0.01, 0.99), channels=st.sampled_from([1, 3]))
def test_downscale_equals_pils_resize_down_and_back_per_axis(height, width, factor,
                                                              channels):
  images = _batch(height, width, channels)
  small = (max(1, round(width * factor)), max(1, round(height * factor)))
  expected = []
  for image in images:
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    back = np.asarray(pil.resize(small, Image.Resampling.LANCZOS).resize(
        (width, height), Image.Resampling.BICUBIC))
    expected.append(back[..., None] if channels == 1 else back)
  np.testing.assert_array_equal(degradations.downscale(images, factor), np.stack(expected))


@pytest.mark.parametrize("factor", [0.0, 1.0, -0.5, 1.5])
def test_downscale_refuses_factors_outside_the_open_unit_interval(factor):
  with pytest.raises(ValueError, match="downscale factor must be in"):
    degradations.downscale(_batch(), factor)


@pytest.mark.parametrize("quality", [1, 95])
def test_jpeg_accepts_both_ends_of_its_quality_range(quality):
  images = _batch()
  out = degradations.jpeg(images, quality)
  assert out.shape == images.shape and out.dtype == np.uint8


@pytest.mark.parametrize("quality", [0, 96])
def test_jpeg_refuses_qualities_just_outside_its_range(quality):
  with pytest.raises(ValueError, match=r"JPEG quality must be in \[1, 95\]"):
    degradations.jpeg(_batch(), quality)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 1.7, 4.0])
def test_gaussian_kernel_is_the_normalised_gaussian_of_radius_three_sigma(sigma):
  kernel = degradations._gaussian_kernel(sigma)  # pylint: disable=protected-access
  radius = max(1, int(np.ceil(3 * sigma)))
  x = np.arange(-radius, radius + 1)
  expected = np.exp(-x ** 2 / (2 * sigma ** 2))
  np.testing.assert_allclose(kernel, expected / expected.sum(), rtol=1e-12)


def _reference_blur(images, sigma):
  """2-D convolution with the outer product of the kernel, edges reflected."""
  kernel = degradations._gaussian_kernel(sigma)  # pylint: disable=protected-access
  radius = len(kernel) // 2
  padded = np.pad(images.astype(np.float64),
                  [(0, 0), (radius, radius), (radius, radius), (0, 0)], mode="reflect")
  height, width = images.shape[1:3]
  out = np.zeros(images.shape, np.float64)
  for dy, wy in enumerate(kernel):
    for dx, wx in enumerate(kernel):
      out += wy * wx * padded[:, dy:dy + height, dx:dx + width]
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@settings(max_examples=20)
@given(height=st.integers(4, 16), width=st.integers(4, 16), sigma=st.floats(0.3, 1.2),
       seed=st.integers(0, 100))
@example(height=9, width=14, sigma=1.0, seed=0)
def test_blur_equals_a_two_dimensional_reflected_convolution(height, width, sigma, seed):
  images = _batch(height, width, seed=seed)
  out = degradations.gaussian_blur(images, sigma)
  # Rounding of sums taken in another order may differ by one level.
  assert np.abs(out.astype(int) - _reference_blur(images, sigma)).max() <= 1


def test_noise_is_the_seeded_normal_draw_added_rounded_and_clipped():
  images = np.concatenate([np.zeros((1, 8, 10, 3), np.uint8),
                           np.full((1, 8, 10, 3), 255, np.uint8), _batch(8, 10, n=1)])
  out = degradations.gaussian_noise(images, 40.0, seed=5)
  noise = np.random.default_rng(5).normal(0.0, 40.0, images.shape)
  np.testing.assert_array_equal(out, np.clip(np.rint(images + noise), 0, 255))
  assert out[0].min() == 0 and out[1].max() == 255  # Clipped, not wrapped around.


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_noise_accepts_zero_and_small_sigmas_and_zero_changes_nothing(sigma):
  images = _batch()
  out = degradations.gaussian_noise(images, sigma, seed=0)
  if sigma == 0:
    np.testing.assert_array_equal(out, images)
  else:
    assert np.abs(out.astype(int) - images).max() <= 3


def test_noise_refuses_a_negative_sigma():
  with pytest.raises(ValueError, match="noise sigma must be non-negative"):
    degradations.gaussian_noise(_batch(), -0.1, seed=0)


@settings(max_examples=40)
@given(quality=st.integers(1, 95), scale=st.sampled_from([1.0, 0.5, 0.13, 0.01]),
       seed=st.integers(0, 2**31 - 1))
def test_a_single_value_range_gives_every_file_that_value(quality, scale, seed):
  resave = degradations.FileResave(scale, scale, quality, quality, seed=seed)
  for path in ("a.png", "b/c.jpg", "d/e/f.png"):
    assert resave.settings(path) == (scale, quality)


@settings(max_examples=20)
@given(low=st.integers(1, 95), span=st.integers(1, 3), seed=st.integers(0, 1000))
def test_the_quality_draw_reaches_both_ends_of_its_range(low, span, seed):
  high = min(95, low + span)
  resave = degradations.FileResave(0.5, 1.0, low, high, seed=seed)
  qualities = {resave.settings(f"x/{i}.png")[1] for i in range(200)}
  assert qualities == set(range(low, high + 1))


def test_the_scale_draw_stays_in_its_range_and_spreads_over_it():
  resave = degradations.FileResave(0.25, 0.75, 50, 60, seed=1)
  scales = np.array([resave.settings(f"x/{i}.png")[0] for i in range(400)])
  assert scales.min() >= 0.25 and scales.max() <= 0.75
  assert scales.min() < 0.3 and scales.max() > 0.7


@pytest.mark.parametrize("scale, quality", [((1.0, 1.0), (1, 1)), ((1.0, 1.0), (95, 95)),
                                            ((0.01, 1.0), (1, 95)), ((4.0, 4.0), (50, 50))])
def test_resave_ranges_at_their_ends_are_accepted(scale, quality):
  resave = degradations.FileResave(*scale, *quality)
  assert scale[0] <= resave.settings("a.png")[0] <= scale[1]


@pytest.mark.parametrize("scale, quality", [((1.0, 1.0), (0, 50)), ((1.0, 1.0), (50, 96)),
                                            ((1.0, 1.0), (60, 59)), ((0.0, 1.0), (50, 50)),
                                            ((0.5, 4.01), (50, 50)), ((0.6, 0.5), (50, 50))])
def test_resave_ranges_beyond_their_ends_are_refused(scale, quality):
  with pytest.raises(ValueError, match="resave (quality|scale) must be a range within"):
    degradations.FileResave(*scale, *quality)


@pytest.mark.parametrize("width, height", [(40, 24), (24, 40), (3, 50)])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.05, 2.7])
def test_a_copys_stated_format_is_the_format_of_the_copy_on_both_axes(width, height, scale):
  data = _encoded(width, height)
  resave = degradations.FileResave(scale, scale, 70, 70)
  copy = resave(data, "p.png")
  read = image_decoding.read_header(copy)
  stated = resave.copy_format(data, "p.png")
  assert (stated.width, stated.height) == (read.width, read.height) == (
      max(1, round(width * scale)), max(1, round(height * scale)))
  assert stated == read


def test_the_copy_format_follows_each_paths_own_draw():
  data = _encoded()
  resave = degradations.FileResave(0.3, 1.0, 10, 95, seed=2)
  for path in ("a.png", "b.png", "c.png", "d.png"):
    scale, quality = resave.settings(path)
    assert resave.copy_format(data, path) == degradations.resaved_format(data, quality, scale)


@pytest.mark.parametrize("quality, scale", [(0, 1.0), (96, 1.0), (50, 0.0), (50, 4.01),
                                            (0, 0.0)])
def test_resave_refuses_a_quality_or_a_scale_beyond_its_range(quality, scale):
  with pytest.raises(ValueError, match=r"resave needs quality in \[1, 95\] and scale in "
                     r"\(0, 4\], got"):
    degradations.resave(_encoded(), quality, scale)


@pytest.mark.parametrize("quality, scale", [(1, 1.0), (95, 1.0), (60, 0.37), (60, 0.01),
                                            (90, 2.3), (80, 4.0)])
def test_resave_is_pils_lanczos_rescale_then_jpeg_at_the_ends_of_its_ranges(quality, scale):
  data = _encoded(40, 24)
  with Image.open(io.BytesIO(data)) as image:
    image = image.convert("RGB")
    if scale != 1:
      image = image.resize((max(1, round(40 * scale)), max(1, round(24 * scale))),
                           Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
  assert degradations.resave(data, quality, scale) == buffer.getvalue()


@pytest.mark.parametrize("value", [0, 255])
def test_blur_keeps_black_and_white_images_at_their_ends(value):
  images = np.full((1, 9, 14, 3), value, np.uint8)
  np.testing.assert_array_equal(degradations.gaussian_blur(images, 1.5), images)


def test_blur_smooths_along_both_axes():
  stripes = np.zeros((1, 16, 16, 1), np.uint8)
  stripes[:, ::2] = 255  # Rows alternate: only a vertical blur evens them out.
  columns = np.swapaxes(stripes, 1, 2)
  for image in (stripes, columns):
    out = degradations.gaussian_blur(image, 1.5).astype(int)
    assert out.max() - out.min() < 60
  np.testing.assert_array_equal(_reference_blur(stripes, 1.5),
                                degradations.gaussian_blur(stripes, 1.5))


def test_a_copy_at_the_default_scale_keeps_the_size_and_is_stated_so():
  data = _encoded(40, 24)
  read = image_decoding.read_header(degradations.resave(data, 80))
  assert (read.width, read.height) == (40, 24)
  assert degradations.resaved_format(data, 80) == read
