"""What the parts of the training loop share (`Run`), and how its processes agree to
stop."""

from __future__ import annotations

import dataclasses
from typing import Any, NoReturn

import jax
import numpy as np
from jax.sharding import NamedSharding

from fakeface_jax.data import input_pipeline
from fakeface_jax import errors
from fakeface_jax.evaluation import reporting
from fakeface_jax.training import checkpointing
from fakeface_jax.training import preemption
from fakeface_jax.training import sharding
from fakeface_jax.training import steps


class Preempted(errors.UserError, RuntimeError):
  """A stop signal arrived; a checkpoint of the current step was saved."""


@dataclasses.dataclass
class Run:
  """What the parts of the loop share: the run's config, data, steps and outputs."""
  config: Any
  workdir: str
  data: dict[str, input_pipeline.Split]
  steps_per_epoch: int
  replicated: NamedSharding
  data_sharding: NamedSharding
  augment_key: jax.Array
  compiled_train: Any
  compiled_eval: Any
  checkpoints: checkpointing.Checkpoints
  log: reporting.MetricsLog | None = None

  def evaluate(self, params: Any, role: str,
               stop: preemption.StopRequest | None = None) -> dict[str, Any] | None:
    return steps.evaluate(self.compiled_eval, params, self.data[role],
                          self.config.eval_batch_size, self.data_sharding, stop)


def stop_anywhere(stop: preemption.StopRequest) -> bool:
  """Whether any process of the run was asked to stop.

  In a multi-process run this is a collective (every process must call it at the same
  point of training), so all of them stop at the same step even when the scheduler's
  signal reaches them at different times, or reaches only one.
  """
  if jax.process_count() == 1:
    return bool(stop)
  return bool(np.any(sharding.gather(np.array([bool(stop)], np.int32))))


def stop_after_step(stop: preemption.StopRequest, step_in_epoch: int, run: Run) -> bool:
  """Whether to stop after this step: after any step in a single process. Several
  processes agree only where they synchronise anyway to log, rather than with a
  collective every step, and after an epoch's last step only once it is validated."""
  if jax.process_count() == 1:
    return bool(stop)
  if step_in_epoch % run.config.log_every_steps or step_in_epoch == run.steps_per_epoch:
    return False
  return stop_anywhere(stop)


def stop_plan(config: Any) -> str:
  """What a stop signal will do, for its acknowledgement."""
  if jax.process_count() == 1:
    return "stopping after this step with a checkpoint"
  return (f"stopping with a checkpoint where the {jax.process_count()} processes next "
          f"agree (every {config.log_every_steps} steps and at each epoch's end)")


def stop_run(stop: preemption.StopRequest, state: steps.TrainState,
             checkpoints: checkpointing.Checkpoints) -> NoReturn:
  """Waits for the checkpoint just saved, then raises `Preempted`."""
  checkpoints.wait_until_finished()
  raise Preempted(
      f"stopped by {stop.reason} at step {int(state.step)}; a checkpoint was saved "
      f"in {checkpoints.directory}; rerun the same command to resume")


def stop_in_epoch(run: Run, state: steps.TrainState, progress: checkpointing.Progress,
                  stop: preemption.StopRequest) -> NoReturn:
  """Checkpoints a stop before the epoch's end (or before its validation) and stops."""
  # A run resumed before a validation and stopped again during it has this checkpoint.
  if int(state.step) not in run.checkpoints.manager.all_steps():
    run.checkpoints.save(int(state.step), state, progress.to_json())
  stop_run(stop, state, run.checkpoints)


def in_epoch(epoch: int, step_in_epoch: int,
              host_totals: dict[str, np.ndarray]) -> checkpointing.Progress:
  """Progress `step_in_epoch` steps into epoch `epoch` (counted from 1)."""
  return checkpointing.Progress(epoch - 1, step_in_epoch,
                                {k: v.item() for k, v in host_totals.items()})
