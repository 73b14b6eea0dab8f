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


def gray_plane(images):
  """(..., 1 or 3) pixels -> (...) gray float32 plane, in the input's value range."""
  if images.shape[-1] == 1:
    return images[..., 0].astype(np.float32)
  return to_grayscale(images)[..., 0]


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


def resized_crop(image: jax.Array, box: jax.Array) -> jax.Array:
  """The region box = (top, left, height, width), in pixels, of one HWC float image,
  resampled bilinearly to the image's own size."""
  height, width, _ = image.shape
  rows = box[0] + (jnp.arange(height, dtype=jnp.float32) + 0.5) * box[2] / height - 0.5
  cols = box[1] + (jnp.arange(width, dtype=jnp.float32) + 0.5) * box[3] / width - 0.5
  grid = jnp.meshgrid(rows, cols, indexing="ij")
  def crop_channel(channel):
    return jax.scipy.ndimage.map_coordinates(channel, grid, order=1, mode="nearest")
  return jax.vmap(crop_channel, in_axes=-1, out_axes=-1)(image)


def random_resized_crop(key: jax.Array, images: jax.Array, min_scale: float) -> jax.Array:
  """Inception-style crops: area fraction in [min_scale, 1], aspect ratio in [3/4, 4/3]."""
  n, height, width, _ = images.shape
  area_key, ratio_key, top_key, left_key = jax.random.split(key, 4)
  area = jax.random.uniform(area_key, (n,), minval=min_scale, maxval=1.0)
  ratio = jnp.exp(jax.random.uniform(ratio_key, (n,), minval=jnp.log(3 / 4),
                                     maxval=jnp.log(4 / 3)))
  crop_h = jnp.minimum(jnp.sqrt(area / ratio), 1.0) * height
  crop_w = jnp.minimum(jnp.sqrt(area * ratio), 1.0) * width
  top = jax.random.uniform(top_key, (n,)) * (height - crop_h)
  left = jax.random.uniform(left_key, (n,)) * (width - crop_w)
  return jax.vmap(resized_crop)(images, jnp.stack([top, left, crop_h, crop_w], -1))


def random_crop(key: jax.Array, images: jax.Array, size: int) -> jax.Array:
  """A random size x size window of each image, at native resolution (no resampling).

  Training on crops of full-resolution images multiplies the views of a small dataset
  without touching pixel statistics; a fully convolutional model with global pooling
  then evaluates the whole image.
  """
  n, height, width, channels = images.shape
  if size > min(height, width):
    raise ValueError(f"crop size {size} is larger than the images ({height}x{width})")
  top_key, left_key = jax.random.split(key)
  tops = jax.random.randint(top_key, (n,), 0, height - size + 1)
  lefts = jax.random.randint(left_key, (n,), 0, width - size + 1)
  def crop(image, top, left):
    return jax.lax.dynamic_slice(image, (top, left, 0), (size, size, channels))
  return jax.vmap(crop)(images, tops, lefts)


BLUR_RADIUS = 6  # Taps each side: enough for sigma up to 2 (3 sigma).


def gaussian_blur(image: jax.Array, sigma: jax.Array) -> jax.Array:
  """Separable Gaussian blur of one HWC float image; edges repeat the border pixel."""
  offsets = jnp.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=jnp.float32)
  taps = jnp.exp(-0.5 * (offsets / jnp.maximum(sigma, 1e-3)) ** 2)
  taps = taps / taps.sum()
  height, width, _ = image.shape
  padded = jnp.pad(image, ((BLUR_RADIUS,) * 2, (BLUR_RADIUS,) * 2, (0, 0)), mode="edge")
  rows = sum(t * padded[i:i + height] for i, t in enumerate(taps))
  return sum(t * rows[:, i:i + width] for i, t in enumerate(taps))


def random_gaussian_blur(key: jax.Array, images: jax.Array, prob: float,
                         max_sigma: float) -> jax.Array:
  """Blurs each image with probability `prob`, sigma uniform in [0.1, max_sigma]."""
  apply_key, sigma_key = jax.random.split(key)
  n = images.shape[0]
  apply = jax.random.bernoulli(apply_key, prob, (n,))
  sigma = jax.random.uniform(sigma_key, (n,), minval=0.1, maxval=max_sigma)
  blurred = jax.vmap(gaussian_blur)(images, sigma)
  return jnp.where(apply[:, None, None, None], blurred, images)


def random_color_jitter(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
  """Random brightness, contrast and (for color) saturation, each within ±strength."""
  n, _, _, channels = images.shape
  factors = 1 + jax.random.uniform(key, (3, n, 1, 1, 1), minval=-strength, maxval=strength)
  brightness, contrast, saturation = factors
  images = images * brightness
  mean = images.mean(axis=(1, 2, 3), keepdims=True)
  images = (images - mean) * contrast + mean
  if channels == 3:
    gray = to_grayscale(images)
    images = (images - gray) * saturation + gray
  return jnp.clip(images, 0.0, 1.0)


def augment(key: jax.Array, images: jax.Array, *, flip: bool = False,
            rotation_degrees: float = 0.0, crop_size: int = 0, crop_min_scale: float = 1.0,
            blur_prob: float = 0.0, blur_max_sigma: float = 2.0,
            color_jitter: float = 0.0) -> jax.Array:
  """On-device augmentation of a float batch in [0, 1]; each part off by default.

  Study 2 used flip and rotation; Wang et al. (2020) showed that crops, blur, JPEG
  (applied in the host pipeline, see `input_pipeline.train_batches`) and color jitter
  make a detector survive what happens to images online.
  """
  keys = jax.random.split(key, 6)
  if crop_size:
    images = random_crop(keys[5], images, crop_size)
  if crop_min_scale < 1.0:
    images = random_resized_crop(keys[0], images, crop_min_scale)
  if flip:
    images = random_flip(keys[1], images)
  if rotation_degrees > 0:
    images = random_rotation(keys[2], images, rotation_degrees)
  if blur_prob > 0:
    images = random_gaussian_blur(keys[3], images, blur_prob, blur_max_sigma)
  if color_jitter > 0:
    images = random_color_jitter(keys[4], images, color_jitter)
  return images


def active_augmentations(*, flip: bool = False, rotation_degrees: float = 0.0,
                         crop_size: int = 0, crop_min_scale: float = 1.0,
                         blur_prob: float = 0.0, blur_max_sigma: float = 2.0,
                         color_jitter: float = 0.0, self_blend_share: float = 0.0,
                         self_blend_kinds: tuple[str, ...] = ()) -> list[str]:
  """The names of the device augmentations (`augment`'s arguments, and the train step's
  self-blending) that change images: none means the images reach the model as they are."""
  del blur_max_sigma, self_blend_kinds  # Only matter with blur_prob, self_blend_share.
  active = {"flip": flip, "rotation_degrees": rotation_degrees > 0, "crop_size": crop_size,
            "crop_min_scale": crop_min_scale < 1.0, "blur_prob": blur_prob > 0,
            "color_jitter": color_jitter > 0, "self_blend_share": self_blend_share > 0}
  return [name for name, on in active.items() if on]
