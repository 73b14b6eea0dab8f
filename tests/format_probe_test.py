"""Tests of the format-only probe and of the host augmentations that make format tell
nothing: on classes that differ only by JPEG quality the probe reads the label, and after
the format-invariant augmentations it is at chance; the augmentations are seeded per
global position, in the order downscale, blur, noise, JPEG, and keep the tables right."""

import io

import numpy as np
import pytest
from PIL import Image

from fakeface_jax import config_checks
from fakeface_jax.data import degradations
from fakeface_jax.data import image_decoding
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import jpeg_tables
from fakeface_jax import errors
from fakeface_jax.experiments import format_probe

SIZE = 32
# Fakes saved at one JPEG quality, reals at another: the only thing telling them apart.
FAKE_QUALITY, REAL_QUALITY = 95, 60
NUM_IMAGES = 512  # 8 batches of 64: the probe's accuracy has a standard error of ~0.02.
BATCH = 64
# All host augmentations that make format carry no label, as a run would set them.
FORMAT_INVARIANT = dict(jpeg_prob=1.0, jpeg_min_quality=30, jpeg_max_quality=95,
                        downscale_prob=0.5, downscale_min_factor=0.5, blur_prob=0.5,
                        blur_max_sigma=1.5, noise_prob=0.5, noise_max_sigma=5.0)


def smooth_images(n, seed=0):
  """uint8 (n, SIZE, SIZE, 3): a few random low-frequency waves, a colour and mild noise,
  all from one generator, so that content is distributed alike whatever the label."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
  images = np.empty((n, SIZE, SIZE, 3), np.uint8)
  for i in range(n):
    image = rng.uniform(60, 190, 3) + rng.normal(0, 6, (SIZE, SIZE, 3))
    for _ in range(4):
      fx, fy = rng.uniform(0.5, 4, 2)
      wave = np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
      image += rng.uniform(10, 40, 3) * wave[..., None]
    images[i] = np.clip(np.rint(image), 0, 255)
  return images


def jpeg_split(images, qualities):
  """An ArraySplit of `images` saved as JPEG at `qualities` and decoded as training
  decodes them (so it holds each file's format and tables); labels alternate 0, 1."""
  decoded, formats = [], []
  for image, quality in zip(images, qualities):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=int(quality))
    array, image_format = image_decoding.decode_with_format(buffer.getvalue(), SIZE, False)
    decoded.append(array)
    formats.append(image_format)
  labels = (np.arange(len(images)) % 2).astype(np.int32)
  return input_pipeline.ArraySplit(np.stack(decoded), labels, formats=formats)


@pytest.fixture(scope="module")
def format_only_split():
  labels = np.arange(NUM_IMAGES) % 2
  return jpeg_split(smooth_images(NUM_IMAGES), np.where(labels == 1, REAL_QUALITY,
                                                        FAKE_QUALITY))


def probe_config(tiny_config, **host):
  tiny_config.batch_size = BATCH
  tiny_config.augment.host.update(host)
  return tiny_config


