"""The train step's running totals under augmentation: loss and accuracy are of the
labels the model was trained on (self-blending turns reals into fakes inside the step),
and every example of every step is counted once."""

import csv
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from fakeface_jax import classes
from fakeface_jax.models import base
from fakeface_jax.training import steps
from fakeface_jax.training import train

BATCH = 8
SIZE = 16
KINDS = ("convex",)  # One mask kind: the blend itself is not what these tests are about.


def constant_logits(variables, inputs, *, train, jpeg_tables=None):
  """A 'model' giving every image the logits that are its parameters."""
  del train, jpeg_tables
  bias = variables["params"]["bias"]
  # The inputs enter (as zero) so that the step really reads the augmented images.
  zero = 0.0 * jnp.mean(inputs, axis=tuple(range(1, inputs.ndim)))[:, None]
  return jnp.broadcast_to(bias, (inputs.shape[0], bias.shape[0])) + zero


FROZEN = optax.sgd(0.0)  # Steps that keep the parameters: each step's logits are known.


def constant_state(logits):
  """A train state whose every prediction has the logits `logits`, so each step's loss
  and hits are known exactly (module-level function and optimizer: one compilation)."""
  return train_state.TrainState.create(
      apply_fn=constant_logits, params={"bias": jnp.asarray(logits, jnp.float32)},
      tx=FROZEN)


@functools.lru_cache(maxsize=None)
def compiled_inputs(share):
  """model_inputs with self-blending of `share`: what the step trains on."""
  return jax.jit(functools.partial(steps.model_inputs, on_features=False, augmentation={
      "flip": False, "self_blend_share": share, "self_blend_kinds": KINDS}))


@functools.lru_cache(maxsize=None)
def compiled_step(share):
  """train_step compiled with self-blending of `share` (as train._setup compiles it)."""
  return jax.jit(functools.partial(steps.train_step, on_features=False, flip=False,
                                   self_blend_share=share, self_blend_kinds=KINDS))


def images(seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (BATCH, SIZE, SIZE, 3)),
                     jnp.uint8)


def cross_entropy(logits, labels):
  logits = np.asarray(logits, np.float64)
  log_z = np.log(np.exp(logits - logits.max()).sum()) + logits.max()
  return log_z - logits[np.asarray(labels)]


@pytest.mark.parametrize("share, trained_as", [(1.0, classes.FAKE), (0.0, classes.REAL)])
def test_totals_are_of_the_labels_the_step_trained_on(share, trained_as):
  # Every image real, every prediction fake: with share 1 the step trains on fakes
  # only and so is right every time; with share 0 on reals only, and never right.
  state = constant_state([3.0, 0.0])  # argmax: FAKE (0).
  batch = {"image": images(), "label": jnp.full((BATCH,), classes.REAL, jnp.int32)}
  new_state, totals = compiled_step(share)(state, steps.init_totals(), batch,
                                           jax.random.key(0))
  totals = jax.device_get(totals)
  assert int(totals["count"]) == BATCH
  assert int(totals["correct"]) == (BATCH if trained_as == classes.FAKE else 0)
  assert float(totals["loss_sum"]) == pytest.approx(
      BATCH * cross_entropy([3.0, 0.0], trained_as), rel=1e-5)
  assert train._mean_metrics(totals) == pytest.approx(  # pylint: disable=protected-access
      (cross_entropy([3.0, 0.0], trained_as), 1.0 if trained_as == classes.FAKE else 0.0),
      rel=1e-5)
  assert int(new_state.step) == 1


