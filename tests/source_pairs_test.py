"""Heads of (source, class) pairs for data mixtures: merging, labels, training, checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import general
from fakeface_jax import config_checks
from fakeface_jax import errors
from fakeface_jax import models
from fakeface_jax.models import base
from fakeface_jax.training import steps


def test_merged_pairs_give_each_class_its_probability_summed_over_the_sources():
  logits = jax.random.normal(jax.random.key(0), (5, 3 * base.NUM_CLASSES))
  merged = jax.nn.softmax(base.merge_sources(logits))
  by_source = jax.nn.softmax(logits).reshape(5, 3, base.NUM_CLASSES).sum(1)
  np.testing.assert_allclose(merged, by_source, rtol=1e-5)
  two = logits[:, :base.NUM_CLASSES]
  np.testing.assert_allclose(base.merge_sources(two), two, rtol=1e-6)


def test_pair_labels_index_each_images_source_and_class():
  labels, sources = jnp.array([0, 1, 1, 0]), jnp.array([2, 0, 1, 1])
  np.testing.assert_array_equal(base.pair_labels(labels, sources, 6), [4, 1, 3, 2])
  np.testing.assert_array_equal(base.pair_labels(labels, None, base.NUM_CLASSES), labels)


def _flipping_sources(n=256, seed=0):
  """Features where what tells fake from real flips between two sources: feature 0's
  sign is the label in source 0 and its opposite in source 1, and feature 1 is the
  source. Far from any line: no linear head of the two classes separates them."""
  rng = np.random.default_rng(seed)
  sources = rng.integers(0, 2, n).astype(np.int32)
  labels = rng.integers(0, 2, n).astype(np.int32)
  sign = np.where(labels == sources, 1.0, -1.0)
  features = np.stack([sign, 2.0 * sources - 1.0], 1) + 0.2 * rng.normal(size=(n, 2))
  features = np.concatenate([features, rng.normal(size=(n, 6))], 1).astype(np.float32)
  return {"image": features, "label": labels, "source": sources}


def _head_accuracy(num_sources):
  model = models.CooccurrenceClassifier(num_sources=num_sources)
  batch = jax.tree.map(jnp.asarray, _flipping_sources())
  state = steps.create_train_state(jax.random.key(0), model, (8,), optax.adam(0.05),
                                   init_inputs=batch["image"], on_features=True)
  step = jax.jit(lambda s, t: steps.train_step(s, t, batch, jax.random.key(1),
                                                on_features=True))
  for _ in range(200):
    state, totals = step(state, steps.init_totals())
  held_out = jax.tree.map(jnp.asarray, _flipping_sources(seed=1))
  out = steps.eval_step(state.params, held_out, apply_fn=state.apply_fn, on_features=True)
  assert out["probs"].shape == (256, base.NUM_CLASSES)
  return float(jnp.mean(jnp.argmax(out["probs"], -1) == held_out["label"]))


def test_a_head_of_source_pairs_learns_a_cue_that_flips_between_sources():
  assert _head_accuracy(num_sources=2) > 0.95
  assert _head_accuracy(num_sources=1) < 0.8


def test_the_pairs_train_but_evaluate_as_the_two_classes():
  model = models.CooccurrenceClassifier(num_sources=3)
  features = jax.random.normal(jax.random.key(0), (4, 10))
  params = model.init(jax.random.key(1), features, method="head")
  pairs = model.apply(params, features, train=True, method="head")
  assert pairs.shape == (4, 3 * base.NUM_CLASSES)
  np.testing.assert_allclose(model.apply(params, features, method="head"),
                             base.merge_sources(pairs), rtol=1e-6)
  # The features, and so their cache, do not depend on the head.
  assert model.feature_settings() == models.CooccurrenceClassifier().feature_settings()


@pytest.mark.parametrize("num_sources, message", [
    (2, "config.model.num_sources=2 needs a data mixture of 2 sources; "
        "config.data.mixture has 6"),
    (0, "num_sources must be at least 1, got 0"),
])
def test_pairs_that_do_not_match_the_mixture_are_refused_before_any_data_is_read(
    num_sources, message):
  config = general.get_config()
  config.model.num_sources = num_sources
  with pytest.raises(errors.ConfigError, match=message):
    config_checks.check_config(config)
