"""The leave-one-source-out protocol: what each run trains on, and what it is scored on."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import make_tiny_config
from fakeface_jax.data import mixture
from fakeface_jax import errors
from fakeface_jax.experiments import leave_out
from fakeface_jax import rundir
from tools import leave_out_figure


def _mixture_config(data_dir):
  """Two sources that read different files, one of them twice (as a re-saved copy is)."""
  config = make_tiny_config(data_dir)
  config.data.mixture.easy = {"name": "synthetic", "weight": 1.0}
  config.data.mixture.easy_again = {"name": "synthetic", "weight": 1.0}
  config.data.mixture.hard = {"name": "synthetic", "weight": 1.0,
                              "synthetic": {"difficulty": 1.0, "seed": 1}}
  return config


def _training_sources(run_dir):
  with open(os.path.join(run_dir, rundir.MANIFEST_CSV), newline="", encoding="utf-8") as f:
    return {row["path"].split(":")[0] for row in csv.DictReader(f)
            if row["role"] in ("train", "validation")}


def test_entries_that_read_the_same_files_are_one_source(data_dir):
  assert leave_out.source_groups(_mixture_config(data_dir)) == {
      "easy": ["easy", "easy_again"], "hard": ["hard"]}


def test_the_held_out_source_never_appears_in_its_runs_training_rows(data_dir, tmp_path):
  config = _mixture_config(data_dir)
  summary = leave_out.leave_one_source_out(config, str(tmp_path))
  assert _training_sources(leave_out.run_dir(str(tmp_path), "easy")) == {"hard"}
  assert _training_sources(leave_out.run_dir(str(tmp_path), "hard")) == {"easy", "easy_again"}
  assert [r["held_out"] for r in summary["rows"]] == ["easy", "hard"]
  for row in summary["rows"]:
    # Scored on the held-out source's training images: the tiny set's 64.
    assert row["count"] == 64
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["real_fpr"] <= 1
  assert summary["mean_roc_auc"] == pytest.approx(
      np.mean([r["roc_auc"] for r in summary["rows"]]))
  with open(tmp_path / "leave_out.json", encoding="utf-8") as f:
    assert json.load(f) == summary
  assert "| easy |" in (tmp_path / "leave_out.md").read_text()
  assert (tmp_path / "leave_out.png").stat().st_size > 0
  # The false-positive rate is of the held-out source's real images.
  report = leave_out.held_out_report(leave_out.run_dir(str(tmp_path), "hard"),
                                     mixture.source_config(config, "hard"))
  real_called_fake = report["confusion_matrix"][1][0]
  assert report["real_false_positive_rate"] == pytest.approx(
      real_called_fake / report["count_real"])
  assert summary["rows"][1]["real_fpr"] == report["real_false_positive_rate"]


def test_a_logit_pair_per_source_keeps_one_per_source_left(data_dir):
  config = _mixture_config(data_dir)
  with config.unlocked():
    config.model.num_sources = 3
  assert leave_out.without(config, ["easy", "easy_again"]).model.num_sources == 1
  assert list(leave_out.without(config, ["hard"]).data.mixture) == ["easy", "easy_again"]
  # The config itself is left as it was.
  assert list(config.data.mixture) == ["easy", "easy_again", "hard"]


def test_one_dataset_or_one_source_cannot_be_left_out(data_dir):
  with pytest.raises(errors.ConfigError, match="at least two sources"):
    leave_out.check_protocol(make_tiny_config(data_dir))
  config = make_tiny_config(data_dir)
  config.data.mixture.easy = {"name": "synthetic", "weight": 1.0}
  config.data.mixture.easy_again = {"name": "synthetic", "weight": 2.0}
  with pytest.raises(errors.ConfigError, match="at least two sources"):
    leave_out.check_protocol(config)


def test_pseudo_fakes_only_trains_on_no_real_fake_and_scores_every_source(data_dir,
                                                                          tmp_path):
  config = _mixture_config(data_dir)
  config.data.mixture.hard.pseudo_fakes = {"kinds": ("nearest",)}
  summary = leave_out.pseudo_fakes_only(config, str(tmp_path))
  with open(tmp_path / leave_out.PSEUDO_ONLY / rundir.CONFIG_JSON, encoding="utf-8") as f:
    trained = json.load(f)["data"]["mixture"]
  # Every source's fakes were pseudo-fakes: all kinds where it named none.
  assert trained["easy"]["pseudo_fakes"]["kinds"] == list(leave_out.artifacts.PSEUDO_FAKE_KINDS)
  assert trained["hard"]["pseudo_fakes"]["kinds"] == ["nearest"]
  # Scored on the real fakes of each source's test images (the tiny set has 40).
  assert [(r["held_out"], r["count"]) for r in summary["rows"]] == [("easy", 40), ("hard", 40)]
  assert (tmp_path / "pseudo_only.md").read_text().startswith(
      "Trained on reals and pseudo-fakes alone")


def _written_table(workdir, aucs, title="Each source held out of training"):
  rows = [{"held_out": source, "count": 10, "accuracy": 0.5, "roc_auc": auc,
           "real_fpr": 0.1, "threshold": 0.5} for source, auc in aucs.items()]
  os.makedirs(workdir)
  leave_out.write({"title": title, "rows": rows, "scored_role": "train",
                   "mean_roc_auc": float(np.mean(list(aucs.values())))}, str(workdir))


def test_recipes_compare_per_held_out_source_whatever_their_row_order(tmp_path, monkeypatch):
  _written_table(tmp_path / "a", {"ciplab": 0.4, "faces140k": 0.6})
  _written_table(tmp_path / "b", {"faces140k": 0.9, "ciplab": 0.7})  # Rows swapped.
  summaries = leave_out_figure.read_summaries(
      [f"first={tmp_path / 'a'}", f"x=y={tmp_path / 'b'}"], leave_out.PREFIX)
  drawn = {}
  monkeypatch.setattr(leave_out.reporting, "plot_bars",
                      lambda labels, series, path, **kw: drawn.update(
                          labels=labels, series=series, goal=kw["goal"]) or path)
  leave_out.compare(summaries, str(tmp_path / "f.png"), goal=0.75)
  # A name may hold "=": the workdir is what follows the last one.
  assert drawn == {"labels": ["ciplab", "faces140k"], "goal": 0.75,
                   "series": {"first (mean 0.500)": [0.4, 0.6], "x=y (mean 0.800)": [0.7, 0.9]}}
  monkeypatch.undo()
  assert os.path.getsize(leave_out.compare(summaries, str(tmp_path / "f.png"))) > 0


def test_only_tables_of_one_kind_on_the_same_sources_compare(tmp_path):
  _written_table(tmp_path / "a", {"ciplab": 0.4, "faces140k": 0.6})
  _written_table(tmp_path / "b", {"ciplab": 0.4, "lfw_faceswap": 0.6})
  _written_table(tmp_path / "c", {"ciplab": 0.4, "faces140k": 0.6},
                 title="Trained on reals and pseudo-fakes alone")
  tables = {name: json.loads((tmp_path / name / "leave_out.json").read_text())
            for name in "abc"}
  for other in "bc":
    with pytest.raises(ValueError, match="only tables of one kind on the same sources"):
      leave_out.compare({"a": tables["a"], other: tables[other]}, str(tmp_path / "f.png"))
  with pytest.raises(SystemExit, match="is .* a finished run"):
    leave_out_figure.read_summaries([f"none={tmp_path / 'none'}"], leave_out.PREFIX)
