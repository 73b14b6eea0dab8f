"""Tests of the feature caches' listing and removal (`fakeface-caches`)."""

import json
import os
import time

import numpy as np
import pytest

from fakeface_jax import errors
from fakeface_jax.training import caches
from fakeface_jax.training import feature_cache

NOW = time.time()


def _cache(data_dir, name, key=None, rows=3, dataset="ciplab/dir_1/1.0.0", age_s=0.0):
  """A cache folder as `feature_cache._write` leaves one (key None: no key.json)."""
  path = os.path.join(data_dir, dataset, feature_cache.CACHE_DIR, name)
  os.makedirs(path)
  np.save(os.path.join(path, feature_cache.FEATURES_FILE), np.zeros((rows, 4), np.float32))
  if key is not None:
    with open(os.path.join(path, feature_cache.KEY_JSON), "w") as f:
      json.dump(key, f)
  for file in [path] + [os.path.join(path, n) for n in os.listdir(path)]:
    os.utime(file, (NOW - age_s, NOW - age_s))
  return path


KEY = {"image_size": 224, "features_version": feature_cache.FEATURES_VERSION,
       "features": {"model": "CooccurrenceClassifier", "regions": [1.0, 0.5],
                    "jpeg_features": []},
       "resave": {"min_scale": 0.35, "max_scale": 0.85, "min_quality": 60,
                  "max_quality": 95, "seed": 0}}


@pytest.fixture
def data_dir(tmp_path):
  root = str(tmp_path / "tfds")
  _cache(root, "current", KEY, rows=5)
  _cache(root, "old", {**KEY, "features_version": feature_cache.FEATURES_VERSION - 1},
         dataset="image_folder/1.0.0")  # A builder without configs: one level less.
  _cache(root, "damaged")
  _cache(root, "current.tmp-0-ab12cd34", age_s=2 * feature_cache.ABANDONED_AFTER_S)
  _cache(root, "current.tmp-0-ef56ab78", age_s=60.0)
  os.makedirs(os.path.join(root, "downloads", "manual"))
  return root


def test_every_cache_folder_is_found_with_its_size_shape_and_why_it_is_stale(data_dir):
  folders = {os.path.basename(f.path): f for f in feature_cache.find_caches(data_dir)}
  assert sorted(folders) == ["current", "current.tmp-0-ab12cd34", "current.tmp-0-ef56ab78",
                             "damaged", "old"]
  current = folders["current"]
  assert current.key == KEY and current.shape == (5, 4)
  assert current.size_bytes == sum(os.path.getsize(os.path.join(current.path, n))
                                   for n in os.listdir(current.path))
  assert abs(current.last_used - NOW) < 1
  why = {name: folder.why_stale(NOW) for name, folder in folders.items()}
  assert why == {
      "current": None,
      # A pass may still be writing a recent temporary folder.
      "current.tmp-0-ef56ab78": None,
      "current.tmp-0-ab12cd34": "left by a feature pass that stopped",
      "damaged": "damaged: no readable key.json or features.npy",
      "old": f"written by older feature code (version {feature_cache.FEATURES_VERSION - 1}, "
             f"now {feature_cache.FEATURES_VERSION})"}


def test_a_read_cache_is_stamped_as_used(data_dir):
  path = os.path.join(data_dir, "ciplab/dir_1/1.0.0", feature_cache.CACHE_DIR, "current")
  os.utime(os.path.join(path, feature_cache.KEY_JSON), (NOW - 1e5, NOW - 1e5))
  os.utime(os.path.join(path, feature_cache.FEATURES_FILE), (NOW - 1e5, NOW - 1e5))
  feature_cache._mark_used(path)
  [folder] = [f for f in feature_cache.find_caches(data_dir) if f.path == path]
  assert folder.last_used > NOW - 10


def test_removal_takes_the_named_and_the_stale_folders_and_refuses_unknown_names(data_dir):
  folders = feature_cache.find_caches(data_dir)
  names = lambda chosen: [os.path.basename(f.path) for f in chosen]
  assert names(caches.chosen_for_removal(folders, ["current"], False, NOW, data_dir)) == [
      "current"]
  by_path = [f.path for f in folders if f.path.endswith("damaged")]
  assert names(caches.chosen_for_removal(folders, by_path, True, NOW, data_dir)) == [
      "current.tmp-0-ab12cd34", "damaged", "old"]  # By path.
  with pytest.raises(errors.UserError, match=r"^no feature cache named curent under "):
    caches.chosen_for_removal(folders, ["current", "curent"], True, NOW, data_dir)
  for folder in caches.chosen_for_removal(folders, [], True, NOW, data_dir):
    feature_cache.remove_cache(folder)
  assert names(feature_cache.find_caches(data_dir)) == ["current", "current.tmp-0-ef56ab78"]


def test_nothing_outside_a_feature_cache_folder_is_removed(tmp_path):
  folder = feature_cache.CacheFolder(str(tmp_path), 0, NOW, None, None)
  with pytest.raises(feature_cache.FeatureCacheError, match="is not in a feature_cache folder"):
    feature_cache.remove_cache(folder)
  assert tmp_path.exists()


def test_the_listing_says_what_each_cache_holds(data_dir):
  rows = caches.listing_rows(feature_cache.find_caches(data_dir), data_dir, NOW)
  [current] = [row for row in rows if row["name"] == "current"]
  assert current["dataset"] == os.path.join("ciplab", "dir_1", "1.0.0")
  assert current["images x features"] == "5x4" and current["stale"] == ""
  assert current["settings"] == ("224 px, CooccurrenceClassifier, regions 1.0+0.5, "
                                 "re-saved scale 0.35-0.85 q60-95")
