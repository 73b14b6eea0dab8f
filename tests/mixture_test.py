"""Tests of data mixtures: weighted, deterministic, resumable sampling and per-source reports."""

import csv
import json

import jax
import numpy as np
import pytest

from conftest import make_tiny_config
from fakeface_jax import config_checks
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax import errors
from fakeface_jax.evaluation import split_reports
from fakeface_jax.evaluation import metrics
from fakeface_jax import rundir
from fakeface_jax.serving import inference
from fakeface_jax.training import checkpointing
from fakeface_jax.training import train


def _split(n: int, value: int) -> input_pipeline.ArraySplit:
  """n 2x2 images all of pixel value `value` (which tells the source apart)."""
  return input_pipeline.ArraySplit(
      np.full((n, 2, 2, 1), value, np.uint8), (np.arange(n) % 2).astype(np.int32),
      np.array([f"{value}_{i}" for i in range(n)]), np.array(["none"] * n))


def _mixed(weights=(0.8, 0.2)) -> mixture.MixedSplit:
  return mixture.MixedSplit([_split(30, 1), _split(70, 2)], ["small", "large"],
                            np.asarray(weights))


def test_sampling_follows_the_weights_not_the_sizes():
  data = _mixed()
  drawn = np.concatenate([b["image"][:, 0, 0, 0] for epoch in range(5)
                          for b in input_pipeline.train_batches(data, 10, seed=0,
                                                                epoch=epoch)])
  # 500 draws at weight 0.8 for a source with 30 of the 100 images: 0.8 +- 0.054 (3 sd).
  assert abs(np.mean(drawn == 1) - 0.8) < 0.054
  # Within a source every image comes up before any comes up again.
  order = data.epoch_order(seed=0, epoch=0)
  small = order[order < 30]
  assert sorted(small[:30]) == list(range(30))


