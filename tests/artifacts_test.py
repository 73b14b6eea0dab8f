"""Tests of generator-artifact pseudo-fakes: determinism, jit against eager, range, shapes,
the block and checkerboard structure up-sampling leaves, closeness to the input, and the
batch function's labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fakeface_jax import classes
from fakeface_jax.data import artifacts

SIZE = 32
# One compiled function per kind and shape, shared by the tests: compiling dominates.
JITTED = {kind: jax.jit(fn, static_argnames="factors")
          for kind, fn in artifacts.ARTIFACTS.items()}
batch_of = jax.jit(artifacts.artifact_batch,
                   static_argnames=("kinds", "weights", "factors"))


def _images(n=4, size=SIZE, channels=3, seed=0):
  """Gradients plus noise, clipped so that some pixels are exactly 0 and 1."""
  rng = np.random.default_rng(seed)
  ramp = np.linspace(-0.1, 1.1, size)[None, :, None, None]
  images = ramp + rng.normal(0, 0.15, (n, size, size, channels))
  return jnp.asarray(np.clip(images, 0, 1), jnp.float32)


def _smooth(size=SIZE, channels=3, seed=0):
  """A few periodic low-frequency waves about 0.5: no energy of its own near the
  Nyquist frequency, and no edge discontinuity for the FFT to spread."""
  rng = np.random.default_rng(seed)
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  image = np.full((size, size, channels), 0.5)
  for c in range(channels):
    for _ in range(4):
      fy, fx = rng.integers(0, 3, 2)
      image[..., c] += 0.08 * np.cos(2 * np.pi * (fy * rows + fx * cols) / size
                                     + rng.uniform(0, 2 * np.pi))
  return jnp.asarray(image, jnp.float32)


def _check_output(image, out):
  assert out.shape == image.shape and out.dtype == jnp.float32
  out = np.asarray(out)
  assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def _psnr(a, b):
  return -10 * np.log10(np.mean((np.asarray(a, np.float64) - np.asarray(b)) ** 2))


@pytest.mark.parametrize("kind", artifacts.ARTIFACT_KINDS)
def test_each_kind_same_key_same_image_other_key_differs(kind):
  image = _images(n=1)[0]
  first = JITTED[kind](jax.random.key(0), image)
  again = JITTED[kind](jax.random.key(0), image)
  others = [JITTED[kind](jax.random.key(k), image) for k in (1, 2)]
  _check_output(image, first)
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, image)
  assert all(not np.array_equal(first, other) for other in others)


def _gray():
  """Gray, and a size that no factor divides."""
  return _images(n=1, size=SIZE, channels=1, seed=1)[0, :19, :27]


@pytest.mark.parametrize("kind", artifacts.ARTIFACT_KINDS)
def test_each_kind_keeps_gray_and_sizes_no_factor_divides(kind):
  gray = _gray()
  for key in range(2):
    # 19 pixels leave room for 2x only, unless 8x is asked for.
    for factors in (artifacts.FACTORS, (8,)):
      out = JITTED[kind](jax.random.key(key), gray, factors=factors)
      _check_output(gray, out)
      assert np.abs(np.asarray(out) - np.asarray(gray)).mean() > 1e-3


@pytest.mark.parametrize("kind", artifacts.ARTIFACT_KINDS)
def test_each_kind_jit_matches_eager(kind):
  gray = _gray()
  jitted = JITTED[kind](jax.random.key(7), gray)
  eager = artifacts.ARTIFACTS[kind](jax.random.key(7), gray)
  np.testing.assert_allclose(jitted, eager, atol=1e-5, rtol=0)


def test_factors_that_leave_too_few_pixels_are_not_drawn():
  assert artifacts.usable_factors((2, 4, 8), 64, 64) == (2, 4, 8)
  assert artifacts.usable_factors((2, 4, 8), 32, 40) == (2, 4)
  assert artifacts.usable_factors((4, 8), 16, 16) == (4,)


@pytest.mark.parametrize("kind", artifacts.ARTIFACT_KINDS)
def test_each_kind_keeps_the_face_the_same_face(kind):
  image = _smooth()
  for key in range(6):
    out = JITTED[kind](jax.random.key(key), image)
    assert _psnr(out, image) > 25, (key, _psnr(out, image))


@pytest.mark.parametrize(("factor", "size"), [(2, (32, 32)), (4, (33, 18)), (8, (20, 16))])
def test_nearest_down_up_leaves_constant_blocks_of_the_block_mean(factor, size):
  image = _images(n=1, size=40, seed=3)[0, :size[0], :size[1]]
  out = np.asarray(artifacts.down_up(image, factor, "nearest"))
  assert out.shape == image.shape
  for top in range(0, size[0], factor):
    for left in range(0, size[1], factor):
      block = out[top:top + factor, left:left + factor]
      np.testing.assert_array_equal(block, np.broadcast_to(block[0, 0], block.shape))
  # Whole blocks hold the mean of the input's block.
  np.testing.assert_allclose(out[:factor, :factor].mean((0, 1)),
                             np.asarray(image[:factor, :factor]).mean((0, 1)), atol=1e-6)


def test_bilinear_down_up_keeps_constant_images():
  image = jnp.full((SIZE, 24, 3), 0.3, jnp.float32)
  for factor in artifacts.FACTORS:
    np.testing.assert_allclose(artifacts.down_up(image, factor, "bilinear"), image,
                               atol=1e-6)


def _period_peak(image, factor):
  """How far the 2D FFT magnitude (summed over channels) at the frequencies of period
  `factor` along rows, columns and both stands above its 8 neighbours: the largest
  ratio of the three."""
  image = np.asarray(image, np.float64)
  size = image.shape[0]
  magnitude = np.abs(np.fft.fft2(image - image.mean((0, 1)), axes=(0, 1))).sum(-1)
  k = size // factor
  floor = 1e-3 * magnitude.max()  # Rounding noise is no peak.
  ratios = []
  for u, v in [(k, 0), (0, k), (k, k)]:
    neighbours = [magnitude[(u + du) % size, (v + dv) % size]
                  for du in (-1, 0, 1) for dv in (-1, 0, 1) if du or dv]
    ratios.append(magnitude[u, v] / (np.mean(neighbours) + floor))
  return max(ratios)


@pytest.mark.parametrize("factor", [2, 4])
def test_transposed_convolution_puts_a_peak_at_its_period(factor):
  image = _smooth()
  assert _period_peak(image, factor) < 0.01
  for key in range(4):
    out = JITTED["transposed"](jax.random.key(key), image, factors=(factor,))
    assert _period_peak(out, factor) > 3, (key, _period_peak(out, factor))


def test_bilinear_up_sampling_puts_no_peak_at_nyquist():
  # The control for the test above: 2x bilinear interpolation's filter is 0 at Nyquist.
  image = _smooth()
  for key in range(4):
    out = JITTED["bilinear"](jax.random.key(key), image, factors=(2,))
    assert _period_peak(out, 2) < 1.5, (key, _period_peak(out, 2))


def _labels(n, seed=0):
  labels = np.full(n, classes.REAL, np.int32)
  labels[np.random.default_rng(seed).permutation(n)[: n // 4]] = classes.FAKE
  return jnp.asarray(labels)


def test_artifact_batch_makes_a_share_of_reals_fakes_and_leaves_fakes_alone():
  images, labels = _images(n=32, size=16, seed=4), _labels(32)
  fake = np.asarray(labels) == classes.FAKE
  for share, key in [(1.0, 0), (0.0, 1), (0.5, 2)]:
    out, out_labels = batch_of(jax.random.key(key), images, labels, share)
    out, out_labels = np.asarray(out), np.asarray(out_labels)
    assert out.shape == images.shape and out_labels.dtype == labels.dtype
    assert out.min() >= 0 and out.max() <= 1
    # Fakes: the same pixels and the same label.
    np.testing.assert_array_equal(out[fake], np.asarray(images)[fake])
    assert np.all(out_labels[fake] == classes.FAKE)
    changed = np.any(out != np.asarray(images), axis=(1, 2, 3))
    made = ~fake & (out_labels == classes.FAKE)
    # A real is changed exactly when it is relabelled.
    np.testing.assert_array_equal(changed[~fake], made[~fake])
    if share == 1.0:
      assert made[~fake].all()
    elif share == 0.0:
      assert not made.any()
      np.testing.assert_array_equal(out, images)
    else:
      assert 5 <= made.sum() <= 19, made.sum()


def test_mixture_weights_choose_between_self_blend_and_artifacts():
  # A self-blend leaves the corners exactly as they were; an up-sampling changes them.
  images, labels = _images(n=32, size=16, seed=5), jnp.full(32, classes.REAL, jnp.int32)
  out, out_labels = batch_of(jax.random.key(6), images, labels, 1.0,
                             ("self_blend", "transposed"), (3.0, 1.0))
  assert np.all(np.asarray(out_labels) == classes.FAKE)
  corners = (slice(None), [0, 0, -1, -1], [0, -1, 0, -1])
  kept = np.all(np.asarray(out)[corners] == np.asarray(images)[corners], axis=(1, 2))
  assert 18 <= kept.sum() <= 30, kept.sum()  # 24 expected.


def test_unknown_kind_bad_weights_factors_or_share_are_rejected():
  image, images, labels = _images(n=1)[0], _images(n=2), _labels(2)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="pseudo-fake kinds"):
    artifacts.pseudo_fake(key, image, ("nearest", "gan"))
  with pytest.raises(ValueError, match="pseudo-fake kinds"):
    artifacts.artifact_batch(key, images, labels, 0.5, ())
  with pytest.raises(ValueError, match="pseudo-fake kinds"):
    artifacts.artifact_batch(key, images, labels, 0.5, ("nearest", "nearest"))
  with pytest.raises(ValueError, match="weights"):
    artifacts.pseudo_fake(key, image, ("nearest", "bilinear"), (1.0,))
  with pytest.raises(ValueError, match="weights"):
    artifacts.pseudo_fake(key, image, ("nearest", "bilinear"), (0.0, 0.0))
  with pytest.raises(ValueError, match="factors"):
    artifacts.nearest(key, image, factors=(3,))
  with pytest.raises(ValueError, match="factors"):
    artifacts.pseudo_fake(key, image, factors=())
  with pytest.raises(ValueError, match="method"):
    artifacts.down_up(image, 2, "bicubic")
  for share in (-0.1, 1.5):
    with pytest.raises(ValueError, match=r"share must be in \[0, 1\]"):
      artifacts.artifact_batch(key, images, labels, share)
