"""Orbax checkpoints of the train state, with progress metadata and the run's config.

Checkpoints are numbered by global train step. Each holds the `TrainState` and a small
JSON item saying where in training it was taken (epochs done, steps into the next
epoch, that epoch's running metric sums); the latest `max_to_keep` and the best by
validation accuracy are kept. The config is written beside them (`config.json`) so a
run directory says what produced it and `predict` can rebuild the preprocessing.

Orbax saves atomically (a temporary directory renamed on commit), but it trusts every
directory named like a step: an empty, half-written or damaged one becomes the latest
step, and one whose metrics do not parse breaks the manager as soon as it is built.
So every step is checked first (`step_damage`: each file Orbax needs parses or reads
back) before any manager sees the directory. Training moves damaged steps, and saves
that never committed, into `checkpoints_corrupt/` with a warning naming each and what
is wrong; inference (`usable_steps`) only skips them with the warning, since it may
not own the run directory. `restore_latest` still tries steps newest first, each with
a fresh manager, for damage that only a restore finds.

Orbax renames without flushing to disk, so a power loss soon after a save could leave
a committed step of empty files; `_DurableAtomicRename` flushes the files before the
rename and the rename before a save counts as finished.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging as std_logging
import os
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
import tensorstore as ts
from absl import logging
from orbax.checkpoint import checkpoint_managers

from fakeface_jax import errors
from fakeface_jax import rundir

# What the best checkpoint is chosen by: validation accuracy (a data mixture's sources'
# accuracies averaged with the draw's weights, `mixture.weighted_accuracy`).
BEST_METRIC = "val_accuracy"
# What Orbax 0.12 names a step's directory until the save commits, and the file it
# writes (into the step and each item) just before committing, with this text.
TMP_SUFFIX = ".orbax-checkpoint-tmp"
COMMIT_FILE = "commit_success.txt"
COMMIT_TEXT = "Checkpoint commit was successful to "
METRICS_FILE = os.path.join("metrics", "metrics")


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where training stood at a checkpoint; saved as the checkpoint's JSON `meta` item.

  `epoch` epochs are trained and validated, and `step_in_epoch` steps of the next one
  are trained, with `totals` its running metric sums (None at an epoch's start). A
  stop after an epoch's last step, or during its validation, saves `step_in_epoch`
  equal to the steps of an epoch: that epoch is trained but still to be validated.
  """
  epoch: int = 0
  step_in_epoch: int = 0
  totals: dict[str, float] | None = None

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, meta: dict[str, Any]) -> Progress:
    return cls(**{key: meta[key] for key in META_KEYS})


META_KEYS = frozenset(field.name for field in dataclasses.fields(Progress))


class CheckpointError(errors.UserError, RuntimeError):
  """A run's checkpoints or config cannot be used; the one-line message says what to do."""


class _Damaged(Exception):
  """What is wrong with one file of a step, for the warning."""


def one_line(error: Exception, limit: int = 200) -> str:
  return " ".join(str(error).split())[:limit] or type(error).__name__


def _read_text(step_dir: str, relative: str) -> str:
  try:
    with open(os.path.join(step_dir, relative), encoding="utf-8") as f:
      return f.read()
  except FileNotFoundError as e:
    raise _Damaged(f"{relative} is missing") from e
  except (OSError, ValueError) as e:  # ValueError: not UTF-8.
    raise _Damaged(f"{relative} is unreadable: {one_line(e, 80)}") from e


def _read_json(step_dir: str, relative: str) -> Any:
  text = _read_text(step_dir, relative)
  try:
    return json.loads(text)
  except ValueError as e:
    raise _Damaged(f"{relative} is unreadable: {one_line(e, 80)}") from e


def _check_commit_file(step_dir: str, item: str) -> None:
  """Orbax writes the commit file whole, naming the directory it commits."""
  relative = os.path.join(item, COMMIT_FILE) if item else COMMIT_FILE
  text = _read_text(step_dir, relative)
  committed = item or os.path.basename(step_dir)
  if not (text.startswith(COMMIT_TEXT) and text.endswith("/" + committed)):
    raise _Damaged(f"{relative} is incomplete")


def _check_arrays(step_dir: str) -> None:
  """Reads back every key and value of the state's OCDBT database (index and arrays).

  Sequential reads, so a damaged file raises one clear error rather than the burst
  of event-loop tracebacks that Orbax's parallel metadata read prints.
  """
  state_dir = os.path.join(step_dir, "state")
  if not os.path.exists(os.path.join(state_dir, "manifest.ocdbt")):
    raise _Damaged("state/manifest.ocdbt is missing")
  try:
    kvstore = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{state_dir}/"}).result()
    keys = kvstore.list().result()
    for key in keys:
      kvstore.read(key).result()
  except ValueError as e:
    # The warning names the step; its path in tensorstore's message only hides the file.
    message = str(e).replace(step_dir + os.sep, "")
    raise _Damaged(f"state arrays are unreadable: {one_line(message)}") from e
  if not keys:
    raise _Damaged("state arrays are missing")


