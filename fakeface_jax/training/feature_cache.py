"""Features computed once: a model with fixed features trains its head on a cache.

The detector's features (co-occurrence histograms, DCT residuals, a power spectrum) have
no parameters, so without augmentation every epoch would compute the same features of
the same images again, at nearly all of a step's cost. With `config.features_cache=auto`
(the default) such a run computes each selected image's features once, in compiled
batches sharded over every device of every process (each process decodes and computes
its slice of each batch), and trains and evaluates the head on them.

The cache lives beside the prepared data, in `<prepared data>/feature_cache/<key>/`
(`features.npy`, a row for every image any role selects, in the sorted order of their
paths, and `key.json` saying what the key covers), so later runs and other workdirs on
the same data reuse it. The key hashes the prepared dataset (its folder and
`dataset_info.json`), the set of files the roles select and how they are re-saved
(config.data.resave), the image size and color, the model's feature settings and
FEATURES_VERSION: changing any of them makes a new key.
Which role each file plays is not in it, so runs that split the same images otherwise
(the folds of `--folds K`, another validation fraction) share one cache. Arrays are
memory-mapped, so a cache larger than memory streams from disk.
A cache folder only ever appears by renaming a complete one into place, so a run that
stops while writing leaves a temporary folder that no run reads. No run deletes a
cache; `find_caches` lists them for `fakeface-caches`, which removes stale ones.

Augmentations change the images from step to step, and so their features: a run with
any of them computes features in every step, and says why. Host degradations are
drawn per (seed, epoch, step), so a cache per draw would cost a feature pass per epoch:
no saving, so they are not cached either.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fakeface_jax import config_checks
from fakeface_jax.data import datasets
from fakeface_jax.data import degradations
from fakeface_jax.data import face_crop
from fakeface_jax.data import faces
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax.data import preprocessing
from fakeface_jax.data import pseudo_fake_files
from fakeface_jax import errors
from fakeface_jax import progress
from fakeface_jax.models import base
from fakeface_jax.training import sharding

CACHE_DIR = "feature_cache"
KEY_JSON = "key.json"
FEATURES_FILE = "features.npy"
# Raise it whenever a model's feature code changes what it computes: caches written by
# the old code then no longer match any key.
FEATURES_VERSION = 3  # 2: JPEG features read each image's own tables; 3: row order.
# What a pass that stopped leaves: `<cache folder>.tmp-<process>-<random>`.
TMP_MARK = ".tmp-"
# A temporary folder untouched this long belongs to no live pass (a pass writes rows
# every few seconds and logs at least every progress.LOG_INTERVAL_S).
ABANDONED_AFTER_S = 3600.0


class FeatureCacheError(errors.UserError, OSError):
  """The feature cache cannot be written, or a cache folder cannot be read as its key
  says."""


@dataclasses.dataclass(frozen=True)
class FeatureSplit:
  """A role's cached features: `features` (the cache's rows, of every role) at `rows`,
  in the role's order, with its labels, paths and difficulty groups: batched like an
  image split, `take` returning features. The images they were computed from (`images`,
  a split) still say what each file was."""
  features: np.ndarray
  rows: np.ndarray
  labels: np.ndarray
  paths: np.ndarray
  difficulty: np.ndarray
  images: Any

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def image_shape(self) -> tuple[int, ...]:
    return self.features.shape[1:]

  def take(self, positions: np.ndarray) -> np.ndarray:
    return np.asarray(self.features[self.rows[positions]])

  def take_batch(self, positions: np.ndarray) -> tuple[np.ndarray, None]:
    # No tables: the features were computed with them.
    return self.take(positions), None

  def take_formats(self, positions: np.ndarray) -> list[Any] | None:
    return self.images.take_formats(positions)


def why_per_step(config: Any, model: base.Detector) -> str | None:
  """Why this run must compute features in every step, or None if it can cache them."""
  if not model.fixed_features:
    return f"model {config.model.name!r} learns its features"
  if config.features_cache == "off":
    return "config.features_cache=off"
  changing = [f"augment.device.{name}"
              for name in preprocessing.active_augmentations(**config.augment.device)]
  changing += [f"augment.host.{name}" for name in config_checks.HOST_DEGRADATIONS
               if config.augment.host[name] > 0]
  if changing:
    return f"{', '.join(changing)} change the images from step to step"
  return None


def cache_key(config: Any, model: base.Detector, data: dict[str, Any]) -> dict[str, Any]:
  """What a cache of this run's features depends on (hashed into its folder's name)."""
  prepared = datasets.prepared_dir(config.data)
  with open(os.path.join(prepared, "dataset_info.json"), "rb") as f:
    dataset_info = hashlib.sha256(f.read()).hexdigest()
  files = hashlib.sha256("\n".join(cached_paths(data)).encode()).hexdigest()
  resave = degradations.FileResave.from_config(config.data.resave)
  face = face_crop.settings_of(config.data)
  pseudo_fakes = pseudo_fake_files.settings_of(config.data)
  return {"prepared_dir": prepared, "dataset_info_sha256": dataset_info,
          "files_sha256": files, "image_size": config.data.image_size,
          "native_crop": config.data.native_crop,
          "grayscale": config.data.grayscale, "features": model.feature_settings(),
          "features_version": FEATURES_VERSION,
          # Only where files are re-saved, so the keys of runs on the files as they are
          # stay what they were.
          **({"resave": dataclasses.asdict(resave)} if resave else {}),
          **({"face_crop": {"margin": face.margin, "detector": faces.settings_key()}}
             if face else {}),
          **({"pseudo_fakes": {**pseudo_fakes.to_json(),
                               "version": pseudo_fake_files.VERSION}}
             if pseudo_fakes else {})}


def cached_paths(data: dict[str, Any]) -> np.ndarray:
  """The files a cache of `data` holds a row for, in row order: every role's, sorted,
  each once (a prepared dataset's paths name its files, split folder included)."""
  return np.unique(np.concatenate([np.asarray(split.paths, str) for split in data.values()]))


def _rows_of(paths: np.ndarray, split: Any) -> np.ndarray:
  """The cache row of each of `split`'s images, in its order."""
  return np.searchsorted(paths, np.asarray(split.paths, str))


@dataclasses.dataclass(frozen=True)
class _CacheRows:
  """The cache's rows as one split, batched like a split: row r is image `positions[r]`
  of `splits[owners[r]]`. The features are computed in row order, so every run that
  writes a cache computes the same batches, and the same features to the last bit,
  whichever roles it splits the files into."""
  splits: list[Any]
  owners: np.ndarray
  positions: np.ndarray

  def __len__(self) -> int:
    return len(self.positions)

  @property
  def image_shape(self) -> tuple[int, ...]:
    return self.splits[0].image_shape

  @property
  def labels(self) -> np.ndarray:
    return np.zeros(len(self), np.int32)  # Features do not read them.

  def take_batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    owners = self.owners[rows]
    pieces = []
    for k in np.unique(owners):
      where = np.flatnonzero(owners == k)
      pieces.append((where, self.splits[k].take_batch(self.positions[rows[where]])))
    return mixture.gather_batches(len(rows), pieces)


def _cache_rows(data: dict[str, Any], paths: np.ndarray) -> _CacheRows:
  """Each cache row's image: the first role holding its file."""
  splits = list(data.values())
  owners = np.full(len(paths), -1)
  positions = np.zeros(len(paths), np.int64)
  for k, split in reversed(list(enumerate(splits))):
    rows = _rows_of(paths, split)
    owners[rows], positions[rows] = k, np.arange(len(split))
  return _CacheRows(splits, owners, positions)


def cache_dir(key: dict[str, Any]) -> str:
  digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode())
  return os.path.join(key["prepared_dir"], CACHE_DIR, digest.hexdigest()[:24])


