"""The pure, compiled parts of training: optimizer, loss, train/eval/embed steps, and
evaluation of a whole split.

The steps are top-level pure functions compiled once with `jax.jit`. They are data
parallel over every device of every process through a one-axis `Mesh`: the batch is
sharded along `data`, the train state is replicated, and XLA inserts the gradient
all-reduce. The same code runs on one CPU, several GPUs, or a TPU pod slice.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import NamedSharding

from fakeface_jax.data import input_pipeline
from fakeface_jax.data import preprocessing
from fakeface_jax.data import self_blend
from fakeface_jax.evaluation import metrics
from fakeface_jax.models import base
from fakeface_jax.serving import domain
from fakeface_jax.training import preemption
from fakeface_jax.training import sharding

TrainState = train_state.TrainState
NO_NONFINITE_STEP = np.iinfo(np.int32).max
# Images a data-dependent model is initialised on: enough for stable per-feature
# statistics, few enough to initialise in seconds.
NUM_INIT_IMAGES = 256
SELF_BLEND_STREAM = 7  # fold_in of a step's augmentation key for its self-blending.


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
