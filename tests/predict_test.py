"""Tests for inference on files and folders, and for the evaluation reports."""

import csv
import os
import types

import numpy as np
import pytest
from PIL import Image

from fakeface_jax import classes
from fakeface_jax.data import datasets
from fakeface_jax.data import degradations
from fakeface_jax.data import input_pipeline
from fakeface_jax.evaluation import split_reports
from fakeface_jax.serving import inference
from fakeface_jax.serving import predict
from fakeface_jax.serving import scoring


@pytest.fixture(scope="module")
def run_dir(learned_run):
  return learned_run[0]


def write_image(path, array, **save_kwargs):
  Image.fromarray(array).save(path, **save_kwargs)


def test_predict_gives_one_row_per_file_and_errors_only_for_bad_ones(run_dir, tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "in"
  (folder / "sub").mkdir(parents=True)
  write_image(folder / "rgba.png", rng.integers(0, 256, (40, 50, 4), dtype=np.uint8))
  write_image(folder / "sub" / "gray.jpg", rng.integers(0, 256, (64, 64), dtype=np.uint8))
  write_image(folder / "rgb.jpg", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
  (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
  (folder / "notes.txt").write_text("ignored: not an image extension")
  output = tmp_path / "preds.csv"
  predictor = inference.load_run(run_dir)
  rows = scoring.predict_files(predictor, inference.find_images([str(folder)]))
  predict.write_rows(rows, str(output), "csv")
  with open(output) as f:
    read = list(csv.DictReader(f))
  assert [os.path.basename(r["path"]) for r in read] == [
      "corrupt.jpg", "rgb.jpg", "rgba.png", "gray.jpg"]
  for row in read:
    if row["path"].endswith("corrupt.jpg"):
      assert row["error"] and row["p_fake"] == "" and row["prediction"] == ""
    else:
      assert row["error"] == "" and 0.0 <= float(row["p_fake"]) <= 1.0
      assert row["prediction"] == ("fake" if float(row["p_fake"]) >= predictor.threshold
                                   else "real")


def test_predict_agrees_with_the_evaluation_report(run_dir, tmp_path):
  predictor = inference.load_run(run_dir)
  builder = datasets.prepare(predictor.config.data)
  source = datasets.data_source(builder, "test")
  folder = tmp_path / "test_split"
  labels = []
  for i in range(len(source)):
    record = source[i]
    name = classes.NAMES[record["label"]]
    os.makedirs(folder / name, exist_ok=True)
    (folder / name / f"{i:04d}.jpg").write_bytes(record["image"])
    labels.append(record["label"])
  rows = scoring.predict_files(predictor, inference.find_images([str(folder)]))
  by_file = {os.path.relpath(r["path"], folder): r for r in rows}
  ordered = [by_file[os.path.join(classes.NAMES[l], f"{i:04d}.jpg")]
             for i, l in enumerate(labels)]
  # The split as training decoded it, scored by evaluate: the same images as the files.
  split = split_reports.load_eval_data(predictor.config)["test"]
  report = split_reports.split_report(predictor, split, predictor.threshold)
  # The expected figures are counted from predict's rows, not recomputed by the metrics
  # code under test: rows are true classes, columns predicted ones, fake first.
  counts = np.zeros((2, 2), int)
  for label, row in zip(labels, ordered):
    counts[label, classes.NAMES.index(row["prediction"])] += 1
  assert report["confusion_matrix"] == counts.tolist()
  assert report["accuracy"] == pytest.approx(np.trace(counts) / len(labels))
  assert report["count"] == len(labels) and counts[0, 0] > counts[0, 1]
  assert report["warned"] == sum(bool(r["warnings"]) for r in rows)


def test_split_report_gives_each_difficulty_then_the_real_images():
  # "Images" that are their own P(fake), under a predictor that says so.
  split = input_pipeline.ArraySplit(
      images=np.array([0.9, 0.2, 0.8, 0.1, 0.7]), labels=np.array([0, 0, 0, 1, 1]),
      difficulty=np.array(["hard", "easy", "mid", "none", "none"]))
  predictor = types.SimpleNamespace(score=lambda images, tables: (images, None))
  report = split_reports.split_report(predictor, split, threshold=0.5)
  assert list(report["groups"].items()) == [
      ("easy", {"count": 1, "accuracy": 0.0}), ("mid", {"count": 1, "accuracy": 1.0}),
      ("hard", {"count": 1, "accuracy": 1.0}), ("real", {"count": 2, "accuracy": 0.5})]


def test_robustness_report_has_one_row_per_degradation(run_dir):
  predictor = inference.load_run(run_dir)
  data = split_reports.load_eval_data(predictor.config)
  rows = split_reports.robustness_report(predictor, data["test"], predictor.threshold, seed=0)
  assert [r["degradation"] for r in rows] == list(degradations.DEGRADATIONS)
  clean = split_reports.split_report(predictor, data["test"], predictor.threshold)
  assert rows[0]["degradation"] == "clean"
  assert rows[0]["accuracy"] == clean["accuracy"] and rows[0]["roc_auc"] == clean["roc_auc"]
  # The built-in fakes' traces are what blur erases (the README's table).
  blurred = rows[[r["degradation"] for r in rows].index("blur2")]
  assert blurred["roc_auc"] < clean["roc_auc"] - 0.1
