"""Tests for the pure preprocessing and augmentation functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fakeface_jax.data import preprocessing


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


def test_full_image_crop_is_the_identity():
  image = jax.random.uniform(jax.random.key(0), (12, 10, 3))
  out = preprocessing.resized_crop(image, jnp.array([0.0, 0.0, 12.0, 10.0]))
  np.testing.assert_allclose(out, image, atol=1e-5)


def test_random_resized_crop_keeps_shape_and_zooms_in():
  # A horizontal ramp: a crop narrower than the image has a smaller range of values.
  ramp = jnp.broadcast_to(jnp.linspace(0, 1, 32)[None, :, None], (4, 32, 32, 1))
  out = preprocessing.random_resized_crop(jax.random.key(0), ramp, min_scale=0.3)
  assert out.shape == ramp.shape
  assert float((out.max(axis=(1, 2, 3)) - out.min(axis=(1, 2, 3))).min()) < 1.0


def test_gaussian_blur_keeps_constants_and_mean_and_smooths_noise():
  flat = jnp.full((8, 8, 1), 0.3)
  np.testing.assert_allclose(preprocessing.gaussian_blur(flat, 1.5), flat, atol=1e-6)
  noise = jax.random.uniform(jax.random.key(0), (32, 32, 1))
  blurred = preprocessing.gaussian_blur(noise, 1.5)
  assert float(blurred.std()) < 0.5 * float(noise.std())
  assert abs(float(blurred.mean()) - float(noise.mean())) < 0.02


def test_color_jitter_stays_in_range_and_zero_strength_is_identity():
  images = jax.random.uniform(jax.random.key(0), (4, 8, 8, 3))
  out = preprocessing.random_color_jitter(jax.random.key(1), images, 0.5)
  assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
  same = preprocessing.random_color_jitter(jax.random.key(1), images, 0.0)
  np.testing.assert_allclose(same, images, atol=1e-6)


def test_augment_with_everything_is_deterministic_per_key():
  images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
  kwargs = dict(flip=True, rotation_degrees=10.0, crop_min_scale=0.5, blur_prob=0.5,
                color_jitter=0.2)
  a = preprocessing.augment(jax.random.key(3), images, **kwargs)
  b = preprocessing.augment(jax.random.key(3), images, **kwargs)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, preprocessing.augment(jax.random.key(4), images, **kwargs))


def test_random_crop_takes_native_windows():
  images = jnp.arange(2 * 6 * 6, dtype=jnp.float32).reshape(2, 6, 6, 1)
  crops = preprocessing.random_crop(jax.random.key(0), images, 4)
  assert crops.shape == (2, 4, 4, 1)
  for image, crop in zip(images, crops):
    top, left = np.argwhere(np.asarray(image[..., 0]) == float(crop[0, 0, 0]))[0]
    np.testing.assert_array_equal(crop, image[top:top + 4, left:left + 4])
  with pytest.raises(ValueError, match="larger than the images"):
    preprocessing.random_crop(jax.random.key(0), images, 7)
