"""Data mixtures: several datasets in one run, each with its own splits, sampled by weight.

`config.data.mixture` names the sources (empty: the one dataset `config.data.name`):

  config.data.mixture.faces140k = dict(name="real_vs_fake_140k", manual_dir=..., weight=1.0)
  config.data.mixture.ciplab = dict(name="ciplab", manual_dir=..., weight=0.5,
                                    test_fraction=0.2)

Each source is the run's `config.data` with the source's fields put over it (any data
key: `validation_fraction`, `fake_difficulties`, ...; `weight` is the mixture's own), so
each keeps its own splits, holdouts and subsets exactly as a run on it alone would.
A role's images are then every source's, one after the other (`MixedSplit`): validation
and test see each image once and report per source (`sources`) and for the mixture.
Training draws each position of an epoch's order from the sources by weight, and
within a source walks through fresh permutations of it (`MixedSplit.epoch_order`):
a function of (seed, epoch) only, so a resumed run draws what an uninterrupted one
would have. An epoch is as many images as all sources' training images together.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np


MIXTURE_ONLY_KEYS = ("weight",)


def source_names(data_config: Any) -> list[str]:
  """The mixture's sources, in config order; empty for a single dataset."""
  mixture = data_config.get("mixture")
  return list(mixture.keys()) if mixture else []


def unknown_keys(data_config: Any, name: str) -> list[str]:
  """Keys of source `name` that are neither config.data keys nor MIXTURE_ONLY_KEYS."""
  return [key for key in data_config.mixture[name]
          if key not in MIXTURE_ONLY_KEYS and key not in data_config]


def source_config(config: Any, name: str) -> ml_collections.ConfigDict:
  """The run's config as a run on source `name` alone would have it."""
  single = config.copy_and_resolve_references()
  source = single.data.mixture[name]
  with single.unlocked():
    del single.data["mixture"]
    for key, value in source.items():
      if key in MIXTURE_ONLY_KEYS:
        continue
      if isinstance(single.data[key], ml_collections.ConfigDict):
        single.data[key].update(value)  # Nested (data.synthetic): only the keys given.
      else:
        single.data[key] = value
  return single


def raw_weights(data_config: Any) -> np.ndarray:
  return np.array([float(data_config.mixture[name].get("weight", 1.0))
                   for name in source_names(data_config)])


def weights(data_config: Any) -> np.ndarray:
  """Each source's sampling weight, normalised to sum to 1 (config_checks checks them)."""
  raw = raw_weights(data_config)
  return raw / raw.sum()


def gather_batches(size: int, pieces) -> tuple[np.ndarray, np.ndarray | None]:
  """One batch of `size` from (where, (images, tables)) pieces of several splits' batches:
  each piece's rows go to positions `where`; tables are zero where a piece has none."""
  images, tables = None, None
  for where, (part_images, part_tables) in pieces:
    if images is None:
      images = np.empty((size, *part_images.shape[1:]), part_images.dtype)
    images[where] = part_images
    if part_tables is not None:
      if tables is None:
        tables = np.zeros((size, *part_tables.shape[1:]), part_tables.dtype)
      tables[where] = part_tables
  return images, tables


@dataclasses.dataclass(frozen=True)
class MixedSplit:
  """Several sources' splits of one role, end to end, batched like one split.

  Position p belongs to source `np.searchsorted(offsets, p, "right") - 1`; `sources`
  names each position's source, `weights` are the training draw's probabilities. The
  concatenated per-position arrays are built once (the batchers read `labels` and the
  length every step).
  """
  parts: Sequence[Any]
  names: Sequence[str]
  weights: np.ndarray

  @functools.cached_property
  def offsets(self) -> np.ndarray:
    return np.cumsum([0] + [len(part) for part in self.parts])

  def __len__(self) -> int:
    return int(self.offsets[-1])

  @property
  def image_shape(self) -> tuple[int, ...]:
    return self.parts[0].image_shape

  def _concat(self, field: str) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(part, field)) for part in self.parts])

  @functools.cached_property
  def labels(self) -> np.ndarray:
    return self._concat("labels")

  @functools.cached_property
  def paths(self) -> np.ndarray:
    return np.concatenate([np.char.add(f"{name}:", np.asarray(part.paths, str))
                           for name, part in zip(self.names, self.parts)])

  @functools.cached_property
  def difficulty(self) -> np.ndarray:
    return self._concat("difficulty")

  @functools.cached_property
  def source_indices(self) -> np.ndarray:
    """Each position's source as its index in `names` (int32, as a batch holds it)."""
    return np.repeat(np.arange(len(self.parts), dtype=np.int32),
                     [len(part) for part in self.parts])

  @functools.cached_property
  def sources(self) -> np.ndarray:
    """Each position's source by name."""
    return np.asarray(self.names)[self.source_indices]

  def _by_part(self, positions: np.ndarray):
    """(part index, where in `positions`, positions within the part) per part used."""
    positions = np.asarray(positions)
    owner = np.searchsorted(self.offsets, positions, side="right") - 1
    for k in np.unique(owner):
      where = np.flatnonzero(owner == k)
      yield k, where, positions[where] - self.offsets[k]

  def take_batch(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (or the parts' cached features, in their dtype) and JPEG tables."""
    return gather_batches(len(positions), [
        (where, self.parts[k].take_batch(local))
        for k, where, local in self._by_part(positions)])

  def take(self, positions: np.ndarray) -> np.ndarray:
    return self.take_batch(positions)[0]

  def take_formats(self, positions: np.ndarray) -> list[Any] | None:
    formats: list[Any] = [None] * len(positions)
    for k, where, local in self._by_part(positions):
      part_formats = self.parts[k].take_formats(local)
      if part_formats is None:
        return None
      for i, image_format in zip(where, part_formats):
        formats[i] = image_format
    return formats

  def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
    """len(self) positions: each from a source drawn by weight, and within the source
    the next of its seeded permutations (a new one each time it runs out)."""
    rng = np.random.default_rng([seed, epoch])
    chosen = rng.choice(len(self.parts), size=len(self), p=self.weights)
    order = np.empty(len(self), np.int64)
    for k, part in enumerate(self.parts):
      where = np.flatnonzero(chosen == k)
      cycles = -(-len(where) // max(len(part), 1))
      walk = np.concatenate([rng.permutation(len(part)) for _ in range(cycles)] or [[]])
      order[where] = walk[:len(where)] + self.offsets[k]
    return order


def threshold_groups(split: Any) -> dict[str, np.ndarray]:
  """`metrics.best_threshold`'s groups for a split: a mixture's sources, weighted as the
  training draw weighs them, so the largest validation part does not choose every
  source's threshold alone (on configs/general.py's, lfw_faceswap's 954 of 1,225
  images did). A single dataset's split has none."""
  if not isinstance(split, MixedSplit):
    return {}
  return {"groups": split.source_indices, "group_weights": split.weights}


def weighted_accuracy(split: MixedSplit, per_source: dict[str, dict[str, float]]) -> float:
  """The mean of a mixture's sources' accuracies (`metrics.per_source_metrics`), weighted
  as the draw weighs the sources: what its best checkpoint is chosen by, for the reason
  `threshold_groups` gives."""
  return float(np.dot(split.weights, [per_source[name]["accuracy"] for name in split.names]))
