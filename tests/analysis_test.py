"""Tests of the pixel-variation and spectral analysis."""

import json
import os

import numpy as np
import pytest

from fakeface_jax.data import preprocessing
from fakeface_jax.experiments import analysis
from fakeface_jax.models import spectral


def _nonempty_png(path):
  assert os.path.isfile(path)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 1000


def test_pixel_profiles_gray_image():
  image = np.arange(4 * 5, dtype=np.uint8).reshape(4, 5, 1)
  profiles = analysis.pixel_profiles(image, rows=[1, 3], cols=[0, 4])
  assert profiles["rows"].shape == (2, 5)
  assert profiles["cols"].shape == (2, 4)
  np.testing.assert_array_equal(profiles["rows"][0], [5, 6, 7, 8, 9])
  np.testing.assert_array_equal(profiles["rows"][1], [15, 16, 17, 18, 19])
  np.testing.assert_array_equal(profiles["cols"][0], [0, 5, 10, 15])
  np.testing.assert_array_equal(profiles["cols"][1], [4, 9, 14, 19])


def test_pixel_profiles_rgb_uses_project_gray_weights():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
  profiles = analysis.pixel_profiles(image, rows=[2], cols=[5])
  expected = image.astype(np.float64) @ np.asarray(preprocessing.GRAY_WEIGHTS)
  assert profiles["rows"].shape == (1, 7)
  assert profiles["cols"].shape == (1, 6)
  np.testing.assert_allclose(profiles["rows"][0], expected[2], rtol=1e-5)
  np.testing.assert_allclose(profiles["cols"][0], expected[:, 5], rtol=1e-5)
  # A pure red pixel is 0.2125 * 255 in gray, not the channel mean.
  red = np.zeros((2, 2, 3), np.uint8)
  red[..., 0] = 255
  np.testing.assert_allclose(analysis.pixel_profiles(red, [0], [0])["rows"],
                             [[0.2125 * 255] * 2], rtol=1e-5)


def test_adjacent_differences_constant_is_zero():
  images = np.full((3, 8, 8), 117.0, np.float32)
  for axis in ("rows", "cols"):
    np.testing.assert_array_equal(analysis.adjacent_differences(images, axis), np.zeros(3))


def test_adjacent_differences_stripes():
  # Vertical stripes 0, 10, 0, 10, ... change along each row and never down a column.
  stripes = np.tile(np.array([0.0, 10.0], np.float32), (6, 4))  # (6, 8)
  images = np.stack([stripes, 2 * stripes])
  np.testing.assert_allclose(analysis.adjacent_differences(images, "rows"), [10.0, 20.0])
  np.testing.assert_allclose(analysis.adjacent_differences(images, "cols"), [0.0, 0.0])
  # Transposed, the roles swap.
  np.testing.assert_allclose(
      analysis.adjacent_differences(np.swapaxes(images, 1, 2), "cols"), [10.0, 20.0])
  # A ramp 0, 1, 2, ... changes by exactly 1 between neighbours.
  ramp = np.broadcast_to(np.arange(9, dtype=np.float32)[:, None], (9, 5))[None]
  np.testing.assert_allclose(analysis.adjacent_differences(ramp, "cols"), [1.0])
  np.testing.assert_allclose(analysis.adjacent_differences(ramp, "rows"), [0.0])


def test_adjacent_differences_rejects_bad_axis():
  with pytest.raises(ValueError, match="axis"):
    analysis.adjacent_differences(np.zeros((1, 4, 4)), "diagonal")