@functools.partial(jax.jit, static_argnums=0)
def _features(model: base.Detector, images: jax.Array,
              jpeg_tables: jax.Array | None) -> jax.Array:
  """uint8 images and their JPEG tables -> features; compiled once per model and batch
  shape, so every role (and the last, padded batch) reuses it."""
  return model.apply({}, preprocessing.rescale(images), **model.table_inputs(jpeg_tables),
                     method="features")


def feature_size(model: base.Detector, image_shape: tuple[int, ...]) -> int:
  """How many features `model` computes of an image of `image_shape`."""
  return jax.eval_shape(functools.partial(_features, model),
                        jax.ShapeDtypeStruct((1, *image_shape), np.uint8), None).shape[-1]


def compute_features(model: base.Detector, split: Any,
                     batch_size: int) -> Iterator[np.ndarray]:
  """The features of every image of `split`, in order, a batch of rows at a time.

  Each process decodes and computes its slice of each batch; every process then holds
  the whole batch, so each host can write the cache whatever its filesystem.
  """
  data_sharding = NamedSharding(sharding.make_mesh(), P("data"))
  start, shown = 0, progress.Progress("Features", len(split))
  for batch in input_pipeline.eval_batches(split, batch_size,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count()):
    inputs = sharding.to_global({k: v for k, v in batch.items()
                                 if k in ("image", "jpeg_tables")}, data_sharding)
    rows = sharding.gather(_features(model, inputs["image"], inputs.get("jpeg_tables"))
                           )[:len(split) - start]
    yield rows
    start += len(rows)
    shown.update(start)


