"""Training and evaluation: pure, compiled steps and the loop around them.

The steps are top-level pure functions compiled once with `jax.jit`. They are data
parallel over every device of every process through a one-axis `Mesh`: the batch is
sharded along `data`, the train state is replicated, and XLA inserts the gradient
all-reduce. The same code runs on one CPU, several GPUs, or a TPU pod slice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax.training import train_state
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fakeface_jax import checkpointing
from fakeface_jax import config_checks
from fakeface_jax import errors
from fakeface_jax import inference
from fakeface_jax import metrics
from fakeface_jax import models
from fakeface_jax import preemption
from fakeface_jax import preprocessing
from fakeface_jax import reporting
from fakeface_jax import rundir
from fakeface_jax import sharding
from fakeface_jax.data import input_pipeline

TrainState = train_state.TrainState
NO_NONFINITE_STEP = np.iinfo(np.int32).max
# Images a data-dependent model is initialised on: enough for stable per-feature
# statistics, few enough to initialise in seconds.
NUM_INIT_IMAGES = 256


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """The training loss became NaN or infinite."""


class Preempted(errors.UserError, RuntimeError):
  """A stop signal arrived; a checkpoint of the current step was saved."""


# ----------------------------------------------------------------------------------------
# Pure functions: optimizer, loss, steps.
# ----------------------------------------------------------------------------------------


def learning_rate_schedule(config: Any, steps_per_epoch: int) -> optax.Schedule:
  """The configured schedule; "inverse_time" is Keras' `lr / (1 + decay * step)`."""
  lr = config.learning_rate
  if config.lr_schedule == "constant":
    return optax.constant_schedule(lr)
  if config.lr_schedule == "inverse_time":
    decay = config.lr_decay if config.lr_decay is not None else lr / config.num_epochs
    return lambda step: lr / (1 + decay * step)
  if config.lr_schedule == "cosine":
    return optax.cosine_decay_schedule(lr, config.num_epochs * steps_per_epoch)
  raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")


def create_train_state(key: jax.Array, model, image_shape: tuple[int, ...],
                       tx: optax.GradientTransformation,
                       init_images: jax.Array | None = None) -> TrainState:
  """Initialises `model` on one all-zero image, or on `init_images` (floats in [0, 1])
  for a model whose initial parameters depend on the data."""
  images = jnp.zeros((1, *image_shape), jnp.float32) if init_images is None else init_images
  # One compiled init instead of dozens of eagerly dispatched ops (seconds on CPU).
  params = jax.jit(model.init)(key, images)["params"]
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def initialisation_images(split: input_pipeline.Split, augment_config: Any, seed: int,
                          key: jax.Array) -> jax.Array:
  """Up to NUM_INIT_IMAGES training images as the train step sees them, in [0, 1].

  They are the first batch of epoch 0, which training never runs, so the sample is
  seeded and distinct from every training batch, and it goes through the run's host
  degradations and device augmentations (`augment_config`, keyed by `key`). Statistics
  a model fits on it at initialisation then describe what it is trained on: fitted on
  clean images only, a feature standardisation would clip away the variation of the
  degraded ones.
  """
  count = min(NUM_INIT_IMAGES, len(split))
  [batch] = input_pipeline.train_batches(split, count, seed=seed, epoch=0, end_step=1,
                                        **augment_config.host)
  return preprocessing.augment(key, preprocessing.rescale(batch["image"]),
                               **augment_config.device)


