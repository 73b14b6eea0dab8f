"""Which examples play train, validation and test: filters, subsets, holdouts and folds.

`select_examples` reads each split's record metadata (label, path, difficulty; no image
is decoded) where a choice needs it, then applies, in order: the difficulty filter and
the per-class cap on the pool (`config.data.fake_difficulties`, `examples_per_class`);
a stratified test holdout or fold for datasets without evaluation splits; the
validation carve-out (`validation_fraction`); and the per-role caps
(`train_examples_per_class`, `eval_examples_per_class`). Every step is seeded by
`config.data.split_seed`, so a run, its resume and its evaluation select alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from fakeface_jax import classes
from fakeface_jax.data import datasets
from fakeface_jax.data import folders
from fakeface_jax import errors

EVALUATION_ROLES = ("validation", "test")


def record_fields(record) -> tuple[int, str, str]:
  """A record's label, path and difficulty (records of synthetic data have no difficulty)."""
  def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
  return (int(record["label"]), text(record.get("path", "")),
          text(record.get("difficulty", folders.NO_DIFFICULTY)))


def metadata_arrays(fields: Sequence[tuple[int, str, str]]) -> dict[str, np.ndarray]:
  labels, paths, difficulty = zip(*fields) if fields else ((), (), ())
  return {"label": np.array(labels, np.int32), "path": np.array(paths, str),
          "difficulty": np.array(difficulty, str)}


def read_metadata(source, indices: Sequence[int] | None = None) -> dict[str, np.ndarray]:
  """Label, path and difficulty of records (all, or `indices`), without decoding images."""
  indices = range(len(source)) if indices is None else indices
  return metadata_arrays([record_fields(source[int(i)]) for i in indices])


def stratified_holdout(strata: np.ndarray, fraction: float, seed: int,
                       num_folds: int = 0, fold: int = 0) -> np.ndarray:
  """Boolean mask of held-out positions, stratified by `strata` (e.g. label x difficulty).

  With `num_folds` > 1, position i of each stratum's seeded permutation goes to fold
  i % num_folds and fold `fold` is held out (k-fold cross-validation); otherwise the
  first round(fraction * n) of each stratum's permutation are.
  """
  rng = np.random.default_rng(seed)
  held_out = np.zeros(len(strata), bool)
  for stratum in np.unique(strata):
    members = rng.permutation(np.flatnonzero(strata == stratum))
    if num_folds > 1:
      held_out[members[fold::num_folds]] = True
    else:
      held_out[members[:int(round(fraction * len(members)))]] = True
  return held_out


def balanced_subset(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
  """Sorted positions of at most `per_class` examples of each class, chosen by `seed`."""
  if per_class is None:
    return np.arange(len(labels))
  rng = np.random.default_rng(seed)
  chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class]
            for c in np.unique(labels)]
  for c, picked in zip(np.unique(labels), chosen):
    if len(picked) < per_class:
      logging.warning("Asked for %d examples of class %s; the data hold only %d.",
                      per_class, classes.NAMES[c], len(picked))
  return np.sort(np.concatenate(chosen))


@dataclasses.dataclass(frozen=True)
class Selection:
  """Records of one split chosen for a role, and that split's metadata if it was read."""
  split: str
  indices: np.ndarray  # Record indices into the split, in order.
  meta: dict[str, np.ndarray] | None = None  # Indexed by record index, not position.

  def keep(self, positions: np.ndarray) -> Selection:
    return dataclasses.replace(self, indices=self.indices[positions])

  def strata(self) -> np.ndarray:
    """Label x difficulty of each selected record: what holdouts stratify by."""
    labels, difficulty = self.meta["label"][self.indices], self.meta["difficulty"][self.indices]
    return np.char.add(labels.astype(str), difficulty)

  def labels(self, source) -> np.ndarray:
    if self.meta is not None:
      return self.meta["label"][self.indices]
    return read_metadata(source, self.indices)["label"]


def _keep_difficulties(meta: dict[str, np.ndarray], keep: str | None) -> np.ndarray:
  """Record indices to keep: all real images and the fakes of the listed difficulties."""
  if not keep:
    return np.arange(len(meta["label"]))
  wanted = [d.strip() for d in keep.split(",")]
  unknown = set(wanted) - set(folders.DIFFICULTIES)
  if unknown:
    raise errors.ConfigError(
        f"config.data.fake_difficulties has unknown {sorted(unknown)}; use a comma-separated "
        f"subset of {', '.join(folders.DIFFICULTIES)}")
  return np.flatnonzero((meta["label"] == classes.REAL) | np.isin(meta["difficulty"], wanted))


