"""Tests of the robustness degradations: shapes, dtypes, determinism and their effect."""

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from fakeface_jax.data import degradations
from fakeface_jax.data import image_decoding


def _images(channels=3, n=3, size=32, seed=0):
  rng = np.random.default_rng(seed)
  smooth = np.linspace(0, 200, size)[None, :, None, None] + np.zeros((n, size, size, channels))
  return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(degradations.DEGRADATIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_determinism(name, channels):
  images = _images(channels)
  fn = degradations.DEGRADATIONS[name]
  out = fn(images, 7)
  assert out.shape == images.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out, fn(images, 7))


def test_clean_is_identity_and_others_change_the_images():
  images = _images()
  np.testing.assert_array_equal(degradations.DEGRADATIONS["clean"](images, 0), images)
  for name, fn in degradations.DEGRADATIONS.items():
    if name != "clean":
      assert np.abs(fn(images, 0).astype(int) - images).mean() > 0.5, name


def test_lower_jpeg_quality_loses_more():
  images = _images()
  errors = [np.abs(degradations.jpeg(images, q).astype(int) - images).mean()
            for q in (90, 75, 50)]
  assert errors[0] < errors[1] < errors[2]


def test_blur_removes_noise_and_keeps_constant_images():
  images = _images()
  assert degradations.gaussian_blur(images, 2.0).std(axis=(1, 2)).mean() < images.std(
      axis=(1, 2)).mean()
  flat = np.full((1, 16, 16, 3), 100, np.uint8)
  np.testing.assert_array_equal(degradations.gaussian_blur(flat, 1.0), flat)


def test_blur_of_an_impulse_is_the_gaussian_outer_product():
  impulse = np.zeros((1, 21, 21, 1), np.uint8)
  impulse[0, 10, 10] = 255
  taps = np.exp(-0.5 * np.arange(-3, 4) ** 2)
  taps /= taps.sum()
  expected = np.zeros((21, 21))
  expected[7:14, 7:14] = 255 * np.outer(taps, taps)
  blurred = degradations.gaussian_blur(impulse, 1.0)[0, ..., 0]
  np.testing.assert_allclose(blurred, np.rint(expected), atol=1)


@pytest.mark.parametrize("name", ["blur2", "noise5", "jpeg50", "downscale0.5"])
def test_degrading_a_batch_needs_little_memory_beyond_its_output(name):
  # A whole split in float64 took 8 bytes per pixel (and per blur tap) and ran a 24 GB
  # machine out of memory in `fakeface-evaluate --robustness`.
  images = _images(n=64, size=128)
  tracemalloc.start()
  degradations.DEGRADATIONS[name](images, 0)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert peak < 2 * images.nbytes


def test_noise_has_the_requested_spread_and_depends_on_seed():
  flat = np.full((4, 64, 64, 1), 128, np.uint8)
  noisy = degradations.gaussian_noise(flat, 5.0, seed=1)
  assert abs(noisy.astype(float).std() - 5.0) < 0.2
  assert not np.array_equal(noisy, degradations.gaussian_noise(flat, 5.0, seed=2))


def test_downscale_keeps_low_frequencies():
  images = _images()
  out = degradations.downscale(images, 0.5)
  assert np.abs(out.astype(float).mean(axis=(1, 2)) - images.mean(axis=(1, 2))).max() < 3


@pytest.mark.parametrize("call, message", [
    (lambda x: degradations.jpeg(x, 0), "quality"),
    (lambda x: degradations.downscale(x, 1.5), "factor"),
    (lambda x: degradations.gaussian_blur(x, 0), "sigma"),
    (lambda x: degradations.jpeg(x.astype(np.float32), 90), "uint8"),
    (lambda x: degradations.resave(_encoded(), 90, subsampling="4:1:1"),
     r"subsampling must be one of \['4:4:4', '4:2:2', '4:2:0'\], got '4:1:1'"),
])
def test_bad_arguments(call, message):
  with pytest.raises(ValueError, match=message):
    call(_images())


def _encoded(size=64, seed=0) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(_images(n=1, size=size, seed=seed)[0]).save(buffer, format="PNG")
  return buffer.getvalue()


def test_a_file_resave_is_one_fixed_copy_per_path_within_its_ranges():
  resave = degradations.FileResave(0.4, 0.8, 60, 90, seed=3)
  data = _encoded(size=100)
  assert resave(data, "a/1.png") == resave(data, "a/1.png")
  settings = [resave.settings(f"a/{i}.png") for i in range(200)]
  scales, qualities = np.array(settings).T
  assert 0.4 <= scales.min() and scales.max() <= 0.8 and np.ptp(scales) > 0.3
  assert set(qualities.astype(int)) <= set(range(60, 91)) and np.ptp(qualities) > 20
  scale, quality = resave.settings("a/1.png")
  with Image.open(io.BytesIO(resave(data, "a/1.png"))) as image:
    assert image.format == "JPEG" and image.width == round(100 * scale)
  assert degradations.FileResave(0.4, 0.8, 60, 90, seed=4).settings("a/1.png") != (
      scale, quality)


def test_an_enlarged_copy_is_the_image_at_its_scale():
  data = _encoded(size=100)
  with Image.open(io.BytesIO(degradations.resave(data, 95, 2.5))) as image:
    assert image.size == (250, 250)
    back = np.asarray(image.resize((100, 100), Image.Resampling.LANCZOS), np.float32)
  with Image.open(io.BytesIO(data)) as image:
    original = np.asarray(image, np.float32)
  # Shrunk back, it is the original (less some of its noise), not a shifted or mirrored
  # one.
  assert np.abs(back - original).mean() < 0.1 * np.abs(back - original[::-1]).mean()


@pytest.mark.parametrize("mode, quality, scale", [
    ("RGB", 60, 0.37), ("L", 95, 0.5), ("RGBA", 75, 1.0), ("RGB", 90, 0.999),
    ("RGB", 85, 2.31), ("RGB", 80, 4.0)])
def test_the_format_of_a_resaved_file_is_stated_without_encoding_it(mode, quality, scale):
  buffer = io.BytesIO()
  Image.fromarray(_images(n=1, size=101)[0]).convert(mode).save(buffer, format="PNG")
  data = buffer.getvalue()
  stated = degradations.resaved_format(data, quality, scale)
  read = image_decoding.read_header(degradations.resave(data, quality, scale))
  assert stated == read and stated.jpeg_quality == quality
  np.testing.assert_array_equal(stated.tables, read.tables)


@pytest.mark.parametrize("ranges, message", [
    ((0.5, 0.8, 60, 96), r"quality must be a range within \[1, 95\], got \(60, 96\)"),
    ((0.5, 0.8, 90, 60), r"quality must be a range within \[1, 95\], got \(90, 60\)"),
    ((0.0, 0.8, 60, 90), r"scale must be a range within \(0, 4\], got \(0.0, 0.8\)"),
    ((0.9, 0.5, 60, 90), r"scale must be a range within \(0, 4\], got \(0.9, 0.5\)"),
    ((1.5, 4.01, 60, 90), r"scale must be a range within \(0, 4\], got \(1.5, 4.01\)"),
])
def test_bad_resave_ranges_are_refused(ranges, message):
  with pytest.raises(ValueError, match=message):
    degradations.FileResave(*ranges)
