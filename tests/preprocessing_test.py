"""Tests for the pure preprocessing and augmentation functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fakeface_jax import preprocessing


def test_to_grayscale_uses_skimage_weights():
  rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
  gray = preprocessing.to_grayscale(rgb)
  expected = [255 * 0.2125, 255 * 0.7154, 255 * 0.0721, 10 * 0.2125 + 20 * 0.7154 + 30 * 0.0721]
  assert gray.shape == (1, 4, 1)
  np.testing.assert_allclose(gray[0, :, 0], expected, rtol=1e-6)
  np.testing.assert_array_equal(preprocessing.to_grayscale_uint8(rgb)[0, :, 0],
                                [54, 182, 18, 19])


def test_to_grayscale_same_on_numpy_and_jax():
  rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
  np.testing.assert_allclose(jax.jit(preprocessing.to_grayscale)(jnp.asarray(rgb)),
                             preprocessing.to_grayscale(rgb), rtol=1e-6)


def test_to_grayscale_rejects_wrong_channels():
  with pytest.raises(ValueError, match="3 channels"):
    preprocessing.to_grayscale(np.zeros((4, 4, 1)))


def test_rescale_maps_uint8_to_unit_interval():
  out = jax.jit(preprocessing.rescale)(jnp.array([0, 51, 255], jnp.uint8))
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, [0.0, 0.2, 1.0], rtol=1e-6)


def test_resize_shape_dtype_and_constant():
  images = jnp.full((2, 40, 40, 3), 77, jnp.uint8)
  out = jax.jit(preprocessing.resize, static_argnums=1)(images, 16)
  assert out.shape == (2, 16, 16, 3) and out.dtype == jnp.uint8
  np.testing.assert_array_equal(out, 77)
  floats = preprocessing.resize(jnp.ones((1, 8, 8, 1)), 20)
  assert floats.dtype == jnp.float32 and floats.shape == (1, 20, 20, 1)


def test_random_flip_flips_some_and_only_mirrors():
  images = jnp.arange(16 * 4 * 5 * 1, dtype=jnp.float32).reshape(16, 4, 5, 1)
  out = jax.jit(preprocessing.random_flip)(jax.random.key(0), images)
  flipped = np.all(np.asarray(out) == np.asarray(images)[:, :, ::-1], axis=(1, 2, 3))
  same = np.all(np.asarray(out) == np.asarray(images), axis=(1, 2, 3))
  assert np.all(flipped ^ same)
  assert 0 < flipped.sum() < 16
  np.testing.assert_array_equal(
      out, preprocessing.random_flip(jax.random.key(0), images))  # Same key, same flips.


def test_rotate_by_quarter_turn_matches_rot90():
  image = jnp.arange(5 * 5, dtype=jnp.float32).reshape(5, 5, 1)
  out = preprocessing.rotate(image, jnp.pi / 2)
  np.testing.assert_allclose(out[..., 0], np.rot90(np.asarray(image[..., 0]), k=-1),
                             atol=1e-4)
  np.testing.assert_allclose(preprocessing.rotate(image, 0.0), image, atol=1e-5)


def test_random_rotation_keeps_shape_range_and_depends_on_key():
  images = jax.random.uniform(jax.random.key(1), (4, 12, 12, 3))
  rotate = jax.jit(preprocessing.random_rotation, static_argnums=2)
  a = rotate(jax.random.key(0), images, 30.0)
  b = rotate(jax.random.key(1), images, 30.0)
  assert a.shape == images.shape
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(a, rotate(jax.random.key(0), images, 30.0))


def test_augment_without_options_is_identity():
  images = jax.random.uniform(jax.random.key(1), (2, 6, 6, 1))
  out = preprocessing.augment(jax.random.key(0), images, flip=False, rotation_degrees=0.0)
  np.testing.assert_array_equal(out, images)