def _all_processes(flag: bool) -> bool:
  """Whether `flag` holds in every process: they must agree on computing, which is
  collective."""
  if jax.process_count() == 1:
    return flag
  return bool(np.all(sharding.gather(np.array([flag], np.int32))))


def _read(directory: str, data: dict[str, Any]) -> dict[str, FeatureSplit]:
  """Memory-maps the cache's features, each role at its rows; a mismatch raises."""
  path = os.path.join(directory, FEATURES_FILE)
  paths = cached_paths(data)
  try:
    features = np.load(path, mmap_mode="r")
  except (OSError, ValueError) as e:
    raise FeatureCacheError(f"feature cache {directory} is damaged ({e}); delete it "
                            "to compute the features again") from e
  if features.ndim != 2 or len(features) != len(paths):
    raise FeatureCacheError(
        f"feature cache {directory} holds {features.shape} features for {len(paths)} "
        "images; delete it to compute the features again")
  return {role: FeatureSplit(features, _rows_of(paths, split), split.labels, split.paths,
                             split.difficulty, split)
          for role, split in data.items()}


def _write(directory: str, key: dict[str, Any], model: base.Detector,
           data: dict[str, Any], batch_size: int) -> None:
  """Computes the features of every role's images, each image once and in the cache's
  row order, into a temporary folder, then renames it into place: complete, or not
  there at all. Rows go to a memory-mapped file batch by batch: nothing holds them all
  in memory."""
  tmp = f"{directory}{TMP_MARK}{jax.process_index()}-{uuid.uuid4().hex[:8]}"
  try:
    os.makedirs(tmp)
  except OSError as e:
    raise FeatureCacheError(f"cannot write the feature cache beside the prepared data "
                            f"({e}); make it writable or set config.features_cache=off"
                            ) from e
  paths = cached_paths(data)
  image_shape = next(iter(data.values())).image_shape
  out = np.lib.format.open_memmap(os.path.join(tmp, FEATURES_FILE), mode="w+",
                                  dtype=np.float32,
                                  shape=(len(paths), feature_size(model, image_shape)))
  start, written = time.perf_counter(), 0
  for block in compute_features(model, _cache_rows(data, paths), batch_size):
    out[written:written + len(block)] = block
    written += len(block)
  logging.info("Features of %d images (%s) computed in %.1fs.", len(paths),
               ", ".join(f"{len(split)} {role}" for role, split in data.items()),
               time.perf_counter() - start)
  out.flush()
  del out
  with open(os.path.join(tmp, KEY_JSON), "w", encoding="utf-8") as f:
    json.dump(key, f, indent=2, default=list)
  try:
    os.rename(tmp, directory)
  except OSError:  # Another process of the run, or another run, renamed its own first.
    shutil.rmtree(tmp)


def holds_features(split: Any) -> bool:
  """Whether batches of `split` hold cached features (a data mixture's: each source's)."""
  parts = split.parts if isinstance(split, mixture.MixedSplit) else [split]
  return all(isinstance(part, FeatureSplit) for part in parts)