def optimizer(config: Any, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam, after an L2 penalty of `config.weight_decay` on the kernels if it is > 0.

  The penalty's gradient is added before Adam's scaling (Keras' kernel_regularizer, not
  AdamW's decoupled decay): it is logistic regression's L2, what a linear head on
  thousands of features from a thousand images needs.
  """
  adam = optax.adam(learning_rate_schedule(config, steps_per_epoch))
  if not config.weight_decay:
    return adam
  kernels = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  return optax.chain(optax.add_decayed_weights(config.weight_decay, mask=kernels), adam)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def init_totals() -> dict[str, jax.Array]:
  """Running sums of one epoch's training metrics, kept on the device between steps."""
  return {"loss_sum": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.int32),
          "count": jnp.zeros((), jnp.int32),
          "first_nonfinite_step": jnp.full((), NO_NONFINITE_STEP, jnp.int32)}


def train_step(state: TrainState, totals: dict[str, jax.Array],
               batch: dict[str, jax.Array], key: jax.Array,
               **augmentation) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on a batch of uint8 images.

  `augmentation` holds `preprocessing.augment`'s keyword arguments; its randomness is
  keyed by the step number, so a resumed run draws what an uninterrupted one would.
  """
  images = preprocessing.augment(jax.random.fold_in(key, state.step),
                                 preprocessing.rescale(batch["image"]), **augmentation)
  labels = batch["label"]

  def loss_fn(params):
    logits = state.apply_fn({"params": params}, images, train=True)
    return cross_entropy(logits, labels).mean(), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads)
  count = labels.shape[0]
  nonfinite_step = jnp.where(jnp.isfinite(loss), NO_NONFINITE_STEP, state.step)
  totals = {
      "loss_sum": totals["loss_sum"] + loss * count,
      "correct": totals["correct"] + jnp.sum(jnp.argmax(logits, -1) == labels),
      "count": totals["count"] + count,
      "first_nonfinite_step": jnp.minimum(totals["first_nonfinite_step"],
                                          nonfinite_step.astype(jnp.int32)),
  }
  return new_state, totals


def eval_step(params: Any, batch: dict[str, jax.Array], *, apply_fn) -> dict[str, jax.Array]:
  """Per-example loss and class probabilities of a (possibly padded) batch."""
  logits = apply_fn({"params": params}, preprocessing.rescale(batch["image"]), train=False)
  return {"loss": cross_entropy(logits, batch["label"]), "probs": jax.nn.softmax(logits)}


# ----------------------------------------------------------------------------------------
# Parameters.
# ----------------------------------------------------------------------------------------


def params_digest(params: Any) -> str:
  """SHA-256 of this process's copy of replicated parameters, to compare runs and hosts."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.ascontiguousarray(leaf.addressable_data(0)).tobytes())
  return digest.hexdigest()


# ----------------------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------------------


def evaluate(compiled_eval, params, data: input_pipeline.Split, batch_size: int,
             data_sharding: NamedSharding) -> dict[str, Any]:
  """Loss, accuracy, confusion matrix and per-example P(fake) over a whole split."""
  losses, probs, masks = [], [], []
  for batch in input_pipeline.eval_batches(data, batch_size,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count()):
    mask = batch["mask"]
    out = sharding.gather(compiled_eval(params, sharding.to_global(batch, data_sharding)))
    losses.append(out["loss"])
    probs.append(out["probs"])
    masks.append(sharding.gather(jax.make_array_from_process_local_data(data_sharding, mask)))
  keep = np.concatenate(masks) > 0
  loss = np.concatenate(losses)[keep]
  probs = np.concatenate(probs)[keep]
  predictions = probs.argmax(-1)
  return {
      "loss": float(loss.mean()),
      "accuracy": float(np.mean(predictions == data.labels)),
      "confusion_matrix": metrics.confusion_matrix(data.labels, predictions).tolist(),
      "p_fake": probs[:, 0],
  }


# ----------------------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------------------


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  return (f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s")


def _check_finite(totals: dict[str, np.ndarray]) -> None:
  step = int(totals["first_nonfinite_step"])
  if step != NO_NONFINITE_STEP:
    raise NonFiniteLossError(
        f"training loss became non-finite at step {step}; the last good checkpoint is "
        "kept. Lower config.learning_rate or check the data.")


def _mean_metrics(totals: dict[str, np.ndarray]) -> tuple[float, float]:
  count = max(int(totals["count"]), 1)
  return float(totals["loss_sum"]) / count, float(totals["correct"]) / count


class _Throughput:
  """Images/s and ETA, timed from the end of the first (compiling) step of the run."""

  def __init__(self, total_steps: int, batch_size: int):
    self.steps_left = total_steps
    self.batch_size = batch_size
    self.start: float | None = None
    self.images = 0

  def step_done(self, state: Any) -> None:
    self.steps_left -= 1
    if self.start is None:
      jax.block_until_ready(state)
      self.start = time.perf_counter()
    else:
      self.images += self.batch_size

  def summary(self) -> str:
    if not self.images:
      return "compiled"
    rate = self.images / (time.perf_counter() - self.start)
    eta = _format_duration(self.steps_left * self.batch_size / rate)
    return f"{rate:.0f} img/s | ETA {eta}"


def _stop_anywhere(stop: preemption.StopRequest) -> bool:
  """Whether any process of the run was asked to stop.

  In a multi-process run this is a collective (every process must call it at the same
  point of training), so all of them stop at the same step even when the scheduler's
  signal reaches them at different times, or reaches only one.
  """
  return bool(np.any(sharding.gather(np.array([bool(stop)], np.int32))))


def _stop_after_step(stop: preemption.StopRequest, step_in_epoch: int, config: Any) -> bool:
  """Whether to stop after this step: after any step in a single process; in several,
  only at the steps where they synchronise anyway to log, which all of them reach
  together, rather than with a collective every step."""
  if jax.process_count() > 1 and step_in_epoch % config.log_every_steps:
    return False
  return _stop_anywhere(stop)


def _stop(stop: preemption.StopRequest, state: TrainState,
          checkpoints: checkpointing.Checkpoints) -> NoReturn:
  """Waits for the checkpoint just saved, then raises `Preempted`."""
  checkpoints.wait_until_finished()
  raise Preempted(
      f"stopped by {stop.reason} at step {int(state.step)}; a checkpoint was saved "
      f"in {checkpoints.directory}; rerun the same command to resume")


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """Trains, checkpoints and evaluates the configured model; returns the test metrics.

  Resumes from the newest usable checkpoint in `workdir`. A stop signal saves a
  checkpoint after the current step and raises `Preempted`; one that arrives after an
  epoch's last step, or during its validation, lets the validation finish first so
  the checkpoint is that epoch's regular one.
  """
  # --- Setup: everything that can fail on a bad config fails here, before any output.
  config_checks.check_config(config)
  config_checks.check_workdir(config, workdir)
  data = input_pipeline.load_data(config)
  config_checks.check_dataset_size(config, len(data["train"]))
  model = models.create_model(config.model)
  steps_per_epoch = input_pipeline.steps_per_epoch(len(data["train"]), config.batch_size)
  tx = optimizer(config, steps_per_epoch)

  mesh = sharding.make_mesh()
  replicated = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P("data"))
  init_key, augment_key = jax.random.split(jax.random.key(config.seed))
  image_shape = data["train"].image_shape
  init_images = (initialisation_images(data["train"], config.augment, config.seed,
                                       jax.random.fold_in(init_key, 1))
                 if model.initialises_from_data else None)
  state = jax.device_put(create_train_state(init_key, model, image_shape, tx, init_images),
                         replicated)
  compiled_train = jax.jit(
      functools.partial(train_step, **config.augment.device),
      out_shardings=(replicated, replicated), donate_argnums=(0, 1))
  compiled_eval = jax.jit(functools.partial(eval_step, apply_fn=state.apply_fn))
  logging.info("Model %s: %s parameters; %d steps per epoch of %d images on %d device(s).",
               config.model.name,
               f"{sum(x.size for x in jax.tree.leaves(state.params)):,}",
               steps_per_epoch, config.batch_size, jax.device_count())

  # --- Restore: the newest usable checkpoint, possibly taken mid-epoch.
  os.makedirs(workdir, exist_ok=True)
  checkpoints = checkpointing.Checkpoints(workdir,
                                          max_to_keep=config.checkpoint.max_to_keep)
  meta = {"epoch": 0, "step_in_epoch": 0, "totals": None}
  if not config.resume:
    moved = checkpoints.set_aside()
    if moved:
      logging.warning("config.resume=false: moved existing checkpoints to %s.", moved)
  else:
    restored = checkpoints.restore_latest(state)
    if restored:
      state, meta, step = restored
      logging.info("Resumed from %s at step %d (epoch %d, %d steps into the next).",
                   checkpoints.directory, step, meta["epoch"], meta["step_in_epoch"])
  checkpointing.write_config(workdir, config)
  if jax.process_index() == 0:
    input_pipeline.write_manifest(data, os.path.join(workdir, rundir.MANIFEST_CSV))
  log = reporting.MetricsLog(workdir, resume_after_epoch=meta["epoch"])

  # --- Train.
  throughput = _Throughput((config.num_epochs - meta["epoch"]) * steps_per_epoch
                           - meta["step_in_epoch"], config.batch_size)
  with preemption.catch_stop_signals() as stop:
    for epoch in range(meta["epoch"] + 1, config.num_epochs + 1):
      epoch_start = time.perf_counter()
      start_step = meta["step_in_epoch"] if epoch == meta["epoch"] + 1 else 0
      totals = jax.device_put(meta["totals"] if start_step else init_totals(), replicated)
      batches = input_pipeline.train_batches(
          data["train"], config.batch_size, seed=config.seed, epoch=epoch,
          start_step=start_step, process_index=jax.process_index(),
          process_count=jax.process_count(),
          **config.augment.host)
      for step_in_epoch, batch in enumerate(batches, start=start_step + 1):
        state, totals = compiled_train(state, totals, sharding.to_global(batch, data_sharding),
                                       augment_key)
        throughput.step_done(state)
        # A stop after an epoch's last step falls through to the end-of-epoch
        # checkpoint: a mid-epoch one there would share its step number.
        if step_in_epoch < steps_per_epoch and _stop_after_step(stop, step_in_epoch, config):
          host_totals = jax.device_get(totals)
          _check_finite(host_totals)
          checkpoints.save(int(state.step), state, {
              "epoch": epoch - 1, "step_in_epoch": step_in_epoch,
              "totals": {k: v.item() for k, v in host_totals.items()}})
          _stop(stop, state, checkpoints)
        if step_in_epoch % config.log_every_steps == 0 or step_in_epoch == steps_per_epoch:
          host_totals = jax.device_get(totals)
          _check_finite(host_totals)
          loss, accuracy = _mean_metrics(host_totals)
          logging.info("epoch %d/%d step %d/%d | loss %.4f acc %.3f | %s", epoch,
                       config.num_epochs, step_in_epoch, steps_per_epoch, loss, accuracy,
                       throughput.summary())

      # --- Validate, log and checkpoint at the end of each epoch.
      host_totals = jax.device_get(totals)
      _check_finite(host_totals)
      train_loss, train_accuracy = _mean_metrics(host_totals)
      validation = evaluate(compiled_eval, state.params, data["validation"],
                            config.eval_batch_size, data_sharding)
      row = {"epoch": epoch, "step": int(state.step), "train_loss": train_loss,
             "train_accuracy": train_accuracy, "val_loss": validation["loss"],
             "val_accuracy": validation["accuracy"],
             "epoch_seconds": round(time.perf_counter() - epoch_start, 2)}
      log.write(row)
      logging.info("epoch %d/%d done | train loss %.4f acc %.3f | val loss %.4f acc %.3f",
                   epoch, config.num_epochs, train_loss, train_accuracy, row["val_loss"],
                   row["val_accuracy"])
      stopping = _stop_anywhere(stop)
      if (epoch % config.checkpoint.every_epochs == 0 or epoch == config.num_epochs
          or stopping):
        checkpoints.save(int(state.step), state,
                         {"epoch": epoch, "step_in_epoch": 0, "totals": None},
                         metrics={checkpointing.BEST_METRIC: row["val_accuracy"]})
      if stopping:
        _stop(stop, state, checkpoints)

  logging.info("Final parameters (step %d) sha256 %s", int(state.step),
               params_digest(state.params))

  # --- Test with the best checkpoint by validation accuracy.
  checkpoints.wait_until_finished()
  best = checkpoints.best_step()
  state, best_meta = checkpoints.restore(best, state)
  test = evaluate(compiled_eval, state.params, data["test"], config.eval_batch_size,
                  data_sharding)
  validation = evaluate(compiled_eval, state.params, data["validation"],
                        config.eval_batch_size, data_sharding)
  threshold, val_balanced = metrics.best_threshold(data["validation"].labels,
                                                   validation["p_fake"])
  results = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
             "confusion_matrix": test["confusion_matrix"], "num_test": len(data["test"]),
             "val_accuracy": validation["accuracy"], "num_validation": len(data["validation"]),
             "train_accuracy": log.rows[-1]["train_accuracy"] if log.rows else None,
             "num_train": len(data["train"]), "best_epoch": best_meta["epoch"],
             "best_step": best}
  log.close()
  checkpoints.close()
  if jax.process_index() == 0:
    inference.write_threshold(workdir, float(threshold), best, float(val_balanced))
    outputs = write_outputs(workdir, log.rows, results)
    logging.info("Test accuracy %.4f (%d images, best epoch %d). Outputs: %s",
                 results["test_accuracy"], results["num_test"], results["best_epoch"],
                 ", ".join(outputs))
  return results


def write_outputs(workdir: str, rows, results: dict[str, Any]) -> list[str]:
  """Writes final metrics and figures into the workdir; returns their paths."""
  paths = [os.path.join(workdir, name) for name in
           (rundir.TEST_METRICS_JSON, rundir.CURVES_PNG, rundir.CONFUSION_PNG)]
  with open(paths[0], "w") as f:
    json.dump(results, f, indent=2)
  reporting.plot_curves(rows, paths[1])
  metrics.plot_confusion_matrix(np.asarray(results["confusion_matrix"]), paths[2])
  return paths + [os.path.join(workdir, n) for n in
                  (rundir.METRICS_CSV, rundir.METRICS_JSONL, rundir.TENSORBOARD_DIR,
                   rundir.CHECKPOINTS_DIR, rundir.MANIFEST_CSV)]