def test_mixed_batches_are_a_function_of_seed_epoch_and_step():
  data = _mixed((0.5, 0.5))
  whole = list(input_pipeline.train_batches(data, 10, seed=3, epoch=2))
  resumed = list(input_pipeline.train_batches(data, 10, seed=3, epoch=2, start_step=4))
  assert len(whole) == 10
  for a, b in zip(whole[4:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  other_epoch = next(iter(input_pipeline.train_batches(data, 10, seed=3, epoch=3)))
  assert not np.array_equal(whole[0]["image"], other_epoch["image"])


def test_mixed_batches_carry_each_images_source_and_single_datasets_none():
  batch = next(iter(input_pipeline.train_batches(_mixed((0.5, 0.5)), 20, seed=0, epoch=0)))
  np.testing.assert_array_equal(batch["source"], batch["image"][:, 0, 0, 0] - 1)
  assert set(batch["source"]) == {0, 1}
  single = next(iter(input_pipeline.train_batches(_split(10, 1), 10, seed=0, epoch=0)))
  assert "source" not in single


def test_mixed_split_reads_each_source_and_names_it():
  data = _mixed()
  assert len(data) == 100 and list(data.sources[[0, 29, 30, 99]]) == [
      "small", "small", "large", "large"]
  np.testing.assert_array_equal(data.take(np.array([99, 0, 31]))[:, 0, 0, 0], [2, 1, 2])
  assert data.paths[30] == "large:2_0"
  p_fake = np.where(data.labels == 0, 0.9, 0.1)
  p_fake[:30] = 0.5  # The small source scored at chance, the large one perfectly.
  per_source = metrics.per_source_metrics(data, p_fake, threshold=0.6)
  assert per_source["large"]["accuracy"] == 1.0 and per_source["large"]["count"] == 70
  assert per_source["small"]["accuracy"] == 0.5


def _mixture_config(data_dir):
  config = make_tiny_config(data_dir)
  config.data.mixture.easy = {"name": "synthetic", "weight": 3.0}
  config.data.mixture.hard = {"name": "synthetic", "weight": 1.0,
                              "synthetic": {"difficulty": 1.0, "seed": 1}}
  return config


def test_training_on_a_mixture_reports_each_source(data_dir, tmp_path):
  config = _mixture_config(data_dir)
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  for role in ("test", "validation"):
    per_source = results[f"{role}_per_source"]
    assert list(per_source) == ["easy", "hard"]
    assert sum(m["count"] for m in per_source.values()) == results[f"num_{role}"]
  # The sources really are two datasets: the hard one's images are other images.
  data = input_pipeline.load_data(config)
  easy, hard = data["test"].parts
  assert easy.images.shape == hard.images.shape
  assert not np.array_equal(easy.images, hard.images)
  # The threshold weighs each source's balanced accuracy as the draw weighs the source
  # (3:1), in training and in evaluate alike.
  predictor = inference.load_run(str(tmp_path / "run"))
  validation = data["validation"]
  p_fake = predictor.p_fake(*validation.take_batch(np.arange(len(validation))))
  expected = metrics.best_threshold(validation.labels, p_fake,
                                    validation.source_indices, [0.75, 0.25])
  assert results["threshold"] == pytest.approx(expected[0])
  with open(tmp_path / "run" / rundir.THRESHOLD_JSON, encoding="utf-8") as f:
    recorded = json.load(f)
  assert recorded["balanced_accuracy"] == pytest.approx(expected[1])
  assert expected[1] != pytest.approx(metrics.best_threshold(validation.labels, p_fake)[1])
  assert split_reports.choose_threshold(predictor, validation) == pytest.approx(expected)
  # So is the best checkpoint chosen: by the sources' accuracies (at 0.5) weighted 3:1,
  # which here differ from those of all images pooled.
  with open(tmp_path / "run" / rundir.METRICS_CSV, newline="", encoding="utf-8") as f:
    rows = {int(row["step"]): row for row in csv.DictReader(f)}
  assert any(row["val_weighted_accuracy"] != row["val_accuracy"] for row in rows.values())
  checkpoints = tmp_path / "run" / rundir.CHECKPOINTS_DIR
  for step in checkpointing.usable_steps(str(tmp_path / "run")):
    with open(checkpoints / str(step) / checkpointing.METRICS_FILE, encoding="utf-8") as f:
      saved = json.load(f)[checkpointing.BEST_METRIC]
    assert saved == pytest.approx(float(rows[step]["val_weighted_accuracy"]))
  at_half = metrics.per_source_metrics(validation, p_fake)
  assert float(rows[results["best_step"]]["val_weighted_accuracy"]) == pytest.approx(
      0.75 * at_half["easy"]["accuracy"] + 0.25 * at_half["hard"]["accuracy"])


def test_a_mixture_thresholds_on_its_sources_and_a_single_dataset_on_its_images():
  data = _mixed()
  groups = mixture.threshold_groups(data)
  np.testing.assert_array_equal(groups["groups"], [0] * 30 + [1] * 70)
  np.testing.assert_array_equal(groups["group_weights"], [0.8, 0.2])
  assert mixture.threshold_groups(data.parts[0]) == {}


def test_a_resumed_mixture_run_ends_where_an_uninterrupted_one_does(data_dir, tmp_path):
  config = _mixture_config(data_dir)
  train.train_and_evaluate(config, str(tmp_path / "whole"))
  config.num_epochs = 1
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  config.num_epochs = 2
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  whole, resumed = (inference.load_run(str(tmp_path / name), "last").params
                    for name in ("whole", "resumed"))
  jax.tree.map(np.testing.assert_array_equal, whole, resumed)


@pytest.mark.parametrize("source, message", [
    ({"name": "imagenet"}, "unknown config.data.mixture.bad.name 'imagenet'"),
    ({"name": "synthetic", "colour": 1}, "config.data.mixture.bad.colour is not a "
                                         "config.data key"),
    ({"name": "synthetic", "weight": -1.0}, "weights must be non-negative"),
])
def test_bad_mixtures_are_refused_before_any_data_is_read(data_dir, source, message):
  config = make_tiny_config(data_dir)
  config.data.mixture.bad = source
  with pytest.raises(errors.ConfigError, match=message):
    config_checks.check_config(config)
