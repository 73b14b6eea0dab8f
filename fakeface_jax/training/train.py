"""The training loop: setup, resume, epochs of compiled steps, validation and
checkpoints, then the final test (`final`).

Its pure parts are in `steps`, its progress lines in `speed`, and what its parts share
and the agreement to stop in `run_state`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fakeface_jax import config_checks
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax import errors
from fakeface_jax.evaluation import metrics
from fakeface_jax.evaluation import reporting
from fakeface_jax import models
from fakeface_jax import rundir
from fakeface_jax.training import checkpointing
from fakeface_jax.training import feature_cache
from fakeface_jax.training import final
from fakeface_jax.training import preemption
from fakeface_jax.training import run_config
from fakeface_jax.training import run_state
from fakeface_jax.training import sharding
from fakeface_jax.training import speed
from fakeface_jax.training import steps
from fakeface_jax.training import workdir_lock


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------------------
# The loop's parts.
# ----------------------------------------------------------------------------------------


def _check_finite(totals: dict[str, np.ndarray]) -> None:
  step = int(totals["first_nonfinite_step"])
  if step != steps.NO_NONFINITE_STEP:
    raise NonFiniteLossError(
        f"training loss became non-finite at step {step}; the last good checkpoint is "
        "kept. Lower config.learning_rate or check the data.")


def _host_totals(totals: dict[str, jax.Array]) -> dict[str, np.ndarray]:
  """The epoch's running sums on the host, checked to be finite before any use."""
  host_totals = jax.device_get(totals)
  _check_finite(host_totals)
  return host_totals


def _mean_metrics(totals: dict[str, np.ndarray]) -> tuple[float, float]:
  count = max(int(totals["count"]), 1)
  return float(totals["loss_sum"]) / count, float(totals["correct"]) / count


def _setup(config: Any, workdir: str, data: dict[str, input_pipeline.Split],
           on_features: bool) -> tuple[run_state.Run, steps.TrainState]:
  """The model's initial state, the compiled steps and the run's checkpoints; with
  `on_features`, `data` holds cached features and the steps train the head on them."""
  model = models.create_model(config.model)
  steps_per_epoch = input_pipeline.steps_per_epoch(len(data["train"]), config.batch_size)
  tx = steps.optimizer(config, steps_per_epoch)
  mesh = sharding.make_mesh()
  replicated = NamedSharding(mesh, P())
  init_key, augment_key = jax.random.split(jax.random.key(config.seed))
  init_inputs, init_tables = (
      steps.initialisation_images(data["train"], config.augment, config.seed,
                                  jax.random.fold_in(init_key, 1), on_features)
      if model.initialises_from_data else (None, None))
  state = steps.create_train_state(init_key, model, data["train"].image_shape, tx,
                                   init_inputs, on_features, init_tables)
  state = jax.device_put(state, replicated)
  logging.info("Model %s: %s parameters; %d steps per epoch of %d images on %d device(s).",
               config.model.name,
               f"{sum(x.size for x in jax.tree.leaves(state.params)):,}",
               steps_per_epoch, config.batch_size, jax.device_count())
  run = run_state.Run(
      config=config, workdir=workdir, data=data, steps_per_epoch=steps_per_epoch,
      replicated=replicated, data_sharding=NamedSharding(mesh, P("data")),
      augment_key=augment_key,
      compiled_train=jax.jit(functools.partial(steps.train_step, on_features=on_features,
                                               **config.augment.device),
                             out_shardings=(replicated, replicated),
                             donate_argnums=(0, 1)),
      compiled_eval=jax.jit(functools.partial(steps.eval_step, apply_fn=state.apply_fn,
                                              on_features=on_features)),
      checkpoints=checkpointing.Checkpoints(workdir,
                                            max_to_keep=config.checkpoint.max_to_keep))
  return run, state


