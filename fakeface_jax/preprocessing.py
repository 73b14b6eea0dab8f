"""Pure image preprocessing and augmentation.

Every function here is pure and jit-able; randomness comes only from explicit PRNG keys.
Images are NHWC (or HWC where stated). `to_grayscale` and `rescale` use only array
methods and the `@` operator, so they work unchanged on NumPy arrays in the host input
pipeline and on JAX arrays on the device: one definition of "gray" for the whole project.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# The luminance weights of scikit-image's `rgb2gray` (ITU-R BT.709), so that gray inputs
# match those of the studies that used it.
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def to_grayscale(images):
  """RGB (..., 3) -> gray (..., 1) in the input's value range, as a float array."""
  if images.shape[-1] != 3:
    raise ValueError(f"to_grayscale expects 3 channels, got shape {images.shape}")
  weights = np.asarray(GRAY_WEIGHTS, dtype=np.float32)
  return (images.astype(np.float32) @ weights)[..., None]


def to_grayscale_uint8(images: np.ndarray) -> np.ndarray:
  """RGB uint8 (..., 3) -> gray uint8 (..., 1), rounded: the host pipeline's storage form."""
  return np.clip(np.rint(to_grayscale(images)), 0, 255).astype(np.uint8)


def rescale(images):
  """uint8 pixel values in [0, 255] -> float32 in [0, 1] (the studies' Rescaling(1/255))."""
  return images.astype(np.float32) * np.float32(1 / 255)


def resize(images: jax.Array, size: int) -> jax.Array:
  """Resizes a batch (N, H, W, C) to (N, size, size, C) with antialiased bilinear filtering."""
  n, _, _, c = images.shape
  resized = jax.image.resize(
      images.astype(jnp.float32), (n, size, size, c), method="linear", antialias=True)
  if images.dtype == jnp.uint8:
    return jnp.clip(jnp.round(resized), 0, 255).astype(jnp.uint8)
  return resized


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
  """Flips each image of a batch left-right with probability 1/2."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def rotate(image: jax.Array, angle: jax.Array) -> jax.Array:
  """Rotates one HWC float image by `angle` radians about its centre.

  Bilinear interpolation; pixels that come from outside the image repeat the nearest
  edge pixel, like Keras' ImageDataGenerator default (fill_mode="nearest") that study 2
  used, so rotation never paints black corners the detector could key on.
  """
  height, width, _ = image.shape
  rows, cols = jnp.meshgrid(
      jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32),
      indexing="ij")
  cy, cx = (height - 1) / 2, (width - 1) / 2
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  # Inverse mapping: for each output pixel, where in the input it comes from.
  src_rows = cos * (rows - cy) - sin * (cols - cx) + cy
  src_cols = sin * (rows - cy) + cos * (cols - cx) + cx
  def rotate_channel(channel):
    return jax.scipy.ndimage.map_coordinates(
        channel, [src_rows, src_cols], order=1, mode="nearest")
  return jax.vmap(rotate_channel, in_axes=-1, out_axes=-1)(image)


def random_rotation(key: jax.Array, images: jax.Array, max_degrees: float) -> jax.Array:
  """Rotates each float image of a batch by an angle drawn uniformly in ±max_degrees."""
  limit = jnp.deg2rad(max_degrees)
  angles = jax.random.uniform(key, (images.shape[0],), minval=-limit, maxval=limit)
  return jax.vmap(rotate)(images, angles)


def augment(key: jax.Array, images: jax.Array, *, flip: bool,
            rotation_degrees: float) -> jax.Array:
  """Study 2's augmentation on a float batch: random horizontal flip and rotation."""
  flip_key, rotation_key = jax.random.split(key)
  if flip:
    images = random_flip(flip_key, images)
  if rotation_degrees > 0:
    images = random_rotation(rotation_key, images, rotation_degrees)
  return images
