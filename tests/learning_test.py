"""A config that can learn must learn, and every way of reading the run must agree.

One run of `conftest.make_learning_config` (the built-in data's obvious traces, 12 short
epochs) is shared by the session. It reaches test accuracy 0.98 and AUC 1.0 on this
machine; the floors below leave room for other CPUs and JAX builds while staying far
from chance (0.5), so a detector that learned the labels backwards, or that is fed
differently at inference than in training, fails here.
"""

import json
import os

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fakeface_jax import classes
from fakeface_jax.data import datasets
from fakeface_jax.data import input_pipeline
from fakeface_jax.evaluation import split_reports
from fakeface_jax.evaluation import metrics
from fakeface_jax import rundir
from fakeface_jax.serving import inference
from fakeface_jax.serving import scoring
from fakeface_jax.training import sharding
from fakeface_jax.training import steps

MIN_ACCURACY = 0.85
MIN_AUC = 0.95


def fake_over_real_auc(p_fake: np.ndarray, labels: np.ndarray) -> float:
  """AUC by its definition, pair by pair: how often a fake outscores a real (ties half)."""
  fakes, reals = p_fake[labels == 0][:, None], p_fake[labels == 1][None, :]
  return float(np.mean((fakes > reals) + 0.5 * (fakes == reals)))


@pytest.fixture(scope="module")
def test_images(learned_run):
  """The run's test split: uint8 arrays as training decodes them, labels, record bytes."""
  workdir, _ = learned_run
  config = inference.load_run(workdir).config
  source = datasets.data_source(datasets.prepare(config.data), "test")
  records = [source[i] for i in range(len(source))]
  split = input_pipeline.load_data(config, cache="memory")["test"]
  return split, np.array([r["label"] for r in records]), [r["image"] for r in records]


def test_training_reaches_a_stated_accuracy_well_above_chance(learned_run):
  _, results = learned_run
  assert results["test_accuracy"] >= MIN_ACCURACY, results
  assert results["val_accuracy"] >= MIN_ACCURACY, results


def test_evaluate_reports_the_learned_accuracy_and_auc(learned_run, test_images):
  workdir, results = learned_run
  split, labels, _ = test_images
  predictor = inference.load_run(workdir)
  report = split_reports.split_report(predictor, split, predictor.threshold)
  assert report["accuracy"] >= MIN_ACCURACY and report["roc_auc"] >= MIN_AUC, report
  # At 0.5, the report's accuracy is the one training measured with argmax.
  at_half = split_reports.split_report(predictor, split, 0.5)
  assert at_half["accuracy"] == pytest.approx(results["test_accuracy"])
  p_fake = predictor.p_fake(split.images)
  assert report["roc_auc"] == pytest.approx(fake_over_real_auc(p_fake, labels))


def test_predict_on_files_reaches_the_learned_accuracy(learned_run, test_images, tmp_path):
  workdir, _ = learned_run
  _, labels, encoded = test_images
  paths = []
  for i, (label, data) in enumerate(zip(labels, encoded)):
    path = tmp_path / f"{i:04d}.jpg"
    path.write_bytes(data)
    paths.append(str(path))
  rows = scoring.predict_files(inference.load_run(workdir), paths)
  assert [r["path"] for r in rows] == paths and not any(r["error"] for r in rows)
  names = np.array(classes.NAMES)[labels]
  accuracy = np.mean([r["prediction"] == name for r, name in zip(rows, names)])
  p_fake = np.array([r["p_fake"] for r in rows])
  assert accuracy >= MIN_ACCURACY
  assert fake_over_real_auc(p_fake, labels) >= MIN_AUC


def test_training_and_inference_feed_the_model_identical_arrays(learned_run, test_images):
  workdir, _ = learned_run
  split, _, encoded = test_images
  predictor = inference.load_run(workdir)
  decoded = np.stack([predictor.decode(data)[0] for data in encoded])
  np.testing.assert_array_equal(decoded, split.images)
  # The training loop's own evaluation (steps.eval_step) and the predictor, same weights.
  mesh = sharding.make_mesh()
  compiled_eval = jax.jit(lambda params, batch: steps.eval_step(
      params, batch, apply_fn=steps.model_apply_fn(predictor.model)))
  trained = steps.evaluate(compiled_eval, predictor.params, split, 16,
                           NamedSharding(mesh, P("data")))
  np.testing.assert_allclose(predictor.p_fake(decoded), trained["p_fake"], atol=1e-6)


def test_best_checkpoint_threshold_and_metrics_log_agree(learned_run):
  workdir, results = learned_run
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    val_accuracy = {row["step"]: row["val_accuracy"] for row in map(json.loads, f)}
  with open(os.path.join(workdir, rundir.THRESHOLD_JSON)) as f:
    saved_threshold = json.load(f)
  predictor = inference.load_run(workdir, "best")
  assert len(set(val_accuracy.values())) > 1  # Otherwise any step would be "best".
  assert val_accuracy[predictor.step] == max(val_accuracy.values())
  assert results["best_step"] == saved_threshold["checkpoint_step"] == predictor.step

  # The loaded weights are that step's: they reproduce the validation accuracy logged
  # for it, and the threshold is the one that validation split gives them.
  validation = input_pipeline.load_data(predictor.config, cache="memory")["validation"]
  p_fake = predictor.p_fake(validation.images)
  assert np.mean((p_fake < 0.5) == validation.labels) == pytest.approx(
      val_accuracy[predictor.step])
  threshold, balanced = metrics.best_threshold(validation.labels, p_fake)
  assert predictor.threshold == saved_threshold["threshold"] == pytest.approx(threshold)
  assert saved_threshold["balanced_accuracy"] == pytest.approx(balanced)