def _describe(progress: checkpointing.Progress, steps_per_epoch: int) -> str:
  if progress.step_in_epoch == steps_per_epoch:
    return f"epoch {progress.epoch + 1} trained, its validation still to do"
  return (f"epoch {progress.epoch}, {progress.step_in_epoch} steps into the next"
          if progress.step_in_epoch else f"after epoch {progress.epoch}")


def _restore(run: run_state.Run, state: steps.TrainState
             ) -> tuple[steps.TrainState, checkpointing.Progress]:
  """The newest usable checkpoint (possibly taken mid-epoch) and the run's files."""
  progress = checkpointing.Progress()
  if not run.config.resume:
    moved = run.checkpoints.set_aside()
    if moved:
      logging.warning("config.resume=false: moved existing checkpoints to %s.", moved)
  else:
    restored = run.checkpoints.restore_latest(state)
    if restored:
      state, meta, step = restored
      progress = checkpointing.Progress.from_json(meta)
      logging.info("Resumed from %s at step %d (%s).", run.checkpoints.directory, step,
                   _describe(progress, run.steps_per_epoch))
  run_config.write_config(run.workdir, run.config)
  if jax.process_index() == 0:
    input_pipeline.write_manifest(run.data, rundir.path(run.workdir, rundir.MANIFEST_CSV))
  return state, progress


def _train_epoch(run: run_state.Run, state: steps.TrainState, start: checkpointing.Progress,
                 stop: preemption.StopRequest, throughput: speed.Throughput
                 ) -> tuple[steps.TrainState, dict[str, jax.Array]]:
  """One epoch's steps from `start`; a stop checkpoints and raises `Preempted`."""
  config = run.config
  epoch = start.epoch + 1
  totals = jax.device_put(start.totals if start.step_in_epoch else steps.init_totals(),
                          run.replicated)
  batches = input_pipeline.train_batches(
      run.data["train"], config.batch_size, seed=config.seed, epoch=epoch,
      start_step=start.step_in_epoch, process_index=jax.process_index(),
      process_count=jax.process_count(), **config.augment.host)
  for step_in_epoch, batch in enumerate(batches, start=start.step_in_epoch + 1):
    state, totals = run.compiled_train(state, totals,
                                       sharding.to_global(batch, run.data_sharding),
                                       run.augment_key)
    throughput.step_done(state)
    if run_state.stop_after_step(stop, step_in_epoch, run):
      at_stop = run_state.in_epoch(epoch, step_in_epoch, _host_totals(totals))
      run_state.stop_in_epoch(run, state, at_stop, stop)
    if (step_in_epoch % config.log_every_steps == 0
        or step_in_epoch == run.steps_per_epoch or throughput.line_due()):
      loss, accuracy = _mean_metrics(_host_totals(totals))
      logging.info("epoch %d/%d step %d/%d | loss %.4f acc %.3f | %s", epoch,
                   config.num_epochs, step_in_epoch, run.steps_per_epoch, loss, accuracy,
                   throughput.summary())
  return state, totals


