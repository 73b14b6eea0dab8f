"""Learning-curve summaries: grouping by dataset, model and size, spread over seeds."""

import json

import pytest

from fakeface_jax.experiments import learning_curve


def point(model, images, seed, accuracy, auc, dataset="lfw_faceswap"):
  return {"images": images, "test_accuracy": accuracy, "test_roc_auc": auc,
          "curve": {"dataset": dataset, "model": model, "train_size": images, "seed": seed}}


ROWS = [point("mlp", 250, 0, 0.6, 0.7), point("mlp", 250, 1, 0.7, 0.8),
        point("mlp", 250, 2, 0.8, 0.6), point("mlp", 9538, 0, 0.9, 0.95),
        point("cnn", 250, 0, 0.5, 0.5),
        {"images": 64, "test_accuracy": 0.9, "curve": None}]  # Not a curve point.


def test_summary_is_the_mean_and_range_over_seeds_per_model_and_size():
  summary = learning_curve.summarise(ROWS)
  assert [(e["model"], e["train_images"], e["seeds"]) for e in summary] == [
      ("cnn", 250, 1), ("mlp", 250, 3), ("mlp", 9538, 1)]
  mlp = summary[1]
  assert mlp["test_accuracy_mean"] == pytest.approx(0.7)
  assert (mlp["test_accuracy_min"], mlp["test_accuracy_max"]) == (0.6, 0.8)
  assert mlp["test_roc_auc_mean"] == pytest.approx(0.7)


def test_write_gives_a_table_per_metric_a_figure_and_json(tmp_path):
  paths = learning_curve.write(ROWS, str(tmp_path))
  assert [p.rsplit(".", 1)[1] for p in paths] == ["json", "md", "png"]
  with open(paths[0]) as f:
    assert len(json.load(f)) == 3
  table = (tmp_path / "learning_curve.md").read_text()
  assert "| 250 | 0.500 | 0.700 (0.600-0.800) |" in table
  assert "| 9538 | - | 0.900 |" in table
  assert learning_curve.write(ROWS[-1:], str(tmp_path / "none")) == []