def test_probe_reads_the_label_from_format_in_the_raw_stream(format_only_split,
                                                             tiny_config):
  accuracy = format_probe.probe_stream(format_only_split, probe_config(tiny_config),
                                       NUM_IMAGES // BATCH)
  assert accuracy >= 0.9  # 1.0 measured.


def test_format_invariant_host_augmentations_bring_the_probe_to_chance(
    format_only_split, tiny_config):
  config = probe_config(tiny_config, **FORMAT_INVARIANT)
  accuracy = format_probe.probe_stream(format_only_split, config, NUM_IMAGES // BATCH)
  assert accuracy <= 0.65  # 0.52 measured.


def test_reencoding_at_high_qualities_only_leaves_the_format_readable(format_only_split,
                                                                     tiny_config):
  # Both classes get fresh tables, but the reals' coarser first compression still shows.
  config = probe_config(tiny_config, jpeg_prob=1.0, jpeg_min_quality=90)
  accuracy = format_probe.probe_stream(format_only_split, config, NUM_IMAGES // BATCH)
  assert accuracy >= 0.9  # 1.00 (0.996) measured.


def test_probe_statistics_describe_format():
  images = smooth_images(4, seed=1)
  split = jpeg_split(images, [30, 30, 90, 90])
  stats = format_probe.probe_statistics({"image": split.images,
                                         "jpeg_tables": split.take_tables(np.arange(4))})
  assert stats.shape == (4, len(format_probe.STATISTICS))
  np.testing.assert_array_equal(stats[:, 0], [30, 30, 90, 90])
  np.testing.assert_array_equal(stats[:, 1], 1)
  without = format_probe.probe_statistics({"image": images})
  np.testing.assert_array_equal(without[:, :2], 0)  # No tables: no quality, no grid.
  assert stats[:2, 2].min() > 0.1 > np.abs(without[:, 2]).max()  # Blockiness of q30.
  blurred = format_probe.probe_statistics({"image": degradations.gaussian_blur(images, 2)})
  assert np.all(blurred[:, 3] < without[:, 3])  # Less high-frequency energy.
  assert np.all(blurred[:, 5] < without[:, 5])  # Compresses better.


def test_probe_accuracy_on_known_statistics():
  rng = np.random.default_rng(0)
  labels = np.arange(400) % 2
  noise = rng.normal(size=(400, 3))
  assert abs(format_probe.probe_accuracy(noise, labels) - 0.5) < 0.08
  separable = np.column_stack([noise, labels + 0.1 * rng.normal(size=400)])
  assert format_probe.probe_accuracy(separable, labels) > 0.98
  # Only the spread differs: the squared statistics let the probe read it.
  spread = noise[:, :1] * np.where(labels == 1, 3.0, 0.3)[:, None]
  assert format_probe.probe_accuracy(spread, labels) > 0.8
  with pytest.raises(ValueError, match="at least 5 images of each class"):
    format_probe.probe_accuracy(noise[:8], labels[:8])


def expected_batch(split, seed, epoch, host):
  """What train_batches should make of a one-batch split at step 0, written out: each
  degradation's draws from [seed, epoch, 0, *stream] (JPEG's the original stream), in
  the order downscale, blur, noise, JPEG."""
  images, tables = split.take_batch(np.arange(len(split)))
  n = len(split)

  def draws(stream, prob):
    rng = np.random.default_rng([seed, epoch, 0, *stream])
    return rng, rng.random(n) < prob

  rng, apply = draws([1], host["downscale_prob"])
  factors = rng.uniform(host["downscale_min_factor"], 1.0, n)
  rng, blur = draws([2], host["blur_prob"])
  sigmas = rng.uniform(0.1, host["blur_max_sigma"], n)
  rng, noise = draws([3], host["noise_prob"])
  noise_sigmas, noise_seeds = rng.uniform(0, host["noise_max_sigma"], n), rng.integers(
      0, 2**31, n)
  rng, jpeg = draws([], host["jpeg_prob"])
  qualities = rng.integers(host["jpeg_min_quality"], host["jpeg_max_quality"] + 1, n)
  for i in range(n):
    one = images[i:i + 1]
    if apply[i]:
      one, tables[i] = degradations.downscale(one, factors[i]), jpeg_tables.NO_TABLES
    if blur[i]:
      one = degradations.gaussian_blur(one, sigmas[i])
    if noise[i]:
      one = degradations.gaussian_noise(one, noise_sigmas[i], int(noise_seeds[i]))
    if jpeg[i]:
      one, tables[i] = degradations.jpeg(one, int(qualities[i])), jpeg_tables.standard_tables(
          int(qualities[i]))
    images[i] = one[0]
  return images, tables, (apply, blur, noise, jpeg)


def test_host_augmentations_follow_their_draws_in_order_and_keep_tables_right():
  split = jpeg_split(smooth_images(16, seed=2), [80] * 16)
  host = dict(FORMAT_INVARIANT, jpeg_prob=0.5, jpeg_min_quality=40, jpeg_max_quality=70)
  [batch] = input_pipeline.train_batches(split, 16, seed=3, epoch=2, **host)
  images, tables, applied = expected_batch(split, 3, 2, host)
  assert all(0 < a.sum() < 16 for a in applied)  # Each degradation picked some images.
  np.testing.assert_array_equal(batch["image"], images)
  np.testing.assert_array_equal(batch["jpeg_tables"], tables)
  apply, blur, noise, jpeg = applied
  kept = ~apply & ~jpeg & (blur | noise)  # Blurred or noisy, then not re-encoded.
  assert kept.any()
  np.testing.assert_array_equal(tables[kept], jpeg_tables.standard_tables(80)[None])
  assert not np.any(tables[apply & ~jpeg])  # Downscaled: no grid.


def test_reencoding_sets_the_standard_tables_of_the_drawn_quality():
  split = jpeg_split(smooth_images(16, seed=3), [90] * 16)
  [batch] = input_pipeline.train_batches(split, 16, seed=5, epoch=1, jpeg_prob=0.5,
                                         jpeg_min_quality=30)
  rng = np.random.default_rng([5, 1, 0])
  # The draws of existing configs (jpeg_max_quality's default, 95) are those from
  # before it existed: rng.integers(min, 96).
  apply, qualities = rng.random(16) < 0.5, rng.integers(30, 96, 16)
  for i in range(16):
    quality = int(qualities[i]) if apply[i] else 90
    np.testing.assert_array_equal(batch["jpeg_tables"][i],
                                  jpeg_tables.standard_tables(quality))
    assert jpeg_tables.estimate_quality(batch["jpeg_tables"][i, 0]) == quality


def test_host_augmentations_depend_only_on_seed_epoch_and_step():
  split = jpeg_split(smooth_images(32, seed=4), [75] * 32)
  kwargs = dict(seed=1, epoch=3, **FORMAT_INVARIANT)
  single = list(input_pipeline.train_batches(split, 8, **kwargs))
  again = list(input_pipeline.train_batches(split, 8, **kwargs))
  resumed = list(input_pipeline.train_batches(split, 8, start_step=2, **kwargs))
  parts = [list(input_pipeline.train_batches(split, 8, process_index=p, process_count=4,
                                             **kwargs)) for p in range(4)]
  for step, batch in enumerate(single):
    for key in ("image", "jpeg_tables", "label"):
      np.testing.assert_array_equal(again[step][key], batch[key])
      np.testing.assert_array_equal(
          np.concatenate([part[step][key] for part in parts]), batch[key])
      if step >= 2:
        np.testing.assert_array_equal(resumed[step - 2][key], batch[key])
  other = list(input_pipeline.train_batches(split, 8, **dict(kwargs, seed=2)))
  assert not np.array_equal(other[0]["image"], single[0]["image"])


@pytest.mark.parametrize("key, value, message", [
    ("blur_prob", 1.5, r"config.augment.host.blur_prob must be in \[0, 1\], got 1.5"),
    ("noise_prob", -0.1, r"config.augment.host.noise_prob must be in \[0, 1\], got -0.1"),
    ("jpeg_max_quality", 96, "1 <= jpeg_min_quality <= jpeg_max_quality <= 95, got 30 "
     "and 96"),
    ("jpeg_min_quality", 97, "1 <= jpeg_min_quality <= jpeg_max_quality <= 95, got 97"),
    ("blur_max_sigma", 0.05, "blur_max_sigma must be at least 0.1"),
    ("noise_max_sigma", 0.0, "noise_max_sigma must be positive, got 0.0"),
])
def test_out_of_range_host_augmentations_are_config_errors(tiny_config, key, value,
                                                           message):
  tiny_config.augment.host.update(dict(FORMAT_INVARIANT, **{key: value}))
  with pytest.raises(errors.ConfigError, match=message) as info:
    config_checks.check_config(tiny_config)
  assert "\n" not in str(info.value)
  tiny_config.augment.host.update(FORMAT_INVARIANT)
  config_checks.check_config(tiny_config)
