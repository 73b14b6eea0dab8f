"""The sweep runner: a tiny grid trains, tabulates, and a rerun trains nothing."""

import csv
import json
import os

import pytest

from fakeface_jax import config_files
from fakeface_jax.experiments import sweep
from fakeface_jax.training import train


def test_tiny_sweep_runs_tabulates_and_skips_finished_runs(tmp_path, data_dir, monkeypatch):
  grid = config_files.load_config("configs/sweeps/tiny.py")
  sets = {"data.data_dir": data_dir, "data.synthetic.difficulty": 0.0}
  rows = sweep.run_sweep(grid, str(tmp_path), sets)
  assert [r["run"] for r in rows] == ["mlp_gray_taper", "cnn"]
  assert rows[0]["node_structure"] == "taper" and rows[0]["grayscale"] is True
  # Measured columns come from each run's own results, not from the grid.
  for row in rows:
    with open(tmp_path / row["run"] / "test_metrics.json") as f:
      results = json.load(f)
    assert row["test_accuracy"] == results["test_accuracy"] is not None
    assert row["val_accuracy"] == results["val_accuracy"] is not None
    assert row["images"] == results["num_train"]
  assert rows[0]["images"] == 64 and rows[0]["epochs"] == 2
  for name in ("results.md", "results.csv", "overview.png"):
    assert os.path.getsize(tmp_path / name) > 0
  table = (tmp_path / "results.md").read_text()

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(train, "train_and_evaluate", no_training)
  again = sweep.run_sweep(grid, str(tmp_path), sets)
  assert again == rows
  assert (tmp_path / "results.md").read_text() == table
  with open(tmp_path / "results.csv") as f:
    assert [r["run"] for r in csv.DictReader(f)] == ["mlp_gray_taper", "cnn"]


def test_epoch_cap_and_batch_fitting_are_recorded(tmp_path, data_dir):
  run = {"name": "big", "config": "configs/default.py",
         "overrides": {"data.image_size": 32, "data.synthetic.num_train": 64,
                       "data.synthetic.num_validation": 32, "data.synthetic.num_test": 32,
                       "batch_size": 2000, "num_epochs": 800,
                       "data.data_dir": data_dir}}
  config, note = sweep.run_config(run, {}, max_epochs=3)
  assert config.num_epochs == 3 and note == "cut to 3 of 800 epochs"
  assert "used 64" in sweep.fit_batch_to_data(config) and config.batch_size == 64


def test_unknown_override_key_fails():
  run = {"name": "x", "config": "configs/default.py", "overrides": {"data.imagesize": 3}}
  with pytest.raises(KeyError, match="data.imagesize"):
    sweep.run_config(run, {}, None)


def test_study_grids_load_with_valid_configs():
  for path in ("configs/sweeps/study1.py", "configs/sweeps/study2.py",
               "configs/sweeps/learning_curve.py"):
    grid = config_files.load_config(path)
    assert grid.runs and len({r["name"] for r in grid.runs}) == len(grid.runs)
    for run in grid.runs:
      sweep.run_config(run, {"data.manual_dir": "/data"}, None)


def test_learning_curve_grid_has_three_seeds_below_2k_and_reads_valid_for_test():
  grid = config_files.load_config("configs/sweeps/learning_curve.py:lfw_faceswap,detector")
  points = [(r["curve"]["train_size"], r["curve"]["seed"]) for r in grid.runs]
  assert points == [(250, 0), (250, 1), (250, 2), (500, 0), (500, 1), (500, 2),
                    (1000, 0), (1000, 1), (1000, 2), (2000, 0), (4000, 0), ("all", 0)]
  config, _ = sweep.run_config(grid.runs[0], {}, None)
  assert config.data.train_examples_per_class == 125
  assert config.data.validation_fraction == 0.1
  # The detector reads lfw_faceswap at its native 224 px and JPEG quality 90.
  assert (config.data.image_size, config.model.jpeg_quality) == (224, 90)
  with pytest.raises(ValueError, match="unknown \\['imagenet'\\]"):
    config_files.load_config("configs/sweeps/learning_curve.py:imagenet")


def test_learning_curve_one_seed_keeps_every_size_with_seed_0_only():
  grid = config_files.load_config("configs/sweeps/learning_curve.py:140k,cnn,one_seed")
  assert [(r["curve"]["train_size"], r["curve"]["seed"]) for r in grid.runs] == [
      (250, 0), (500, 0), (1000, 0), ("all", 0)]
