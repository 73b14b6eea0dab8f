"""Tests of the residual co-occurrence features against hand-counted histograms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fakeface_jax import models
from fakeface_jax.models import cooccurrence
from fakeface_jax.models import texture


def test_residual_maps_by_hand():
  plane = jnp.asarray([[0, 1, 4], [9, 16, 25], [36, 49, 64]], jnp.float32)[None]
  dx, dy, dxx, dyy = texture.residual_maps(plane)
  assert [float(r[0, 0, 0]) for r in (dx, dy, dxx, dyy)] == [25 - 16, 49 - 16,
                                                            25 + 9 - 32, 49 + 1 - 32]


def test_quantize_rounds_and_truncates():
  bins = texture.quantize(jnp.asarray([-7.0, -2.4, -0.6, 0.0, 1.4, 1.6, 9.0]), 2)
  np.testing.assert_array_equal(bins, [0, 0, 1, 2, 3, 4, 4])


def test_triple_codes_and_histogram_by_hand():
  # One row of bins 0, 1, 2, 1: row triples (0,1,2) and (1,2,1) in base 3.
  bins = jnp.asarray([[[0, 1, 2, 1]]])
  codes = texture.triple_codes(bins, 3, "row")
  np.testing.assert_array_equal(codes, [[[0 * 9 + 1 * 3 + 2, 1 * 9 + 2 * 3 + 1]]])
  hist = texture.histogram(codes, 27)
  assert hist.shape == (1, 27)
  assert float(hist[0, 5]) == 0.5 and float(hist[0, 16]) == 0.5 and float(hist.sum()) == 1.0
  with pytest.raises(ValueError, match="direction must be one of"):
    texture.triple_codes(bins, 3, "diagonal")


def test_a_flat_image_puts_every_count_in_the_zero_residual_bin():
  features = texture.cooccurrence_features(jnp.full((2, 8, 8, 3), 100.0), truncation=2)
  assert features.shape == (2, 3 * 4 * 2 * 125)
  # Code of the triple (0, 0, 0) residuals: bins (2, 2, 2) in base 5.
  zero = (2 * 5 + 2) * 5 + 2
  per_histogram = np.asarray(features).reshape(2, 24, 125)
  np.testing.assert_allclose(per_histogram[:, :, zero], np.log(1 + texture.LOG_EPS), atol=1e-7)
  assert np.all(per_histogram[:, :, np.arange(125) != zero] == np.float32(np.log(texture.LOG_EPS)))


def test_features_ignore_brightness_but_not_texture():
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 200, (2, 16, 16, 3)), jnp.float32)
  same = texture.cooccurrence_features(images)
  np.testing.assert_array_equal(same, texture.cooccurrence_features(images + 40.0))
  smooth = jnp.repeat(jnp.repeat(images[:, ::2, ::2], 2, axis=1), 2, axis=2)
  assert float(jnp.abs(texture.cooccurrence_features(smooth) - same).max()) > 1.0


def test_images_too_small_are_refused():
  with pytest.raises(ValueError, match="at least 5x5"):
    texture.cooccurrence_features(jnp.zeros((1, 4, 16, 3)))


def test_ycbcr_of_gray_pixels_is_luma_only_and_planes_are_named():
  gray = jnp.full((1, 2, 2, 3), 77.0)
  y, cb, cr = texture.ycbcr(gray)
  np.testing.assert_allclose(y, 77.0, rtol=1e-6)
  np.testing.assert_allclose(cb, 0.0, atol=1e-4)
  np.testing.assert_allclose(cr, 0.0, atol=1e-4)
  assert len(texture.color_planes(jnp.zeros((1, 4, 4, 1)), "rgb")) == 1
  with pytest.raises(ValueError, match="ycbcr color space needs RGB"):
    texture.color_planes(jnp.zeros((1, 4, 4, 1)), "ycbcr")
  with pytest.raises(ValueError, match="color_space must be one of"):
    texture.color_planes(gray, "hsv")


def test_cross_band_counts_the_three_channels_at_the_same_pixel():
  # Only the red channel varies, along rows: its dx residual is +1 everywhere, green and
  # blue are flat, so every dx pixel is the (R, G, B) bin triple (3, 2, 2) in base 5.
  ramp = jnp.broadcast_to(jnp.arange(8.0)[None, :], (8, 8))
  images = jnp.stack([ramp, jnp.zeros((8, 8)), jnp.zeros((8, 8))], -1)[None]
  hist = np.asarray(texture.cross_band_features(images, truncation=2))
  assert hist.shape == (1, 4 * 125)
  dx, dy = hist[0, :125], hist[0, 125:250]
  assert dx[(3 * 5 + 2) * 5 + 2] == 1.0
  assert dy[(2 * 5 + 2) * 5 + 2] == 1.0


def test_feature_count_grows_with_color_spaces_and_cross_band():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (1, 12, 12, 3)), jnp.float32)
  features = texture.cooccurrence_features(images, 1, ("rgb", "ycbcr"), cross_band=True)
  assert features.shape == (1, 6 * 4 * 2 * 27 + 4 * 27)
  with pytest.raises(ValueError, match="cross-band features need RGB"):
    texture.cooccurrence_features(images[..., :1], 1, cross_band=True)


def test_cooccurrence_classifier_standardises_on_its_initialisation_batch():
  model = models.CooccurrenceClassifier(truncation=1)
  x = jnp.asarray(np.random.default_rng(1).integers(0, 256, (8, 12, 12, 3)) / 255, jnp.float32)
  params = model.init(jax.random.key(0), x)["params"]
  features = model.features(x)
  np.testing.assert_allclose(params["feature_mean"], features.mean(0), rtol=1e-6)
  np.testing.assert_allclose(params["feature_scale"],
                             1 / (features.std(0) + cooccurrence.FEATURE_STD_FLOOR), rtol=1e-5)
  # No gradient reaches the statistics: a training step leaves them as they were.
  grads = jax.grad(lambda p: model.apply({"params": p}, x).sum())(params)
  assert float(jnp.abs(grads["feature_mean"]).max()) == 0.0
  assert float(jnp.abs(grads["feature_scale"]).max()) == 0.0
  assert float(jnp.abs(grads["Dense_0"]["kernel"]).max()) > 0.0


def test_cooccurrence_classifier_jpeg_features_are_checked_and_counted():
  x = jnp.asarray(np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3)) / 255, jnp.float32)
  model = models.CooccurrenceClassifier(truncation=1, jpeg_quality=75, jpeg_features=("dctr",))
  params = model.init(jax.random.key(0), x)["params"]
  assert params["feature_mean"].shape == (3 * 4 * 2 * 27 + 64 * 64 * 5,)
  with pytest.raises(ValueError, match="need jpeg_quality"):
    models.CooccurrenceClassifier(jpeg_features=("dctr",))
  with pytest.raises(ValueError, match=r"unknown jpeg_features \['dct'\]"):
    models.CooccurrenceClassifier(jpeg_quality=75, jpeg_features=("dct",))
  with pytest.raises(ValueError, match=r"unknown color_spaces \['hsv'\]"):
    models.CooccurrenceClassifier(color_spaces=("rgb", "hsv"))


def test_cooccurrence_classifier_is_logistic_regression_on_the_histograms():
  model = models.CooccurrenceClassifier(truncation=1)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 12, 12, 3)) / 255, jnp.float32)
  params = model.init(jax.random.key(0), x)
  assert model.apply(params, x).shape == (2, 2)
  num_features = 3 * 4 * 2 * 27
  assert sum(p.size for p in jax.tree.leaves(params)) == 2 * num_features + num_features * 2 + 2




def test_centred_regions_start_on_the_jpeg_grid():
  images = jnp.arange(100 * 100, dtype=jnp.float32).reshape(1, 100, 100, 1)
  half = cooccurrence.centred(images, 0.5)
  # 50 pixels centred in 100 would start at 25; the grid moves it to 24.
  assert half.shape == (1, 50, 50, 1)
  np.testing.assert_array_equal(half, images[:, 24:74, 24:74])
  assert cooccurrence.centred(images, 1.0) is images


def test_regions_concatenate_the_features_of_each_centred_square():
  x = jnp.asarray(np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3)) / 255, jnp.float32)
  settings = {"truncation": 1, "jpeg_quality": 75, "jpeg_features": ("dctr",)}
  both = models.CooccurrenceClassifier(regions=(1.0, 0.5), **settings)
  one = models.CooccurrenceClassifier(**settings)
  features = lambda model, images: jax.jit(
      lambda y: model.apply({}, y, method="features"))(images)
  np.testing.assert_allclose(
      features(both, x),
      jnp.concatenate([features(one, x), features(one, x[:, 16:48, 16:48])], -1))
  with pytest.raises(ValueError, match=r"regions must be fractions .* got \(1.0, 1.5\)"):
    models.CooccurrenceClassifier(regions=(1.0, 1.5))