@pytest.mark.parametrize("frequency", [1, 3, 7, 12, 15])
def test_radial_spectrum_of_cosine_peaks_at_its_frequency(frequency):
  size = 32
  x = np.arange(size)
  cosine = np.cos(2 * np.pi * frequency * x / size)
  image = 100 + 50 * np.broadcast_to(cosine, (size, size))
  spectrum = analysis.radial_power_spectrum(image[None].astype(np.float32))[0]
  assert spectrum.shape == (size // 2,)
  # Ring 0 holds the mean (DC); of the others, the cosine's own ring must dominate. Its
  # two spikes are averaged in log with the rest of the ring, so the margin shrinks
  # with the ring's circumference, but every other ring sits at log(eps).
  others = np.delete(spectrum, [0, frequency])
  assert np.argmax(spectrum[1:]) + 1 == frequency
  assert spectrum[frequency] > others.max() + 0.5
  np.testing.assert_allclose(others, np.log(spectral.LOG_EPS), atol=0.01)


def test_radial_spectrum_num_bins_and_non_square():
  images = np.random.default_rng(0).normal(size=(2, 20, 30)).astype(np.float32)
  assert analysis.radial_power_spectrum(images).shape == (2, 10)
  assert analysis.radial_power_spectrum(images, num_bins=5).shape == (2, 5)
  assert np.all(np.isfinite(analysis.radial_power_spectrum(images)))


def test_radial_spectrum_is_raw_log_power():
  # White noise of variance s^2 has E|F|^2 = H * W * s^2 at every frequency; the curve
  # is not mean-subtracted, so its level tells the variance.
  rng = np.random.default_rng(1)
  images = rng.normal(scale=3.0, size=(16, 32, 32)).astype(np.float32)
  spectrum = analysis.radial_power_spectrum(images).mean(axis=0)
  expected = np.log(32 * 32 * 9.0) - np.euler_gamma  # E log of an exponential variable
  np.testing.assert_allclose(spectrum[4:], expected, atol=0.5)


def test_upsampled_noise_has_less_high_frequency_power():
  rng = np.random.default_rng(0)
  plain = rng.uniform(0, 255, (8, 64, 64)).astype(np.float32)
  small = rng.uniform(0, 255, (8, 32, 32)).astype(np.float32)
  upsampled = small.repeat(2, axis=1).repeat(2, axis=2)  # nearest neighbour, 2x
  plain_spectrum = analysis.radial_power_spectrum(plain).mean(axis=0)
  up_spectrum = analysis.radial_power_spectrum(upsampled).mean(axis=0)
  high = slice(24, 32)
  assert up_spectrum[high].mean() < plain_spectrum[high].mean() - 1.0
  # And upsampling is smoother pixel to pixel, the "pixel variation" signal.
  assert (analysis.adjacent_differences(upsampled, "rows").mean()
          < analysis.adjacent_differences(plain, "rows").mean())


def _classes(num=6, size=32):
  """Real: noisy; fake: the same kind of noise upsampled 2x, so smoother."""
  rng = np.random.default_rng(0)
  real = rng.integers(0, 256, (num, size, size, 3), dtype=np.uint8)
  fake = rng.integers(0, 256, (num, size // 2, size // 2, 3), dtype=np.uint8)
  return real, fake.repeat(2, axis=1).repeat(2, axis=2)


def test_plots_write_pngs(tmp_path):
  real, fake = _classes()
  paths = [
      analysis.plot_pixel_variation(real[0], fake[0], str(tmp_path / "pv.png")),
      analysis.plot_pixel_variation(real[0], fake[0], str(tmp_path / "pv2.png"),
                                    start_row=0, start_col=29),
      analysis.plot_variation_statistics(real, fake, str(tmp_path / "vs.png")),
      analysis.plot_spectra(real, fake, str(tmp_path / "sp.png")),
  ]
  for path in paths:
    _nonempty_png(path)


def test_plot_pixel_variation_rejects_rows_outside_image(tmp_path):
  real, fake = _classes()
  with pytest.raises(ValueError, match="do not fit"):
    analysis.plot_pixel_variation(real[0], fake[0], str(tmp_path / "pv.png"), start_row=30)


def test_summarize():
  real, fake = _classes()
  summary = analysis.summarize(real, fake)
  json.dumps(summary)  # Serialisable.
  assert summary["counts"] == {"real": 6, "fake": 6}
  for key in ("row_variation", "col_variation"):
    assert summary[key]["fake"]["mean"] < summary[key]["real"]["mean"]
    assert summary[key]["real"]["std"] >= 0
  assert summary["spectrum"]["num_bins"] == 16
  assert summary["spectrum"]["high_frequency_difference"] < 0


def test_run_analysis_on_tiny_config(tiny_config, tmp_path):
  paths = analysis.run_analysis(tiny_config, str(tmp_path), num_per_class=10)
  names = [os.path.basename(p) for p in paths]
  assert names == ["pixel_variation.png", "variation_statistics.png", "spectra.png",
                   "summary.json"]
  for path in paths:
    assert os.path.dirname(path) == str(tmp_path / "analysis")
  for path in paths[:3]:
    _nonempty_png(path)
  with open(paths[3]) as f:
    summary = json.load(f)
  assert 0 < summary["counts"]["real"] <= 10
  assert 0 < summary["counts"]["fake"] <= 10
  assert summary["image_size"] == 32
  assert summary["spectrum"]["num_bins"] == 16