def load_or_compute(config: Any, model: base.Detector,
                    data: dict[str, Any]) -> dict[str, Any]:
  """Each role's features: from the cache for this data and model, or computed and
  cached first. A data mixture's sources are cached one by one, each as a run on it
  alone would cache it, so runs on any mixture of them share the caches."""
  names = mixture.source_names(config.data)
  if names:
    per_source = [load_or_compute(mixture.source_config(config, name), model,
                                  {role: split.parts[k] for role, split in data.items()})
                  for k, name in enumerate(names)]
    return {role: mixture.MixedSplit([features[role] for features in per_source],
                                      split.names, split.weights)
            for role, split in data.items()}
  key = cache_key(config, model, data)
  directory = cache_dir(key)
  if _all_processes(os.path.isdir(directory)):
    logging.info("Features computed once: reading the cache %s.", directory)
    _mark_used(directory)
  else:
    logging.info("Features computed once: computing them into %s.", directory)
    _write(directory, key, model, data, config.eval_batch_size)
  return _read(directory, data)


def _mark_used(directory: str) -> None:
  """Stamps the cache's key with the time of this read, so `find_caches` can say when
  each cache was last used (file systems seldom keep access times)."""
  try:
    os.utime(os.path.join(directory, KEY_JSON))
  except OSError:  # A read-only cache still serves; it just keeps its old stamp.
    pass


@dataclasses.dataclass(frozen=True)
class CacheFolder:
  """A folder under a prepared dataset's feature caches, complete or left by a pass
  that stopped (`key` None), with its size and when it was last written or read."""
  path: str
  size_bytes: int
  last_used: float
  key: dict[str, Any] | None
  shape: tuple[int, ...] | None

  def why_stale(self, now: float) -> str | None:
    """Why no run will read this folder again, or None if one may."""
    if TMP_MARK in os.path.basename(self.path):
      if now - self.last_used < ABANDONED_AFTER_S:
        return None  # A pass may still be writing it.
      return "left by a feature pass that stopped"
    if self.key is None or self.shape is None:
      return "damaged: no readable key.json or features.npy"
    if self.key.get("features_version") != FEATURES_VERSION:
      return (f"written by older feature code (version {self.key.get('features_version')}, "
              f"now {FEATURES_VERSION})")
    return None


def _folder_size(path: str) -> tuple[int, float]:
  """Bytes under `path` and the newest modification time among it and its files."""
  size, newest = 0, os.stat(path).st_mtime
  for root, _, files in os.walk(path):
    for name in files:
      info = os.stat(os.path.join(root, name))
      size, newest = size + info.st_size, max(newest, info.st_mtime)
  return size, newest


def _read_folder(path: str) -> CacheFolder:
  size, last_used = _folder_size(path)
  key, shape = None, None
  try:
    with open(os.path.join(path, KEY_JSON), encoding="utf-8") as f:
      key = json.load(f)
    shape = tuple(np.load(os.path.join(path, FEATURES_FILE), mmap_mode="r").shape)
  except (OSError, ValueError):
    pass  # `why_stale` says the folder is damaged.
  return CacheFolder(path, size, last_used, key if isinstance(key, dict) else None, shape)


def find_caches(data_dir: str) -> list[CacheFolder]:
  """Every feature cache folder of the datasets prepared under `data_dir` (TFDS's
  <data_dir>/<dataset>/[<config>/]<version>/), by path."""
  root = glob.escape(os.path.expanduser(data_dir))
  paths = [path for levels in (("*", "*"), ("*", "*", "*"))
           for path in glob.glob(os.path.join(root, *levels, CACHE_DIR, "*"))]
  return [_read_folder(path) for path in sorted(paths) if os.path.isdir(path)]


def remove_cache(folder: CacheFolder) -> None:
  """Deletes a folder `find_caches` found (and nothing outside a feature cache)."""
  if os.path.basename(os.path.dirname(folder.path)) != CACHE_DIR:
    raise FeatureCacheError(f"{folder.path} is not in a {CACHE_DIR} folder; not removed")
  shutil.rmtree(folder.path)