def test_a_share_of_one_makes_every_real_of_a_mixed_batch_a_fake_the_totals_count():
  labels = jnp.array([classes.REAL, classes.FAKE] * (BATCH // 2), jnp.int32)
  batch = {"image": images(1), "label": labels}
  # Predicting real: right on none of the trained labels (all fake), though half of the
  # given ones are real.
  state = constant_state([0.0, 2.0])
  _, totals = compiled_step(1.0)(state, steps.init_totals(), batch, jax.random.key(3))
  assert int(totals["correct"]) == 0 and int(totals["count"]) == BATCH
  assert float(totals["loss_sum"]) == pytest.approx(BATCH * cross_entropy([0.0, 2.0], 0),
                                                    rel=1e-5)
  _, totals = compiled_step(0.0)(state, steps.init_totals(), batch, jax.random.key(3))
  assert int(totals["correct"]) == BATCH // 2


@settings(max_examples=15)
@given(st.sampled_from([0.0, 0.5, 1.0]),
       st.lists(st.sampled_from([classes.FAKE, classes.REAL]), min_size=BATCH,
                max_size=BATCH),
       st.lists(st.integers(-12, 12).map(lambda i: i / 4), min_size=2, max_size=2,
                unique=True),
       st.integers(1, 3), st.integers(0, 2 ** 16))
def test_totals_sum_each_steps_loss_and_hits_against_its_augmented_labels(
    share, labels, logits, num_steps, seed):
  given_logits = np.asarray(logits, np.float32)
  state = constant_state(given_logits)
  key = jax.random.key(seed)
  batch = {"image": images(seed % 3), "label": jnp.asarray(labels, jnp.int32)}
  totals = steps.init_totals()
  expected_correct, expected_loss = 0, 0.0
  prediction = int(np.argmax(given_logits))
  for _ in range(num_steps):
    # What the step trains on: model_inputs keyed by the step number.
    # At the ends of the range: the labels given, or every one fake.
    if share == 0.0:
      trained = np.asarray(labels)
    elif share == 1.0:
      trained = np.full(BATCH, classes.FAKE)
    else:
      _, trained = compiled_inputs(share)(jax.random.fold_in(key, state.step),
                                          batch["image"], batch["label"])
      trained = np.asarray(trained)
    expected_correct += int(np.sum(trained == prediction))
    expected_loss += sum(cross_entropy(given_logits, y) for y in trained)
    state, totals = compiled_step(share)(state, totals, batch, key)
  totals = jax.device_get(totals)
  assert int(totals["count"]) == num_steps * BATCH
  assert int(totals["correct"]) == expected_correct
  assert float(totals["loss_sum"]) == pytest.approx(expected_loss, rel=1e-4, abs=1e-4)
  assert int(totals["first_nonfinite_step"]) == steps.NO_NONFINITE_STEP


def test_pairs_of_sources_train_on_each_images_augmented_pair():
  # Logits of (source, class) pairs: source 0's fake pair high, everything else 0.
  pairs = [4.0, 0.0, 0.0, 0.0]
  state = constant_state(pairs)
  sources = jnp.array([0, 1] * (BATCH // 2), jnp.int32)
  batch = {"image": images(2), "label": jnp.full((BATCH,), classes.REAL, jnp.int32),
           "source": sources}
  _, totals = compiled_step(1.0)(state, steps.init_totals(), batch, jax.random.key(5))
  # Every image trained as fake: its pair is (its source, fake).
  targets = np.asarray(base.pair_labels(jnp.zeros(BATCH, jnp.int32), sources, 4))
  np.testing.assert_array_equal(targets, [0, 2] * (BATCH // 2))
  assert float(totals["loss_sum"]) == pytest.approx(
      sum(cross_entropy(pairs, t) for t in targets), rel=1e-5)
  # Accuracy of the classes summed over the sources: fake (e^4 + 1 against 2).
  assert int(totals["correct"]) == BATCH and int(totals["count"]) == BATCH
  _, totals = compiled_step(0.0)(state, steps.init_totals(), batch, jax.random.key(5))
  targets = np.asarray(base.pair_labels(jnp.ones(BATCH, jnp.int32), sources, 4))
  assert float(totals["loss_sum"]) == pytest.approx(
      sum(cross_entropy(pairs, t) for t in targets), rel=1e-5)
  assert int(totals["correct"]) == 0


def test_cached_features_train_on_their_own_labels():
  state = constant_state([1.0, 0.0])
  features = jnp.ones((BATCH, 5), jnp.float32)
  labels = jnp.array([classes.FAKE] * 3 + [classes.REAL] * (BATCH - 3), jnp.int32)
  step = jax.jit(functools.partial(steps.train_step, on_features=True))
  _, totals = step(state, steps.init_totals(), {"image": features, "label": labels},
                   jax.random.key(0))
  assert int(totals["correct"]) == 3 and int(totals["count"]) == BATCH
  assert float(totals["loss_sum"]) == pytest.approx(
      3 * cross_entropy([1.0, 0.0], 0) + (BATCH - 3) * cross_entropy([1.0, 0.0], 1),
      rel=1e-5)


def test_mean_metrics_divide_the_sums_by_the_count():
  totals = {"loss_sum": np.float32(6.0), "correct": np.int32(3), "count": np.int32(4),
            "first_nonfinite_step": np.int32(steps.NO_NONFINITE_STEP)}
  assert train._mean_metrics(totals) == (1.5, 0.75)  # pylint: disable=protected-access
  empty = jax.device_get(steps.init_totals())
  assert train._mean_metrics(empty) == (0.0, 0.0)  # pylint: disable=protected-access


def test_finished_runs_report_a_training_accuracy_of_whole_images(finished_tiny_run):
  # 4 steps of 16 images an epoch: each epoch's accuracy is hits out of 64.
  workdir, results = finished_tiny_run
  with open(os.path.join(workdir, "metrics.csv"), newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2
  for row in rows:
    hits = float(row["train_accuracy"]) * 64
    assert hits == pytest.approx(round(hits), abs=1e-6) and 0 <= hits <= 64
    assert float(row["train_loss"]) > 0
  assert results["train_accuracy"] == pytest.approx(float(rows[-1]["train_accuracy"]))