def _pools(data_config: Any, splits: dict[str, str], sources: dict[str, Any],
           needs_metadata: bool) -> dict[str, Selection]:
  """Each role's pool: its split's records after the difficulty filter and per-class cap."""
  pools = {}
  for role, split in splits.items():
    if not (needs_metadata or data_config.examples_per_class is not None):
      pools[role] = Selection(split, np.arange(len(sources[split])))
      continue
    meta = read_metadata(sources[split])
    keep = _keep_difficulties(meta, data_config.fake_difficulties)
    keep = keep[balanced_subset(meta["label"][keep], data_config.examples_per_class,
                                data_config.split_seed)]
    pools[role] = Selection(split, keep, meta)
  return pools


def _split_off(pool: Selection, fraction: float, seed: int, num_folds: int = 0,
               fold: int = 0) -> tuple[Selection, Selection]:
  """(kept, held out) parts of a pool, stratified by label and difficulty."""
  held_out = stratified_holdout(pool.strata(), fraction, seed, num_folds, fold)
  return pool.keep(~held_out), pool.keep(held_out)


def _warn_one_split_plays_both_roles(role: str) -> None:
  other = ({"validation", "test"} - {role}).pop()
  logging.warning(
      "The %s split is also the %s split: the best checkpoint and the decision threshold "
      "are chosen on the images reported. Set config.data.validation_fraction (e.g. 0.1) "
      "to hold out part of the training split for validation instead.", role, other)


def _cap_per_role(selected: dict[str, Selection], data_config: Any,
                  sources: dict[str, Any]) -> dict[str, Selection]:
  """At most train_examples_per_class (train) or eval_examples_per_class (the others)."""
  capped = {}
  for role, chosen in selected.items():
    per_class = (data_config.train_examples_per_class if role == "train"
                 else data_config.eval_examples_per_class)
    if per_class is not None:
      chosen = chosen.keep(balanced_subset(chosen.labels(sources[chosen.split]), per_class,
                                           data_config.split_seed))
    capped[role] = chosen
  return capped


def select_examples(config: Any, builder) -> dict[str, tuple[str, np.ndarray]]:
  """Role -> (split name, record indices) after difficulty filters, holdout and subsets.

  A dataset with neither a validation nor a test split (ciplab, a flat image folder)
  gets a stratified holdout of its training split (config.data.test_fraction, or fold
  config.data.fold of config.data.num_folds) as test. Where only one of validation and
  test exists then (ciplab, the 140k subset), a stratified
  config.data.validation_fraction of the training split (or fold
  config.data.validation_fold of config.data.validation_folds) becomes the validation
  split and the existing one the test split; with 0, it plays both roles, so the best
  checkpoint and the decision threshold are chosen on the very images reported (a
  warning says so).
  """
  data_config = config.data
  splits = datasets.role_splits(builder)
  if "train" not in splits:
    raise errors.ConfigError(
        f"dataset {data_config.name!r} has no training split (found: "
        f"{', '.join(builder.info.splits.keys()) or 'none'})")
  sources = {split: datasets.data_source(builder, split) for split in splits.values()}
  hold_out_test = not set(EVALUATION_ROLES) & set(splits) and (
      data_config.test_fraction > 0 or data_config.num_folds > 1)
  evaluation_roles = set(EVALUATION_ROLES) & (set(splits) | ({"test"} if hold_out_test
                                                             else set()))
  # Runs saved before validation_fraction existed validated on their test split.
  validation_fraction = data_config.get("validation_fraction", 0.0)
  validation_folds = data_config.get("validation_folds", 0)
  carve_validation = len(evaluation_roles) == 1 and (validation_fraction > 0
                                                     or validation_folds > 1)
  selected = _pools(data_config, splits, sources, needs_metadata=bool(
      data_config.fake_difficulties) or hold_out_test or carve_validation)

  if hold_out_test:
    selected["train"], selected["test"] = _split_off(
        selected["train"], data_config.test_fraction, data_config.split_seed,
        data_config.num_folds, data_config.fold)
  if carve_validation:
    selected.setdefault("test", selected.get("validation"))
    selected["train"], selected["validation"] = _split_off(
        selected["train"], validation_fraction, data_config.split_seed, validation_folds,
        data_config.get("validation_fold", 0))
  elif len(evaluation_roles) == 1:
    _warn_one_split_plays_both_roles(*evaluation_roles)
  selected.setdefault("validation", selected.get("test", selected["train"]))
  selected.setdefault("test", selected["validation"])
  return {role: (chosen.split, chosen.indices)
          for role, chosen in _cap_per_role(selected, data_config, sources).items()}
