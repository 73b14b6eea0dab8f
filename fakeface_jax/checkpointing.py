"""Orbax checkpoints of the train state, with progress metadata and the run's config.

Checkpoints are numbered by global train step. Each holds the `TrainState` and a small
JSON item saying where in training it was taken (epochs done, steps into the next
epoch, that epoch's running metric sums); the latest `max_to_keep` and the best by
validation accuracy are kept. The config is written beside them (`config.json`) so a
run directory says what produced it and `predict` can rebuild the preprocessing.

Orbax saves atomically (a temporary directory renamed on commit), but it trusts every
directory named like a step: an empty, half-copied or damaged one becomes the latest
step, fails to restore, and leaves the manager unusable. `restore_latest` therefore
tries steps newest first, each with a fresh manager, and moves the ones that fail
into `checkpoints_corrupt/` with a warning naming them.
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

BEST_METRIC = "val_accuracy"
CONFIG_JSON = "config.json"


CHECKPOINTS_DIR = "checkpoints"


class CheckpointError(RuntimeError):
  """Checkpoints exist but none can be restored; the message says what to do."""


def _best_metric(metrics: dict[str, float]) -> float:
  return metrics[BEST_METRIC]


class Checkpoints:
  """The checkpoints of one run directory."""

  def __init__(self, workdir: str, *, max_to_keep: int = 2):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, CHECKPOINTS_DIR)
    self.max_to_keep = max_to_keep
    self.manager = self._new_manager()

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
            create=True),
        item_names=("state", "meta"))

  def step_dirs(self) -> list[int]:
    """Steps that have a committed-looking directory, newest first."""
    if not os.path.isdir(self.directory):
      return []
    return sorted((int(name) for name in os.listdir(self.directory) if name.isdigit()),
                  reverse=True)

  def save(self, step: int, state: Any, meta: dict[str, Any],
           metrics: dict[str, float] | None = None) -> None:
    self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=True)

  def best_step(self) -> int | None:
    return self.manager.best_step()

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
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        moved = self._quarantine(step)
        logging.warning("Skipping damaged checkpoint %s (%s); moved to %s.",
                        os.path.join(self.directory, str(step)), reason, moved)
        tried.append(step)
        # After one failed restore the same manager fails on good steps too.
        self.manager.close()
        self.manager = self._new_manager()
    if tried:
      raise CheckpointError(
          f"no usable checkpoint in {self.directory} (damaged steps {tried} were moved to "
          f"{self.corrupt_directory}); rerun with --config.resume=false to start fresh")
    return None

  @property
  def corrupt_directory(self) -> str:
    return os.path.join(self.workdir, "checkpoints_corrupt")

  def _quarantine(self, step: int) -> str:
    os.makedirs(self.corrupt_directory, exist_ok=True)
    target = os.path.join(self.corrupt_directory, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(os.path.join(self.directory, str(step)), target)
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


def write_config(workdir: str, config: Any) -> None:
  """Writes the run's config as JSON into the workdir (process 0 only)."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, CONFIG_JSON), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def read_config(workdir: str) -> dict[str, Any]:
  with open(os.path.join(workdir, CONFIG_JSON)) as f:
    return json.load(f)


def restore_state_here(workdir: str, step: int) -> dict[str, Any]:
  """A checkpoint's state as arrays on this process's first device, without a target.

  Restoring without a target would recreate the saved shardings, which fails when the
  run was trained on other devices (two GPUs, a pod slice) than the ones here.
  """
  path = os.path.abspath(os.path.join(workdir, CHECKPOINTS_DIR, str(step), "state"))
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
