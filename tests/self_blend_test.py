"""Tests of self-blended pseudo-fakes: pixels outside the mask kept bit for bit, masks
where the face parts are, determinism, and the batch function's labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fakeface_jax import classes
from fakeface_jax.data import self_blend
from tests.conftest import centre_of_mass

SIZE = 32
# One compiled function per shape, shared by the tests: compiling dominates their time.
blend = jax.jit(self_blend.self_blend, static_argnames="kinds")
blend_batch = jax.jit(self_blend.pseudo_fake_batch, static_argnames="kinds")
masks_of = jax.jit(self_blend.random_masks, static_argnums=(1, 2, 3, 4))


def _images(n=4, size=SIZE, channels=3, seed=0):
  """Gradients plus noise, clipped so that some pixels are exactly 0 and 1."""
  rng = np.random.default_rng(seed)
  ramp = np.linspace(-0.1, 1.1, size)[None, :, None, None]
  images = ramp + rng.normal(0, 0.15, (n, size, size, channels))
  return jnp.asarray(np.clip(images, 0, 1), jnp.float32)


def _check_blend(images, blended, masks):
  """Exact input where the mask is 0, a visible change where it is high, all in range."""
  images, blended, masks = map(np.asarray, (images, blended, masks))
  assert blended.shape == images.shape and masks.shape == images.shape[:3] + (1,)
  assert masks.min() >= 0 and masks.max() <= 1
  assert blended.min() >= 0 and blended.max() <= 1
  zero = masks[..., 0] == 0
  assert zero.any() and (~zero).any()
  np.testing.assert_array_equal(blended[zero], images[zero])
  for image, out, mask in zip(images, blended, masks):
    assert np.abs(out - image)[mask[..., 0] > 0.2].max() > 0.01


def test_pixels_where_the_mask_is_zero_are_the_input_exactly():
  images = _images()
  blended, masks = blend(jax.random.key(0), images)
  _check_blend(images, blended, masks)


# Running without jit compiles every operation on its own, for each kind of mask: two
# kinds keep the tests that do it short.
FEW_KINDS = ("eyes", "convex")


def test_gray_images():
  images = _images(n=2, size=16, channels=1)
  blended, masks = blend(jax.random.key(1), images, FEW_KINDS)
  _check_blend(images, blended, masks)


def test_same_key_same_output_other_key_differs():
  images = _images()
  first, first_masks = blend(jax.random.key(3), images)
  again, again_masks = blend(jax.random.key(3), images)
  other, other_masks = blend(jax.random.key(4), images)
  np.testing.assert_array_equal(first, again)
  np.testing.assert_array_equal(first_masks, again_masks)
  assert not np.array_equal(first, other)
  assert not np.array_equal(first_masks, other_masks)


@pytest.mark.slow  # Compiles each operation separately: seconds.
def test_jit_matches_eager():
  images = _images(n=2, size=16, channels=1)
  jitted = blend(jax.random.key(1), images, FEW_KINDS)
  eager = self_blend.self_blend(jax.random.key(1), images, FEW_KINDS)
  for a, b in zip(jitted, eager):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


# Per kind: (row range of the centre of mass, largest |column - 0.5| of it, rows that
# must be exactly 0 as a (from, to) fraction of the height).
PLACES = {
    "face": ((0.42, 0.62), 0.08, None),
    "eyes": ((0.35, 0.5), 0.2, (0.65, 1.0)),
    "nose": ((0.5, 0.62), 0.05, (0.0, 0.3)),
    "mouth": ((0.65, 0.8), 0.05, (0.0, 0.5)),
    "convex": ((0.3, 0.7), 0.2, None),
}


@pytest.mark.parametrize("kind", self_blend.MASK_KINDS)
def test_each_mask_kind_is_where_that_part_is(kind):
  masks = masks_of(jax.random.key(5), 16, SIZE, SIZE, (kind,))
  (low, high), max_dx, empty_rows = PLACES[kind]
  peaks = np.asarray(masks).max((1, 2, 3))
  assert np.all((peaks >= 0.25) & (peaks <= 1.0)) and masks.min() >= 0
  # Every mask leaves pixels alone: at least the corners.
  assert np.all(np.asarray(masks)[:, [0, 0, -1, -1], [0, -1, 0, -1]] == 0)
  centres = centre_of_mass(masks)
  assert np.all((centres[:, 0] > low) & (centres[:, 0] < high)), centres
  assert np.all(np.abs(centres[:, 1] - 0.5) < max_dx), centres
  if empty_rows:
    start, stop = (round(f * SIZE) for f in empty_rows)
    assert not np.asarray(masks)[:, start:stop].any()


def test_kinds_mix_within_a_batch():
  masks = masks_of(jax.random.key(6), 32, SIZE, SIZE, ("eyes", "mouth"))
  rows = centre_of_mass(masks)[:, 0]
  assert np.all((rows < 0.5) | (rows > 0.65))
  assert 4 <= (rows < 0.5).sum() <= 28


def test_unknown_mask_kind_is_rejected():
  with pytest.raises(ValueError, match="mask kinds"):
    self_blend.random_masks(jax.random.key(0), 2, SIZE, SIZE, ("face", "ear"))
  with pytest.raises(ValueError, match="mask kinds"):
    self_blend.random_masks(jax.random.key(0), 2, SIZE, SIZE, ())


def test_jpeg_requantize_is_lossy_idempotent_and_keeps_odd_sizes():
  image = _images(n=1, size=20)[0]
  coarse = self_blend.jpeg_requantize(image, 30)
  fine = self_blend.jpeg_requantize(image, 95)
  assert coarse.shape == image.shape
  error = [float(jnp.abs(out - image).mean()) for out in (coarse, fine)]
  assert error[0] > 0.02 and error[1] < error[0] / 3
  # Coefficients already on the quantisation grid stay there; not in the partial block
  # at the edge, whose padding comes from different pixels the second time.
  np.testing.assert_allclose(self_blend.jpeg_requantize(coarse, 30)[:16, :16],
                             coarse[:16, :16], atol=1e-4)


def test_perturb_changes_the_copy_within_range():
  image = _images(n=1)[0]
  out = jax.jit(self_blend.perturb)(jax.random.key(2), image)
  assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
  assert float(jnp.abs(out - image).mean()) > 0.005


def _real_labels(n=4):
  return jnp.full((n,), classes.REAL, jnp.int32)


def test_share_one_turns_every_real_image_into_a_fake():
  images = _images()
  out, labels, masks = blend_batch(jax.random.key(7), images, _real_labels(), 1.0)
  assert labels.dtype == jnp.int32
  np.testing.assert_array_equal(labels, classes.FAKE)
  _check_blend(images, out, masks)


def test_share_zero_changes_nothing():
  images = _images()
  out, labels, masks = blend_batch(jax.random.key(7), images, _real_labels(), 0.0)
  np.testing.assert_array_equal(out, images)
  np.testing.assert_array_equal(labels, classes.REAL)
  assert not np.asarray(masks).any()


def test_fakes_pass_through_untouched():
  images = _images()
  given = jnp.array([classes.FAKE, classes.REAL, classes.FAKE, classes.REAL], jnp.int32)
  out, labels, masks = blend_batch(jax.random.key(8), images, given, 1.0)
  np.testing.assert_array_equal(labels, classes.FAKE)
  fake = np.asarray(given) == classes.FAKE
  np.testing.assert_array_equal(np.asarray(out)[fake], np.asarray(images)[fake])
  assert not np.asarray(masks)[fake].any()
  assert np.all(np.asarray(masks)[~fake].max((1, 2, 3)) >= 0.25)


def test_share_half_makes_about_half_of_the_reals_fake():
  images = _images()
  labels = [blend_batch(jax.random.key(seed), images, _real_labels(), 0.5)[1]
            for seed in range(100)]
  fake_share = float((np.concatenate(labels) == classes.FAKE).mean())
  assert 0.4 < fake_share < 0.6  # 400 draws: 4 standard deviations.


def test_share_outside_the_unit_interval_is_rejected():
  with pytest.raises(ValueError, match="share"):
    self_blend.pseudo_fake_batch(jax.random.key(0), _images(), _real_labels(), 1.5)