def _check_step(step_dir: str) -> None:
  if not any(files for _, _, files in os.walk(step_dir)):
    raise _Damaged("no files")
  items = _read_json(step_dir, "_CHECKPOINT_METADATA")
  items = items.get("item_handlers") if isinstance(items, dict) else None
  if not isinstance(items, dict) or not {"state", "meta"} <= items.keys():
    raise _Damaged("_CHECKPOINT_METADATA does not list the state and meta items")
  _check_commit_file(step_dir, "")
  for item in items:
    _check_commit_file(step_dir, item)
  meta = _read_json(step_dir, os.path.join("meta", "metadata"))
  if not (isinstance(meta, dict) and META_KEYS <= meta.keys()):
    raise _Damaged("meta/metadata is not a progress record")
  if "metrics" in items and _metric(_read_json(step_dir, METRICS_FILE)) is None:
    raise _Damaged(f"{METRICS_FILE} has no {BEST_METRIC}")
  _read_json(step_dir, os.path.join("state", "_METADATA"))
  # Written by Orbax but not needed to restore: checked only where present.
  array_metadatas = os.path.join("state", "array_metadatas")
  for relative in (os.path.join("state", "_sharding"),
                   *(os.path.join(array_metadatas, name)
                     for name in _listdir(os.path.join(step_dir, array_metadatas)))):
    if os.path.exists(os.path.join(step_dir, relative)):
      _read_json(step_dir, relative)
  _check_arrays(step_dir)


def _listdir(directory: str) -> list[str]:
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def step_damage(step_dir: str) -> str | None:
  """What makes a step directory unusable, or None if every file Orbax needs reads back."""
  try:
    _check_step(step_dir)
  except _Damaged as e:
    return str(e)
  return None


def find_damaged(directory: str) -> dict[str, str]:
  """Entries of a checkpoints directory that cannot be used: name -> what is wrong.

  They are the step directories that fail `step_damage` and the temporary directories
  of saves that never committed (which Orbax would otherwise silently overwrite).
  """
  damaged = {}
  for name in _listdir(directory):
    if TMP_SUFFIX in name:
      damaged[name] = "a save that never committed"
    elif name.isdigit():
      reason = step_damage(os.path.join(directory, name))
      if reason:
        damaged[name] = reason
  return damaged


def _metric(metrics: Any) -> float | None:
  value = metrics.get(BEST_METRIC) if isinstance(metrics, dict) else None
  return float(value) if isinstance(value, (int, float)) else None


def newest_progress(workdir: str) -> Progress | None:
  """The progress record of a run's newest step, read without Orbax or warnings; None
  if there is no step, or any damage (which training then sets aside, saying so)."""
  directory = os.path.join(os.path.abspath(workdir), rundir.CHECKPOINTS_DIR)
  steps = [int(name) for name in _listdir(directory) if name.isdigit()]
  if not steps or find_damaged(directory):
    return None
  return Progress.from_json(
      _read_json(os.path.join(directory, str(max(steps))), os.path.join("meta", "metadata")))


def best_step(directory: str, steps: list[int]) -> int | None:
  """The step of `steps` with the best validation accuracy, the newest on ties (as
  Orbax picks); the newest step if none was saved with metrics."""
  scored = []
  for step in steps:
    step_dir = os.path.join(directory, str(step))
    if os.path.exists(os.path.join(step_dir, METRICS_FILE)):
      metric = _metric(_read_json(step_dir, METRICS_FILE))
      if metric is not None:
        scored.append((metric, step))
  return max(scored)[1] if scored else max(steps, default=None)


def usable_steps(workdir: str) -> list[int]:
  """Steps of a run whose checkpoints read back, newest first, without writing anything.

  Each damaged one gets a warning naming it and what is wrong, and is left in place.
  """
  directory = os.path.join(os.path.abspath(workdir), rundir.CHECKPOINTS_DIR)
  damaged = find_damaged(directory)
  for name, reason in damaged.items():
    logging.warning("Skipping damaged checkpoint %s (%s).", os.path.join(directory, name),
                    reason)
  return sorted((int(name) for name in _listdir(directory)
                 if name.isdigit() and name not in damaged), reverse=True)


