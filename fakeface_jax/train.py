"""Training and evaluation: pure, compiled steps and the loop around them.

The steps are top-level pure functions compiled once with `jax.jit`. They are data
parallel over every device of every process through a one-axis `Mesh`: the batch is
sharded along `data`, the train state is replicated, and XLA inserts the gradient
all-reduce. The same code runs on one CPU, several GPUs, or a TPU pod slice.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from fakeface_jax import classes
from fakeface_jax import config_checks
from fakeface_jax import domain
from fakeface_jax import errors
from fakeface_jax import feature_cache
from fakeface_jax import inference
from fakeface_jax import metrics
from fakeface_jax import models
from fakeface_jax import preemption
from fakeface_jax import preprocessing
from fakeface_jax import reporting
from fakeface_jax import rundir
from fakeface_jax import self_blend
from fakeface_jax import sharding
from fakeface_jax import workdir_lock
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax.models import base

TrainState = train_state.TrainState
NO_NONFINITE_STEP = np.iinfo(np.int32).max
# Images a data-dependent model is initialised on: enough for stable per-feature
# statistics, few enough to initialise in seconds.
NUM_INIT_IMAGES = 256
SELF_BLEND_STREAM = 7  # fold_in of a step's augmentation key for its self-blending.
# Longest wait between progress lines, so a slow epoch still shows it is alive.
LOG_INTERVAL_S = 30.0


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


def create_train_state(key: jax.Array, model, input_shape: tuple[int, ...],
                       tx: optax.GradientTransformation,
                       init_inputs: jax.Array | None = None,
                       on_features: bool = False,
                       init_tables: jax.Array | None = None) -> TrainState:
  """Initialises `model` on one all-zero input, or on `init_inputs` (and their JPEG
  tables, `init_tables`) for a model whose initial parameters depend on the data.

  Inputs are images (floats in [0, 1]), or with `on_features` the model's fixed
  features: the state then applies only the model's head, whose parameters are all of
  the model's, so its checkpoints serve the whole model. The state's `apply_fn` takes
  each image's JPEG tables as `jpeg_tables` and hands them to a model that reads them.
  """
  inputs = jnp.zeros((1, *input_shape), jnp.float32) if init_inputs is None else init_inputs
  method = "head" if on_features else None
  # Cached features were computed with the tables already.
  tables = model.table_inputs(init_tables) if not on_features else {}
  # One compiled init instead of dozens of eagerly dispatched ops (seconds on CPU).
  params = jax.jit(functools.partial(model.init, method=method))(key, inputs,
                                                                  **tables)["params"]
  return TrainState.create(apply_fn=model_apply_fn(model, on_features), params=params,
                           tx=tx)


def model_apply_fn(model, on_features: bool = False):
  """`model.apply` as the train and eval steps call it: `(variables, inputs, *, train,
  jpeg_tables=None)`, the tables handed on only to a model that reads them (and not
  to the head of cached features, which were computed with them)."""
  method = "head" if on_features else None

  def apply_fn(variables, inputs, *, train, jpeg_tables=None):
    tables = model.table_inputs(jpeg_tables) if not on_features else {}
    return model.apply(variables, inputs, train=train, method=method, **tables)

  return apply_fn


def model_inputs(key: jax.Array, inputs: jax.Array, labels: jax.Array, on_features: bool,
                 augmentation: dict[str, Any]) -> tuple[jax.Array, jax.Array]:
  """What the model sees of a batch, and its labels: uint8 images rescaled to [0, 1],
  a `self_blend_share` of the real ones made pseudo-fakes (`self_blend`, labelled
  fake), then augmented (`preprocessing.augment`'s keyword arguments); or cached
  features as they are (a run caches them only when no augmentation is on)."""
  if on_features:
    return inputs, labels
  augmentation = dict(augmentation)
  share = augmentation.pop("self_blend_share", 0.0)
  kinds = tuple(augmentation.pop("self_blend_kinds", self_blend.MASK_KINDS))
  images = preprocessing.rescale(inputs)
  if share > 0:
    # A stream of its own: the other augmentations draw what they drew before.
    images, labels, _ = self_blend.pseudo_fake_batch(
        jax.random.fold_in(key, SELF_BLEND_STREAM), images, labels, share, kinds)
  return preprocessing.augment(key, images, **augmentation), labels


def initialisation_images(split: input_pipeline.Split, augment_config: Any, seed: int,
                          key: jax.Array, on_features: bool = False
                          ) -> tuple[jax.Array, np.ndarray | None]:
  """Up to NUM_INIT_IMAGES training images as the train step sees them, in [0, 1]
  (or, `on_features`, the same images' cached features), and their JPEG tables.

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
  inputs, _ = model_inputs(key, batch["image"], batch["label"], on_features,
                           augment_config.device)
  return inputs, batch.get("jpeg_tables")


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
               batch: dict[str, jax.Array], key: jax.Array, on_features: bool = False,
               **augmentation) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on a batch of uint8 images, or `on_features` of their features.

  `augmentation` holds `preprocessing.augment`'s keyword arguments; its randomness is
  keyed by the step number, so a resumed run draws what an uninterrupted one would.
  A model whose training logits are (source, class) pairs learns each image's pair from
  the batch's "source" (`base.pair_labels`): its training loss is the pairs'
  cross-entropy, its training accuracy that of the classes summed over the sources.
  """
  inputs, labels = model_inputs(jax.random.fold_in(key, state.step), batch["image"],
                                batch["label"], on_features, augmentation)

  def loss_fn(params):
    logits = state.apply_fn({"params": params}, inputs, train=True,
                            jpeg_tables=batch.get("jpeg_tables"))
    targets = base.pair_labels(labels, batch.get("source"), logits.shape[-1])
    return cross_entropy(logits, targets).mean(), base.merge_sources(logits)

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


def eval_step(params: Any, batch: dict[str, jax.Array], *, apply_fn,
              on_features: bool = False) -> dict[str, jax.Array]:
  """Per-example loss and class probabilities of a (possibly padded) batch of images,
  or `on_features` of their features."""
  inputs = batch["image"] if on_features else preprocessing.rescale(batch["image"])
  logits = apply_fn({"params": params}, inputs, train=False,
                    jpeg_tables=batch.get("jpeg_tables"))
  return {"loss": cross_entropy(logits, batch["label"]), "probs": jax.nn.softmax(logits)}


def embed_step(params: Any, batch: dict[str, jax.Array], *, apply_fn,
               on_features: bool = False) -> jax.Array:
  """The model's embedding (`domain.with_embedding`) of a batch of images, or
  `on_features` of their features."""
  inputs = batch["image"] if on_features else preprocessing.rescale(batch["image"])
  return domain.with_embedding(lambda: apply_fn(
      {"params": params}, inputs, train=False, jpeg_tables=batch.get("jpeg_tables")))[1]


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
             data_sharding: NamedSharding,
             stop: preemption.StopRequest | None = None) -> dict[str, Any] | None:
  """Loss, accuracy, confusion matrix and per-example P(fake) over a whole split.

  Returns None, unfinished, once `stop` is set: a single process need not finish a
  validation to stop (several must, since each batch is a collective).
  """
  losses, probs, masks = [], [], []
  for batch in input_pipeline.eval_batches(data, batch_size,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count()):
    if stop:
      return None
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
# The loop's parts.
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


def _host_totals(totals: dict[str, jax.Array]) -> dict[str, np.ndarray]:
  """The epoch's running sums on the host, checked to be finite before any use."""
  host_totals = jax.device_get(totals)
  _check_finite(host_totals)
  return host_totals


def _mean_metrics(totals: dict[str, np.ndarray]) -> tuple[float, float]:
  count = max(int(totals["count"]), 1)
  return float(totals["loss_sum"]) / count, float(totals["correct"]) / count


# Longest time between waits for the device to finish the steps dispatched so far.
SYNC_INTERVAL_S = 1.0


class _Throughput:
  """Images/s, ETA, and whether a progress line is due.

  Rates are timed from the end of the run's first step, which compiles; a resumed run
  compiles again, so its first step is left out too.
  """

  def __init__(self, total_steps: int, batch_size: int, clock=time.perf_counter):
    self.steps_left = total_steps
    self.batch_size = batch_size
    self.clock = clock
    self.start: float | None = None
    self.images = 0
    self.last_line = clock()
    self.last_sync = self.last_line
    self.sync_every = 1  # Steps between waits for the device; adapts to the step time.
    self.unsynced = 0

  def step_done(self, state: Any) -> None:
    self.steps_left -= 1
    self.unsynced += 1
    if self.start is None:
      self._sync(state)
      self.start = self.last_sync
      return
    self.images += self.batch_size
    if self.unsynced >= self.sync_every:
      self._sync(state)

  def _sync(self, state: Any) -> None:
    """Waits for the dispatched steps, about every SYNC_INTERVAL_S.

    JAX dispatches steps asynchronously: without a wait the loop can queue a whole
    epoch in seconds, and rates and lines due by time would describe dispatched steps,
    not finished ones (the detector printed nothing for two minutes that way). One wait
    a second costs nothing measurable on any backend.
    """
    jax.block_until_ready(state)
    now = self.clock()
    seconds_per_step = (now - self.last_sync) / self.unsynced
    self.sync_every = max(1, round(SYNC_INTERVAL_S / max(seconds_per_step, 1e-6)))
    self.last_sync, self.unsynced = now, 0

  def line_due(self) -> bool:
    """Whether LOG_INTERVAL_S passed since the last line. Each process asks its own
    clock: a line needs no agreement between processes (stopping does)."""
    return self.clock() - self.last_line >= LOG_INTERVAL_S

  def summary(self) -> str:
    self.last_line = self.clock()
    if not self.images:
      return "compiled"
    rate = self.images / (self.last_line - self.start)
    eta = _format_duration(self.steps_left * self.batch_size / rate)
    return f"{rate:.0f} img/s | ETA {eta}"


@dataclasses.dataclass
class _Run:
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
    return evaluate(self.compiled_eval, params, self.data[role],
                    self.config.eval_batch_size, self.data_sharding, stop)


def _stop_anywhere(stop: preemption.StopRequest) -> bool:
  """Whether any process of the run was asked to stop.

  In a multi-process run this is a collective (every process must call it at the same
  point of training), so all of them stop at the same step even when the scheduler's
  signal reaches them at different times, or reaches only one.
  """
  if jax.process_count() == 1:
    return bool(stop)
  return bool(np.any(sharding.gather(np.array([bool(stop)], np.int32))))


def _stop_after_step(stop: preemption.StopRequest, step_in_epoch: int, run: _Run) -> bool:
  """Whether to stop after this step: after any step in a single process. Several
  processes agree only where they synchronise anyway to log, rather than with a
  collective every step, and after an epoch's last step only once it is validated."""
  if jax.process_count() == 1:
    return bool(stop)
  if step_in_epoch % run.config.log_every_steps or step_in_epoch == run.steps_per_epoch:
    return False
  return _stop_anywhere(stop)


def _stop_plan(config: Any) -> str:
  """What a stop signal will do, for its acknowledgement."""
  if jax.process_count() == 1:
    return "stopping after this step with a checkpoint"
  return (f"stopping with a checkpoint where the {jax.process_count()} processes next "
          f"agree (every {config.log_every_steps} steps and at each epoch's end)")


def _stop(stop: preemption.StopRequest, state: TrainState,
          checkpoints: checkpointing.Checkpoints) -> NoReturn:
  """Waits for the checkpoint just saved, then raises `Preempted`."""
  checkpoints.wait_until_finished()
  raise Preempted(
      f"stopped by {stop.reason} at step {int(state.step)}; a checkpoint was saved "
      f"in {checkpoints.directory}; rerun the same command to resume")


def _stop_in_epoch(run: _Run, state: TrainState, progress: checkpointing.Progress,
                   stop: preemption.StopRequest) -> NoReturn:
  """Checkpoints a stop before the epoch's end (or before its validation) and stops."""
  # A run resumed before a validation and stopped again during it has this checkpoint.
  if int(state.step) not in run.checkpoints.manager.all_steps():
    run.checkpoints.save(int(state.step), state, progress.to_json())
  _stop(stop, state, run.checkpoints)


def _in_epoch(epoch: int, step_in_epoch: int,
              host_totals: dict[str, np.ndarray]) -> checkpointing.Progress:
  """Progress `step_in_epoch` steps into epoch `epoch` (counted from 1)."""
  return checkpointing.Progress(epoch - 1, step_in_epoch,
                                {k: v.item() for k, v in host_totals.items()})


def _setup(config: Any, workdir: str, data: dict[str, input_pipeline.Split],
           on_features: bool) -> tuple[_Run, TrainState]:
  """The model's initial state, the compiled steps and the run's checkpoints; with
  `on_features`, `data` holds cached features and the steps train the head on them."""
  model = models.create_model(config.model)
  steps_per_epoch = input_pipeline.steps_per_epoch(len(data["train"]), config.batch_size)
  tx = optimizer(config, steps_per_epoch)
  mesh = sharding.make_mesh()
  replicated = NamedSharding(mesh, P())
  init_key, augment_key = jax.random.split(jax.random.key(config.seed))
  init_inputs, init_tables = (
      initialisation_images(data["train"], config.augment, config.seed,
                            jax.random.fold_in(init_key, 1), on_features)
      if model.initialises_from_data else (None, None))
  state = jax.device_put(create_train_state(init_key, model, data["train"].image_shape, tx,
                                            init_inputs, on_features, init_tables),
                         replicated)
  logging.info("Model %s: %s parameters; %d steps per epoch of %d images on %d device(s).",
               config.model.name,
               f"{sum(x.size for x in jax.tree.leaves(state.params)):,}",
               steps_per_epoch, config.batch_size, jax.device_count())
  run = _Run(
      config=config, workdir=workdir, data=data, steps_per_epoch=steps_per_epoch,
      replicated=replicated, data_sharding=NamedSharding(mesh, P("data")),
      augment_key=augment_key,
      compiled_train=jax.jit(functools.partial(train_step, on_features=on_features,
                                               **config.augment.device),
                             out_shardings=(replicated, replicated),
                             donate_argnums=(0, 1)),
      compiled_eval=jax.jit(functools.partial(eval_step, apply_fn=state.apply_fn,
                                              on_features=on_features)),
      checkpoints=checkpointing.Checkpoints(workdir,
                                            max_to_keep=config.checkpoint.max_to_keep))
  return run, state


def _describe(progress: checkpointing.Progress, steps_per_epoch: int) -> str:
  if progress.step_in_epoch == steps_per_epoch:
    return f"epoch {progress.epoch + 1} trained, its validation still to do"
  return (f"epoch {progress.epoch}, {progress.step_in_epoch} steps into the next"
          if progress.step_in_epoch else f"after epoch {progress.epoch}")


def _restore(run: _Run, state: TrainState) -> tuple[TrainState, checkpointing.Progress]:
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
  checkpointing.write_config(run.workdir, run.config)
  if jax.process_index() == 0:
    input_pipeline.write_manifest(run.data, rundir.path(run.workdir, rundir.MANIFEST_CSV))
  return state, progress


def _train_epoch(run: _Run, state: TrainState, start: checkpointing.Progress,
                 stop: preemption.StopRequest, throughput: _Throughput
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One epoch's steps from `start`; a stop checkpoints and raises `Preempted`."""
  config = run.config
  epoch = start.epoch + 1
  totals = jax.device_put(start.totals if start.step_in_epoch else init_totals(),
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
    if _stop_after_step(stop, step_in_epoch, run):
      _stop_in_epoch(run, state, _in_epoch(epoch, step_in_epoch, _host_totals(totals)),
                     stop)
    if (step_in_epoch % config.log_every_steps == 0
        or step_in_epoch == run.steps_per_epoch or throughput.line_due()):
      loss, accuracy = _mean_metrics(_host_totals(totals))
      logging.info("epoch %d/%d step %d/%d | loss %.4f acc %.3f | %s", epoch,
                   config.num_epochs, step_in_epoch, run.steps_per_epoch, loss, accuracy,
                   throughput.summary())
  return state, totals


def _end_epoch(run: _Run, state: TrainState, start: checkpointing.Progress,
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
    _stop_in_epoch(run, state, _in_epoch(epoch, run.steps_per_epoch, host_totals), stop)
  train_loss, train_accuracy = _mean_metrics(host_totals)
  row = {"epoch": epoch, "step": int(state.step), "train_loss": train_loss,
         "train_accuracy": train_accuracy, "val_loss": validation["loss"],
         "val_accuracy": validation["accuracy"],
         "epoch_seconds": round(time.perf_counter() - epoch_start, 2)}
  per_source = mixture.per_source_metrics(run.data["validation"], validation["p_fake"])
  if per_source is not None:
    row["val_weighted_accuracy"] = mixture.weighted_accuracy(run.data["validation"],
                                                             per_source)
  run.log.write(row)
  logging.info("epoch %d/%d done | train loss %.4f acc %.3f | val loss %.4f acc %.3f%s",
               epoch, config.num_epochs, train_loss, train_accuracy, row["val_loss"],
               row["val_accuracy"],
               _per_source_text(per_source, row.get("val_weighted_accuracy")))
  stopping = _stop_anywhere(stop)
  unvalidated = start.step_in_epoch == run.steps_per_epoch
  if (epoch % config.checkpoint.every_epochs == 0 or epoch == config.num_epochs
      or stopping or unvalidated):
    run.checkpoints.save(int(state.step), state, checkpointing.Progress(epoch).to_json(),
                         metrics={checkpointing.BEST_METRIC: row.get(
                             "val_weighted_accuracy", row["val_accuracy"])},
                         replace=unvalidated)
  if stopping:
    _stop(stop, state, run.checkpoints)


def _per_source_text(per_source: dict[str, dict[str, float]] | None,
                     weighted: float | None = None) -> str:
  """" (source acc A, ...[; weighted W])" of `mixture.per_source_metrics` and their
  `weighted_accuracy`, or "" for one dataset."""
  if per_source is None:
    return ""
  weighted_text = "" if weighted is None else f"; weighted {weighted:.3f}"
  return (" (" + ", ".join(f"{name} {m['accuracy']:.3f}" for name, m in per_source.items())
          + weighted_text + ")")


def _test_accuracies(results: dict[str, Any]) -> str:
  return (f"test accuracy {results['test_accuracy']:.4f} at threshold 0.5, "
          f"{results['test_accuracy_at_threshold']:.4f} at the validation-chosen "
          f"threshold {results['threshold']:.4f} ({results['num_test']} images)")


def _embeddings(compiled_embed, params: Any, split: input_pipeline.Split,
                positions: np.ndarray, batch_size: int) -> np.ndarray:
  """Embeddings of `split`'s images at `positions`, in fixed-size (padded) batches."""
  out = []
  for start in range(0, len(positions), batch_size):
    chunk = positions[start:start + batch_size]
    padded = np.resize(chunk, batch_size)  # Repeats the chunk: one compiled shape.
    batch = input_pipeline.batch_of(*split.take_batch(padded))
    out.append(np.asarray(compiled_embed(params, batch))[:len(chunk)])
  return np.concatenate(out)


def _describe_training_data(run: _Run, state: TrainState) -> None:
  """Records what the model was trained on (`domain.TrainingDomain`), for `predict`'s
  warnings: on process 0, with its own copy of the (replicated) parameters."""
  train_split, validation = run.data["train"], run.data["validation"]
  formats = train_split.take_formats(np.arange(len(train_split)))
  if formats is None:  # Arrays made in memory: nothing to describe.
    return
  params = jax.tree.map(lambda x: x.addressable_data(0), state.params)
  compiled_embed = jax.jit(functools.partial(
      embed_step, apply_fn=state.apply_fn,
      on_features=feature_cache.holds_features(train_split)))
  sample = np.sort(np.random.default_rng(run.config.seed).permutation(len(train_split))[
      :domain.MAX_DESCRIBED_IMAGES])
  batch_size = run.config.eval_batch_size
  described = domain.describe(
      formats, run.config.data.image_size, run.config.data.native_crop,
      _embeddings(compiled_embed, params, train_split, sample, batch_size),
      _embeddings(compiled_embed, params, validation, np.arange(len(validation)),
                  batch_size))
  domain.write(run.workdir, described)
  logging.info("Training data described for predict's warnings: %s, sides %d-%d px, "
               "JPEG qualities %s; feature distance cut-off %.2f.",
               "/".join(described.formats), described.min_side, described.max_side,
               described.jpeg_qualities, described.distance_cutoff)


def _final_test(run: _Run, state: TrainState) -> dict[str, Any]:
  """Tests the best checkpoint by validation accuracy (a mixture's: weighted over its
  sources); writes and returns the results."""
  run.checkpoints.wait_until_finished()
  best = run.checkpoints.best_step()
  state, best_meta = run.checkpoints.restore(best, state)
  test = run.evaluate(state.params, "test")
  validation = run.evaluate(state.params, "validation")
  threshold, val_balanced = metrics.best_threshold(
      run.data["validation"].labels, validation["p_fake"],
      **mixture.threshold_groups(run.data["validation"]),
      max_real_fpr=run.config.max_real_fpr)
  test_labels = run.data["test"].labels
  predictions = np.where(test["p_fake"] >= threshold, classes.FAKE, classes.REAL)
  results = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
             "confusion_matrix": test["confusion_matrix"], "num_test": len(test_labels),
             "val_accuracy": validation["accuracy"],
             "num_validation": len(run.data["validation"]),
             "train_accuracy": run.log.rows[-1]["train_accuracy"] if run.log.rows else None,
             "num_train": len(run.data["train"]), "best_epoch": best_meta["epoch"],
             "best_step": best, "threshold": float(threshold),
             "test_accuracy_at_threshold": metrics.accuracy(test_labels, predictions),
             "test_roc_auc": metrics.roc_auc(test_labels == classes.FAKE, test["p_fake"])}
  for role, evaluated in (("test", test), ("validation", validation)):
    per_source = mixture.per_source_metrics(run.data[role], evaluated["p_fake"], threshold)
    if per_source is not None:
      results[f"{role}_per_source"] = per_source
      logging.info("%s per source, at the validation threshold:%s", role,
                   _per_source_text(per_source))
  run.log.close()
  run.checkpoints.close()
  if jax.process_index() == 0:
    inference.write_threshold(run.workdir, float(threshold), best, float(val_balanced))
    _describe_training_data(run, state)
    outputs = write_outputs(run.workdir, run.log.rows, results)
    logging.info("Best epoch %d: %s. Outputs: %s", results["best_epoch"],
                 _test_accuracies(results), ", ".join(outputs))
  return results


def finished_results(config: Any, workdir: str) -> dict[str, Any] | None:
  """The saved results of a run of exactly `config` that trained and tested to the end.

  Cross-validation and sweeps rerun finished runs on purpose; with these they load no
  data and compile nothing. Any other config goes through the loop, which trains what
  is missing (nothing, if only evaluation settings changed) and tests again.
  """
  paths = [rundir.path(workdir, name) for name in (rundir.CONFIG_JSON,
                                                   rundir.TEST_METRICS_JSON)]
  try:
    saved_config, results = (_read_json(path) for path in paths)
    # A run writes its config first and its results last: older results come from
    # an earlier run, whose successor stopped before testing.
    tested_after = os.path.getmtime(paths[1]) >= os.path.getmtime(paths[0])
  except (OSError, ValueError):
    return None
  if not (config.resume and tested_after and "test_accuracy_at_threshold" in results
          and saved_config == json.loads(config.to_json_best_effort())
          and checkpointing.newest_progress(workdir)
          == checkpointing.Progress(config.num_epochs)):
    return None
  logging.info("Run complete: %d/%d epochs, best step %d; raise --config.num_epochs to "
               "train further. Saved results: %s.", config.num_epochs, config.num_epochs,
               results["best_step"], _test_accuracies(results))
  return results


def _read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


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
  results = finished_results(config, workdir)
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
    throughput = _Throughput((config.num_epochs - progress.epoch) * run.steps_per_epoch
                             - progress.step_in_epoch, config.batch_size)
    with preemption.catch_stop_signals(_stop_plan(config)) as stop:
      for epoch in range(progress.epoch + 1, config.num_epochs + 1):
        epoch_start = time.perf_counter()
        start = progress if epoch == progress.epoch + 1 else checkpointing.Progress(epoch - 1)
        state, totals = _train_epoch(run, state, start, stop, throughput)
        _end_epoch(run, state, start, totals, stop, epoch_start)
    logging.info("Final parameters (step %d) sha256 %s", int(state.step),
                 params_digest(state.params))
    return _final_test(run, state)


def write_outputs(workdir: str, rows, results: dict[str, Any]) -> list[str]:
  """Writes final metrics and figures into the workdir; returns their paths."""
  paths = [os.path.join(workdir, name) for name in
           (rundir.TEST_METRICS_JSON, rundir.CURVES_PNG, rundir.CONFUSION_PNG)]
  with open(paths[0], "w") as f:
    json.dump(results, f, indent=2)
  reporting.plot_curves(rows, paths[1])
  # Training's matrix is at 0.5 (argmax), as its test_accuracy.
  metrics.plot_confusion_matrix(np.asarray(results["confusion_matrix"]), paths[2],
                                split="test", threshold=0.5)
  return paths + [os.path.join(workdir, n) for n in
                  (rundir.METRICS_CSV, rundir.METRICS_JSONL, rundir.TENSORBOARD_DIR,
                   rundir.CHECKPOINTS_DIR, rundir.MANIFEST_CSV)]