def _end_epoch(run: run_state.Run, state: steps.TrainState, start: checkpointing.Progress,
               totals: dict[str, jax.Array], stop: preemption.StopRequest,
               epoch_start: float) -> None:
  """Validates, logs and checkpoints the epoch just trained; a stop raises `Preempted`.

  A single process stopped during the validation checkpoints the epoch as still to
  validate; resumed from there, the run validates it and replaces that checkpoint
  with the epoch's own (which has the same step).
  """
  config = run.config
  epoch = start.epoch + 1
  host_totals = _host_totals(totals)
  validation = run.evaluate(state.params, "validation",
                            stop if jax.process_count() == 1 else None)
  if validation is None:
    at_stop = run_state.in_epoch(epoch, run.steps_per_epoch, host_totals)
    run_state.stop_in_epoch(run, state, at_stop, stop)
  train_loss, train_accuracy = _mean_metrics(host_totals)
  row = {"epoch": epoch, "step": int(state.step), "train_loss": train_loss,
         "train_accuracy": train_accuracy, "val_loss": validation["loss"],
         "val_accuracy": validation["accuracy"],
         "epoch_seconds": round(time.perf_counter() - epoch_start, 2)}
  per_source = metrics.per_source_metrics(run.data["validation"], validation["p_fake"])
  if per_source is not None:
    row["val_weighted_accuracy"] = mixture.weighted_accuracy(run.data["validation"],
                                                             per_source)
  run.log.write(row)
  logging.info("epoch %d/%d done | train loss %.4f acc %.3f | val loss %.4f acc %.3f%s",
               epoch, config.num_epochs, train_loss, train_accuracy, row["val_loss"],
               row["val_accuracy"],
               final.per_source_text(per_source, row.get("val_weighted_accuracy")))
  stopping = run_state.stop_anywhere(stop)
  unvalidated = start.step_in_epoch == run.steps_per_epoch
  if (epoch % config.checkpoint.every_epochs == 0 or epoch == config.num_epochs
      or stopping or unvalidated):
    run.checkpoints.save(int(state.step), state, checkpointing.Progress(epoch).to_json(),
                         metrics={checkpointing.BEST_METRIC: row.get(
                             "val_weighted_accuracy", row["val_accuracy"])},
                         replace=unvalidated)
  if stopping:
    run_state.stop_run(stop, state, run.checkpoints)


# ----------------------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------------------


def _load_inputs(config: Any) -> tuple[dict[str, Any], bool]:
  """Each role's images, or, for a model whose features can be computed once, their
  cached features (`feature_cache`), and which of the two."""
  model = models.create_model(config.model)
  reason = feature_cache.why_per_step(config, model)
  if reason:
    if model.fixed_features:
      logging.info("Features computed in every step: %s.", reason)
    return input_pipeline.load_data(config), False
  # Images are read only for features missing from the cache, once: streaming them
  # leaves a cache hit without decoding a single image.
  data = input_pipeline.load_data(config, cache="stream")
  return feature_cache.load_or_compute(config, model, data), True


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """Trains, checkpoints and evaluates the configured model; returns the test metrics.

  Resumes from the newest usable checkpoint in `workdir`, and returns a finished run's
  saved results without training. A stop signal saves a checkpoint and raises
  `Preempted`: in a single process after the current step (or during validation,
  which the rerun then does first), in several where they next agree.
  """
  # --- Setup: everything that can fail on a bad config fails here, before any output.
  config_checks.check_config(config)
  config_checks.check_workdir(config, workdir)
  results = final.finished_results(config, workdir)
  if results is not None:
    return results
  data, on_features = _load_inputs(config)
  config_checks.check_dataset_size(config, len(data["train"]))
  # Processes other than 0 share the workdir on purpose.
  with (workdir_lock.hold(workdir) if jax.process_index() == 0
        else contextlib.nullcontext()):
    run, state = _setup(config, workdir, data, on_features)
    state, progress = _restore(run, state)
    run.log = reporting.MetricsLog(workdir, resume_after_epoch=progress.epoch)
    steps_left = ((config.num_epochs - progress.epoch) * run.steps_per_epoch
                  - progress.step_in_epoch)
    throughput = speed.Throughput(steps_left, config.batch_size)
    with preemption.catch_stop_signals(run_state.stop_plan(config)) as stop:
      for epoch in range(progress.epoch + 1, config.num_epochs + 1):
        epoch_start = time.perf_counter()
        start = (progress if epoch == progress.epoch + 1
                 else checkpointing.Progress(epoch - 1))
        state, totals = _train_epoch(run, state, start, stop, throughput)
        _end_epoch(run, state, start, totals, stop, epoch_start)
    logging.info("Final parameters (step %d) sha256 %s", int(state.step),
                 steps.params_digest(state.params))
    return final.test_best_checkpoint(run, state)
