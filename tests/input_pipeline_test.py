"""Tests of batching: per-process slices, per-epoch shuffles, resumption, padded eval."""

import numpy as np
import pytest

from fakeface_jax import config_checks
from fakeface_jax.data import input_pipeline
from fakeface_jax import errors


def split(n=40):
  images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
  return input_pipeline.ArraySplit(images, (np.arange(n) % 2).astype(np.int32))


def test_processes_slices_concatenate_to_the_single_process_batch():
  data = split()
  single = list(input_pipeline.train_batches(data, 8, seed=0, epoch=1))
  parts = [list(input_pipeline.train_batches(data, 8, seed=0, epoch=1, process_index=p,
                                             process_count=2)) for p in range(2)]
  assert len(single) == 5
  for step, batch in enumerate(single):
    joined = np.concatenate([parts[0][step]["image"], parts[1][step]["image"]])
    np.testing.assert_array_equal(joined, batch["image"])  # Same rows, same order.


def test_epochs_reshuffle_drop_the_remainder_and_resume_mid_epoch():
  data = split(42)
  epoch1 = [b["image"][:, 0, 0, 0] for b in input_pipeline.train_batches(data, 8, seed=0,
                                                                          epoch=1)]
  epoch2 = [b["image"][:, 0, 0, 0] for b in input_pipeline.train_batches(data, 8, seed=0,
                                                                          epoch=2)]
  assert len(epoch1) == 5 and len(np.unique(np.concatenate(epoch1))) == 40
  assert not np.array_equal(np.concatenate(epoch1), np.concatenate(epoch2))
  resumed = [b["image"][:, 0, 0, 0] for b in input_pipeline.train_batches(
      data, 8, seed=0, epoch=1, start_step=3)]
  np.testing.assert_array_equal(np.concatenate(resumed), np.concatenate(epoch1[3:]))


def test_eval_batches_pad_and_mask_the_last_batch():
  data = split(10)
  batches = list(input_pipeline.eval_batches(data, 4))
  assert [b["mask"].sum() for b in batches] == [4, 4, 2]
  seen = np.concatenate([b["image"][b["mask"] > 0][:, 0, 0, 0] for b in batches])
  np.testing.assert_array_equal(seen, np.arange(10))


def test_streamed_and_cached_splits_give_identical_batches(tiny_config):
  tiny_config.data.cache = "memory"
  cached = input_pipeline.load_data(tiny_config)
  streamed = input_pipeline.load_data(tiny_config, cache="stream")
  assert isinstance(streamed["train"], input_pipeline.StreamedSplit)
  assert streamed["train"].image_shape == cached["train"].image_shape
  for a, b in zip(input_pipeline.train_batches(cached["train"], 16, seed=0, epoch=3),
                  input_pipeline.train_batches(streamed["train"], 16, seed=0, epoch=3)):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  for a, b in zip(input_pipeline.eval_batches(cached["test"], 24),
                  input_pipeline.eval_batches(streamed["test"], 24)):
    np.testing.assert_array_equal(a["image"], b["image"])


def test_unknown_cache_mode_is_a_config_error(tiny_config):
  with pytest.raises(errors.ConfigError, match="config.data.cache"):
    input_pipeline.load_data(tiny_config, cache="disk")


@pytest.mark.parametrize("kwargs", [dict(jpeg_prob=0.5, jpeg_min_quality=30),
                                    dict(jpeg_prob=0.5, jpeg_min_quality=30,
                                         jpeg_max_quality=60),
                                    dict(downscale_prob=0.5, downscale_min_factor=0.4),
                                    dict(blur_prob=0.5, blur_max_sigma=2.0),
                                    dict(noise_prob=0.5, noise_max_sigma=8.0)])
def test_host_augmentations_are_seeded_and_per_global_position(kwargs):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
  data = input_pipeline.ArraySplit(images, (np.arange(16) % 2).astype(np.int32))
  kwargs = dict(seed=0, epoch=1, **kwargs)
  single = list(input_pipeline.train_batches(data, 8, **kwargs))
  parts = [list(input_pipeline.train_batches(data, 8, process_index=p, process_count=2,
                                             **kwargs)) for p in range(2)]
  for step, batch in enumerate(single):
    np.testing.assert_array_equal(
        np.concatenate([parts[0][step]["image"], parts[1][step]["image"]]), batch["image"])
  clean = list(input_pipeline.train_batches(data, 8, seed=0, epoch=1))
  changed = [np.any(a["image"] != b["image"], axis=(1, 2, 3)) for a, b in zip(single, clean)]
  assert 0 < np.concatenate(changed).sum() < 16  # About half re-encoded.


def test_a_resaved_source_splits_its_files_alike_and_reads_each_ones_fixed_copy(
    tiny_config):
  clean = input_pipeline.load_data(tiny_config, cache="memory")
  tiny_config.data.resave.update({"scale": (0.5, 0.7), "quality": (70, 90), "seed": 1})
  resaved = input_pipeline.load_data(tiny_config, cache="memory")
  streamed = input_pipeline.load_data(tiny_config, cache="stream")
  for role in ("train", "validation", "test"):
    np.testing.assert_array_equal(resaved[role].paths, clean[role].paths)
    np.testing.assert_array_equal(resaved[role].labels, clean[role].labels)
    assert resaved[role].images.shape == clean[role].images.shape
    everything = np.arange(len(streamed[role]))
    np.testing.assert_array_equal(streamed[role].take(everything), resaved[role].images)
    # The streamed copies' formats are stated without encoding them; the in-memory
    # split read them from the encoded copies.
    stated, read = streamed[role].take_formats(everything), resaved[role].formats
    assert stated == read
    np.testing.assert_array_equal([f.tables for f in stated], [f.tables for f in read])
  difference = np.abs(resaved["train"].images.astype(int) - clean["train"].images)
  assert difference.mean() > 1.0
  # The copies were saved smaller, so decoding upscaled them and left no JPEG grid.
  assert all(f.width < tiny_config.data.image_size for f in resaved["train"].formats)
  assert not resaved["train"].take_tables(np.arange(4)).any()


def test_bad_resave_settings_are_refused_before_any_data_is_read(tiny_config):
  tiny_config.data.resave.quality = (50, 99)
  with pytest.raises(errors.ConfigError,
                     match=r"^config.data.resave: resave quality must be a range"):
    config_checks.check_config(tiny_config)
  tiny_config.data.resave.quality = (0, 0)
  tiny_config.data.mixture.copy = {"name": "synthetic", "resave": {"quality": (50, 40)}}
  with pytest.raises(errors.ConfigError,
                     match=r"^config.data.mixture.copy.resave: resave quality must be"):
    config_checks.check_config(tiny_config)
