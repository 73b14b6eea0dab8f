"""Tests of the residual co-occurrence features against hand-counted histograms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fakeface_jax import models
from fakeface_jax import texture


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


def test_cooccurrence_classifier_is_logistic_regression_on_the_histograms():
  model = models.CooccurrenceClassifier(truncation=1)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 12, 12, 3)) / 255, jnp.float32)
  params = model.init(jax.random.key(0), x)
  assert model.apply(params, x).shape == (2, 2)
  num_features = 3 * 4 * 2 * 27
  assert sum(p.size for p in jax.tree.leaves(params)) == 2 * num_features + num_features * 2 + 2