def _fsync(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _fsync_tree(directory: str) -> None:
  for root, _, files in os.walk(directory):
    for name in files:
      _fsync(os.path.join(root, name))
    _fsync(root)


class _DurableAtomicRename(ocp.path.atomicity.AtomicRenameTemporaryPath):
  """Orbax's commit by rename, with the data on disk before the rename and the rename
  on disk before the save counts as finished (Orbax 0.12 flushes neither)."""

  async def finalize(self) -> None:
    await asyncio.to_thread(_fsync_tree, os.fspath(self.get()))
    await super().finalize()
    # Orbax writes the commit file and the commit time after the first flush. Items of
    # a step are committed this way too, and have no step metadata file.
    final = os.fspath(self.get_final())
    for path in (os.path.join(final, COMMIT_FILE), os.path.join(final, "_CHECKPOINT_METADATA"),
                 final, os.path.dirname(final)):
      if os.path.exists(path):
        await asyncio.to_thread(_fsync, path)


def _best_metric(metrics: dict[str, float]) -> float:
  return metrics[BEST_METRIC]


class Checkpoints:
  """The checkpoints of one run directory, for training (which may move damaged ones)."""

  def __init__(self, workdir: str, *, max_to_keep: int = 2):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, rundir.CHECKPOINTS_DIR)
    self.max_to_keep = max_to_keep
    self.set_aside_steps = self._set_aside_damaged()
    self.manager = self._new_manager()

  def _set_aside_damaged(self) -> list[str]:
    """Moves damaged steps out of the manager's sight, before it reads their files."""
    damaged = find_damaged(self.directory)
    if jax.process_index() == 0:
      for name, reason in damaged.items():
        logging.warning("Skipping damaged checkpoint %s (%s); moved to %s.",
                        os.path.join(self.directory, name), reason, self._quarantine(name))
    if damaged and jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("checkpoints set aside")
    return list(damaged)

  def _new_manager(self) -> ocp.CheckpointManager:
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(n=self.max_to_keep),
        checkpoint_managers.BestN(get_metric_fn=_best_metric, n=1,
                                  keep_checkpoints_without_metrics=True),
    ])
    return ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=_best_metric, best_mode="max",
            create=True, temporary_path_class=_DurableAtomicRename),
        item_names=("state", "meta"))

  def step_dirs(self) -> list[int]:
    """Steps that have a committed-looking directory, newest first."""
    if not os.path.isdir(self.directory):
      return []
    return sorted((int(name) for name in os.listdir(self.directory) if name.isdigit()),
                  reverse=True)

  def save(self, step: int, state: Any, meta: dict[str, Any],
           metrics: dict[str, float] | None = None, *, replace: bool = False) -> None:
    """Saves `step`; with `replace`, first deletes a checkpoint already saved at `step`
    (Orbax refuses to save a step twice): a stop's checkpoint of an epoch not yet
    validated, which the epoch's own checkpoint supersedes."""
    if replace and step in self.manager.all_steps():
      self.manager.delete(step)
    self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=True)

  def best_step(self) -> int | None:
    return best_step(self.directory, self.manager.all_steps())

  def restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
    """Restores `step` into the structure, shapes and shardings of `target`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def restore_latest(self, target: Any) -> tuple[Any, dict[str, Any], int] | None:
    """The newest checkpoint that restores, skipping damaged ones; None if there are none.

    Raises CheckpointError when step directories exist but none of them restores.
    """
    tried = []
    for step in self.step_dirs():
      try:
        state, meta = self.restore(step, target)
        return state, meta, step
      except Exception as e:  # pylint: disable=broad-except
        # Orbax and tensorstore raise many types for damaged files; any of them means
        # "not this step". The message is cut to one line for the warning.
        reason = one_line(e, 300)
        moved = self._quarantine(str(step))
        logging.warning("Skipping damaged checkpoint %s (%s); moved to %s.",
                        os.path.join(self.directory, str(step)), reason, moved)
        tried.append(step)
        # After one failed restore the same manager fails on good steps too.
        self.manager.close()
        self.manager = self._new_manager()
    if tried or self.set_aside_steps:
      raise CheckpointError(
          f"no usable checkpoint in {self.directory} (damaged: "
          f"{', '.join(self.set_aside_steps + [str(s) for s in tried])}, moved to "
          f"{self.corrupt_directory}); rerun with --config.resume=false to start fresh")
    return None

  @property
  def corrupt_directory(self) -> str:
    return os.path.join(self.workdir, rundir.CORRUPT_DIR)

  def _quarantine(self, name: str) -> str:
    os.makedirs(self.corrupt_directory, exist_ok=True)
    target = os.path.join(self.corrupt_directory, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(os.path.join(self.directory, name), target)
    return target

  def set_aside(self) -> str | None:
    """Moves all checkpoints out of the way for a fresh start; returns where they went."""
    if not self.step_dirs():
      return None
    self.manager.close()
    target = f"{self.directory}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.move(self.directory, target)
    self.manager = self._new_manager()
    return target

  def wait_until_finished(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def restore_state_here(workdir: str, step: int) -> dict[str, Any]:
  """A checkpoint's state as arrays on this process's first device, without a target.

  Restoring without a target would recreate the saved shardings, which fails when the
  run was trained on other devices (two GPUs, a pod slice) than the ones here.
  """
  path = os.path.abspath(os.path.join(workdir, rundir.CHECKPOINTS_DIR, str(step), "state"))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  verbosity = logging.get_verbosity()
  # Items of a Composite checkpoint have no step metadata file; Orbax warns, harmlessly.
  logging.set_verbosity(logging.ERROR)
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      saved = checkpointer.metadata(path).item_metadata.tree
      target = jax.tree.map(
          lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
      return checkpointer.restore(path, target)
  finally:
    logging.set_verbosity(verbosity)


def quiet_orbax_logging() -> None:
  """Orbax logs every checkpoint operation at INFO: keep its warnings, drop the chatter."""
  # Records carry standard-library levels (absl's own constants are verbosities).
  logging.get_absl_handler().addFilter(
      lambda record: (record.levelno >= std_logging.WARNING
                      or f"{os.sep}orbax{os.sep}" not in record.pathname))
