"""Which checkpoint `best` and `last` load, with validation accuracies fixed by hand."""

import jax
import numpy as np
import optax
import pytest

from conftest import make_tiny_config
from fakeface_jax import models
from fakeface_jax.serving import inference
from fakeface_jax.training import checkpointing
from fakeface_jax.training import run_config
from fakeface_jax.training import steps

# Step -> validation accuracy: the best (step 2) is neither the first nor the last.
VAL_ACCURACY = {1: 0.6, 2: 0.9, 3: 0.7}


@pytest.fixture(scope="module")
def run_with_known_accuracies(tmp_path_factory):
  """A run directory whose step s holds the initial parameters plus s."""
  workdir = str(tmp_path_factory.mktemp("known"))
  config = make_tiny_config(str(tmp_path_factory.mktemp("unused_data")))
  size = config.data.image_size
  state = steps.create_train_state(jax.random.key(0), models.create_model(config.model),
                                   (size, size, 3), optax.adam(1e-3))
  run_config.write_config(workdir, config)
  checkpoints = checkpointing.Checkpoints(workdir, max_to_keep=1)
  for step, accuracy in VAL_ACCURACY.items():
    shifted = state.replace(params=jax.tree.map(lambda p, s=step: p + s, state.params))
    checkpoints.save(step, shifted, {"epoch": step, "step_in_epoch": 0, "totals": None},
                     metrics={checkpointing.BEST_METRIC: accuracy})
  checkpoints.wait_until_finished()
  assert checkpoints.best_step() == 2
  checkpoints.close()
  inference.write_threshold(workdir, 0.3, checkpoint_step=2, balanced_accuracy=0.9)
  return workdir, state.params


def first_leaf(params) -> np.ndarray:
  return np.asarray(jax.tree.leaves(params)[0])


def test_best_loads_the_highest_validation_accuracy_with_its_threshold(
    run_with_known_accuracies):
  workdir, initial = run_with_known_accuracies
  predictor = inference.load_run(workdir, "best")
  assert predictor.step == 2 and predictor.threshold == 0.3
  np.testing.assert_allclose(first_leaf(predictor.params), first_leaf(initial) + 2)


def test_last_loads_the_newest_step_with_the_default_threshold(run_with_known_accuracies):
  workdir, initial = run_with_known_accuracies
  predictor = inference.load_run(workdir, "last")
  # threshold.json was chosen for step 2, so step 3 falls back to 0.5.
  assert predictor.step == 3 and predictor.threshold == inference.DEFAULT_THRESHOLD
  np.testing.assert_allclose(first_leaf(predictor.params), first_leaf(initial) + 3)


def test_the_worst_step_is_not_kept(run_with_known_accuracies):
  workdir, _ = run_with_known_accuracies
  # max_to_keep=1 keeps the latest (3) and the best (2); step 1 is neither.
  checkpoints = checkpointing.Checkpoints(workdir)
  try:
    assert checkpoints.step_dirs() == [3, 2]
  finally:
    checkpoints.close()
