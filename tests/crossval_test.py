"""Tests of k-fold cross-validation: folds, their summary, resuming, and refusals."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import make_ciplab
from fakeface_jax import errors
from fakeface_jax.experiments import crossval
from fakeface_jax import rundir


def ciplab_config(tiny_config, root):
  config = tiny_config
  config.data.name = "ciplab"
  config.data.manual_dir = str(root)
  config.data.validation_fraction = 0.25
  config.batch_size = config.eval_batch_size = 8
  config.num_epochs = 1
  return config


def manifest_roles(fold_dir):
  roles = {}
  with open(os.path.join(fold_dir, rundir.MANIFEST_CSV)) as f:
    for row in csv.DictReader(f):
      roles.setdefault(row["role"], set()).add(row["path"])
  return roles


@pytest.mark.slow
def test_cross_validation_holds_out_every_image_once_and_resumes(tiny_config, tmp_path):
  make_ciplab(tmp_path / "download", num_real=16, fakes_per_difficulty=8, size=32)
  config = ciplab_config(tiny_config, tmp_path / "download")
  workdir = tmp_path / "cv"
  summary = crossval.cross_validate(config, str(workdir), num_folds=2)

  folds = [manifest_roles(workdir / f"fold_{k}") for k in range(2)]
  assert not folds[0]["test"] & folds[1]["test"]
  assert len(folds[0]["test"] | folds[1]["test"]) == 40
  for roles in folds:
    assert not roles["validation"] & roles["test"]
    assert not roles["train"] & (roles["validation"] | roles["test"])

  assert summary["num_folds"] == 2 and summary["num_images"] == 40
  accuracies = [row["accuracy"] for row in summary["folds"]]
  assert summary["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
  assert summary["summary"]["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
  assert list(summary["summary"]) == ["accuracy", "balanced_accuracy", "roc_auc",
                                      "accuracy_easy", "accuracy_mid", "accuracy_hard",
                                      "accuracy_real"]
  with open(workdir / "crossval.json") as f:
    assert json.load(f) == summary
  assert (workdir / "crossval.md").read_text().startswith(
      "2-fold cross-validation, 40 held-out images in all")
  assert (workdir / "crossval.png").stat().st_size > 0

  # A rerun finds both folds finished: nothing is trained again, the summary is the same.
  metrics_csv = workdir / "fold_1" / "metrics.csv"
  before = metrics_csv.read_text()
  assert crossval.cross_validate(config, str(workdir), num_folds=2) == summary
  assert metrics_csv.read_text() == before


@pytest.mark.slow
def test_a_mixture_folds_its_source_without_splits_and_keeps_the_others(tiny_config,
                                                                      tmp_path):
  make_ciplab(tmp_path / "download", num_real=16, fakes_per_difficulty=8, size=32)
  config = ciplab_config(tiny_config, tmp_path / "download")
  config.data.mixture.ciplab = {"name": "ciplab", "manual_dir": str(tmp_path / "download")}
  config.data.mixture.synthetic = {"name": "synthetic"}
  config.lock()  # As main.py's flags leave it.
  assert crossval.folded_sources(config) == ["ciplab"]
  workdir = tmp_path / "cv"
  summary = crossval.cross_validate(config, str(workdir), num_folds=2)

  folds = [manifest_roles(workdir / f"fold_{k}") for k in range(2)]
  held_out = [{p for p in roles["test"] if p.startswith("ciplab:")} for roles in folds]
  assert not held_out[0] & held_out[1] and len(held_out[0] | held_out[1]) == 40
  synthetic = [{p for p in roles["test"] if p.startswith("synthetic:")} for roles in folds]
  assert synthetic[0] == synthetic[1] and synthetic[0]  # Its own test split, both folds.
  assert summary["num_images"] == 40  # The summary is of the folded source alone.


def test_datasets_with_their_own_splits_and_too_few_folds_are_refused(tiny_config,
                                                                      tmp_path):
  with pytest.raises(errors.ConfigError,
                     match="dataset 'synthetic' has its own test and validation split"):
    crossval.cross_validate(tiny_config, str(tmp_path / "cv"), num_folds=5)
  with pytest.raises(errors.ConfigError, match="--folds must be at least 2, got 1"):
    crossval.cross_validate(tiny_config, str(tmp_path / "cv"), num_folds=1)
  tiny_config.data.mixture.synthetic = {"name": "synthetic"}
  with pytest.raises(errors.ConfigError, match="every source of config.data.mixture "
                     "has its own validation or test split"):
    crossval.cross_validate(tiny_config, str(tmp_path / "cv"), num_folds=2)
  assert not (tmp_path / "cv").exists()


def test_summary_averages_a_group_over_the_folds_that_have_it():
  def report(accuracy, groups):
    return {"count": 10, "threshold": 0.5, "accuracy": accuracy, "balanced_accuracy": accuracy,
            "roc_auc": accuracy, "groups": {g: {"count": 2, "accuracy": a} for g, a in groups}}
  summary = crossval.summarise([report(0.6, [("hard", 0.5), ("real", 0.7)]),
                                report(0.8, [("real", 0.9)]),
                                report(0.7, [("hard", 1.0), ("real", 0.8)])])
  assert summary["summary"]["accuracy"] == pytest.approx({"mean": 0.7, "std": 0.1})
  assert summary["summary"]["accuracy_hard"] == pytest.approx(
      {"mean": 0.75, "std": np.std([0.5, 1.0], ddof=1)})
  assert summary["num_images"] == 30


def test_summary_gives_each_folded_source_where_there_are_several():
  def report(a, b):
    return {"count": 10, "threshold": 0.5, "accuracy": (a + b) / 2, "balanced_accuracy": a,
            "roc_auc": a, "sources": {"ciplab": {"accuracy": a, "roc_auc": a + 0.1},
                                      "ciplab_resaved": {"accuracy": b, "roc_auc": b}}}
  summary = crossval.summarise([report(0.6, 0.5), report(0.8, 0.5)])["summary"]
  assert summary["accuracy_ciplab"] == pytest.approx({"mean": 0.7,
                                                      "std": np.std([0.6, 0.8], ddof=1)})
  assert summary["roc_auc_ciplab"]["mean"] == pytest.approx(0.8)
  assert summary["accuracy_ciplab_resaved"] == pytest.approx({"mean": 0.5, "std": 0.0})
  one = crossval.summarise(2 * [{"count": 10, "threshold": 0.5, "accuracy": 0.6,
                                 "balanced_accuracy": 0.6, "roc_auc": 0.6,
                                 "sources": {"ciplab": {"accuracy": 0.6, "roc_auc": 0.6}}}])
  assert "accuracy_ciplab" not in one["summary"]
