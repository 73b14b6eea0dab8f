"""Augmentation draws over their whole ranges: probabilities 0 and 1 meaning never and
always, both ends of each drawn range reached, single-value ranges, and each process's
share of a global batch degraded with its own positions' draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from fakeface_jax.data import input_pipeline
from fakeface_jax.data import jpeg_tables
from fakeface_jax.data import preprocessing

BATCH = 8


def _draws(step, n=4000, seed=0):
  return step.draw_settings(np.random.default_rng(seed), n)


@settings(max_examples=25)
@given(low=st.integers(1, 95), span=st.integers(0, 3))
def test_jpeg_qualities_reach_both_ends_single_value_ranges_included(low, span):
  high = min(95, low + span)
  [step] = input_pipeline.host_degradations(jpeg_prob=1.0, jpeg_min_quality=low,
                                            jpeg_max_quality=high)
  assert set(_draws(step).tolist()) == set(range(low, high + 1))


def test_each_host_setting_stays_in_its_range_and_spreads_over_it():
  steps = input_pipeline.host_degradations(
      downscale_prob=1.0, downscale_min_factor=0.4, blur_prob=1.0, blur_max_sigma=1.2,
      noise_prob=1.0, noise_max_sigma=6.0)
  factors, sigmas, noise = (_draws(step) for step in steps)
  assert 0.4 <= factors.min() < 0.42 and 0.98 < factors.max() < 1.0
  assert 0.1 <= sigmas.min() < 0.12 and 1.18 < sigmas.max() <= 1.2
  assert 0.0 <= noise[:, 0].min() < 0.05 and 5.9 < noise[:, 0].max() <= 6.0
  assert len(set(noise[:, 1].tolist())) > 3900  # Each image's noise has its own seed.


def test_host_degradations_come_in_the_order_images_meet_them_online():
  steps = input_pipeline.host_degradations(jpeg_prob=0.5, noise_prob=0.5, blur_prob=0.5,
                                           downscale_prob=0.5)
  assert [s.stream for s in steps] == [(1,), (2,), (3,), ()]
  assert input_pipeline.host_degradations(noise_prob=1.0)[0].stream == (3,)
  assert input_pipeline.host_degradations() == []


def _recording_degrade(images, tables, local, prob, seed=0):
  """Runs _degrade_some on numbered images with a 'degradation' that writes its setting
  into the image; returns (images, tables) after it."""
  def draw_settings(rng, n):
    return rng.integers(1, 200, n)

  def degrade(batch, setting):
    return np.full_like(batch, setting)

  input_pipeline._degrade_some(  # pylint: disable=protected-access
      images, tables, local, np.random.default_rng(seed), BATCH, prob, draw_settings,
      degrade, lambda setting: np.full((2, 8, 8), setting, jpeg_tables.TABLES_DTYPE))
  return images, tables


@pytest.mark.parametrize("prob, changed", [(0.0, 0), (1.0, BATCH)])
def test_probability_zero_never_degrades_and_one_always_does(prob, changed):
  images = np.zeros((BATCH, 2, 2, 1), np.uint8)
  images, _ = _recording_degrade(images, None, slice(0, BATCH), prob)
  assert int((images.reshape(BATCH, -1) > 0).all(axis=1).sum()) == changed


@pytest.mark.parametrize("process_index", [0, 1, 3])
def test_each_process_degrades_its_images_with_its_own_positions_draws(process_index):
  # The whole global batch, degraded in one process, is the reference.
  whole, whole_tables = _recording_degrade(
      np.zeros((BATCH, 2, 2, 1), np.uint8),
      np.zeros((BATCH, 2, 8, 8), jpeg_tables.TABLES_DTYPE), slice(0, BATCH), 0.5, seed=3)
  assert 0 < (whole[:, 0, 0, 0] > 0).sum() < BATCH  # Some degraded, some not.
  local = input_pipeline._process_slice(BATCH, process_index, 4)  # pylint: disable=protected-access
  part, part_tables = _recording_degrade(
      np.zeros((2, 2, 2, 1), np.uint8), np.zeros((2, 2, 8, 8), jpeg_tables.TABLES_DTYPE),
      local, 0.5, seed=3)
  np.testing.assert_array_equal(part, whole[local])
  np.testing.assert_array_equal(part_tables, whole_tables[local])


def test_device_blur_probability_zero_and_one():
  images = jax.random.uniform(jax.random.key(0), (6, 12, 10, 3))
  key = jax.random.key(1)
  never = preprocessing.random_gaussian_blur(key, images, 0.0, 2.0)
  always = preprocessing.random_gaussian_blur(key, images, 1.0, 2.0)
  np.testing.assert_array_equal(never, images)
  assert bool(jnp.all(jnp.any(jnp.abs(always - images) > 1e-3, axis=(1, 2, 3))))


def test_random_crops_reach_every_offset_on_both_axes():
  images = jnp.broadcast_to(jnp.arange(5 * 7, dtype=jnp.float32).reshape(1, 5, 7, 1),
                            (400, 5, 7, 1))
  crops = preprocessing.random_crop(jax.random.key(2), images, 3)
  corners = np.asarray(crops[:, 0, 0, 0]).astype(int)
  tops, lefts = corners // 7, corners % 7
  assert set(tops.tolist()) == {0, 1, 2} and set(lefts.tolist()) == {0, 1, 2, 3, 4}
  np.testing.assert_array_equal(preprocessing.random_crop(jax.random.key(2), images[:, :3, :3],
                                                          3), images[:, :3, :3])
  with pytest.raises(ValueError, match="crop size 6 is larger than the images"):
    preprocessing.random_crop(jax.random.key(2), images, 6)
