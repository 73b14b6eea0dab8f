"""End to end, each user path of a trained run, with the numbers it reports checked.

The commands' `main` functions run in this process (their flags stand in as a
namespace) on a copy of the session's learned run whose decision threshold is moved
off 0.5, to one image's P(fake) exactly, so that a figure computed at 0.5, or with `>`
where `>=` is meant, differs from the one asked for. Every expected number is
recomputed here from each image scored on its own.
"""

import csv
import json
import os
import shutil
import types

import numpy as np
import pytest
from absl import logging
from PIL import Image

from fakeface_jax import classes
from fakeface_jax import cli
from fakeface_jax.data import datasets
from fakeface_jax.data import image_decoding
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import jpeg_tables
from fakeface_jax.data import mixture
from fakeface_jax.evaluation import cross_dataset
from fakeface_jax.evaluation import evaluate
from fakeface_jax.evaluation import split_reports
from fakeface_jax.evaluation import metrics
from fakeface_jax import rundir
from fakeface_jax.serving import inference
from fakeface_jax.serving import predict
from fakeface_jax.serving import scoring

CORRUPT = b"\xff\xd8\xff\xe0 not really a jpeg"


@pytest.fixture(scope="module")
def records(learned_run):
  """The learned run's test-split records: (encoded JPEG, label)."""
  config = inference.load_run(learned_run[0]).config
  source = datasets.data_source(datasets.prepare(config.data), "test")
  return [(source[i]["image"], int(source[i]["label"])) for i in range(len(source))]


def write(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, records):
  """Folders as users bring them, unreadable files among the images:
  mixed/ (fake/ and real/ subfolders), phone/ (real images and a PNG), gan/ (fakes)."""
  root = str(tmp_path_factory.mktemp("user_folders"))
  fakes = [data for data, label in records if label == classes.FAKE]
  reals = [data for data, label in records if label == classes.REAL]
  for i, data in enumerate(fakes[:5]):
    write(os.path.join(root, "mixed", "fake", f"f{i}.jpg"), data)
  for i, data in enumerate(reals[:5]):
    write(os.path.join(root, "mixed", "real", f"r{i}.jpg"), data)
  write(os.path.join(root, "mixed", "fake", "f2_broken.jpg"), CORRUPT)
  write(os.path.join(root, "mixed", "real", "a_empty.jpg"), b"")
  for i, data in enumerate(reals[5:10]):
    write(os.path.join(root, "phone", f"IMG_{i}.JPG"), data)
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), np.uint8)).save(
      os.path.join(root, "phone", "screenshot.png"))
  for i, data in enumerate(fakes[5:10]):
    write(os.path.join(root, "gan", f"g{i}.jpg"), data)
  write(os.path.join(root, "gan", "g3_cut.jpg"), fakes[10][:200])
  return root


@pytest.fixture(scope="module")
def alone(learned_run, folders):
  """Each file's row when it is the only file predict scores (the run's own threshold)."""
  predictor = inference.load_run(learned_run[0])
  return {path: scoring.predict_files(predictor, [path])[0]
          for path in inference.find_images([folders])}


@pytest.fixture(scope="module")
def run_copy(learned_run, tmp_path_factory, alone):
  """(workdir, threshold): a copy of the learned run whose threshold.json holds the
  P(fake) of one of the folders' images, chosen so that 0.5 calls others otherwise."""
  workdir = str(tmp_path_factory.mktemp("run_copy") / "run")
  shutil.copytree(learned_run[0], workdir)
  p_fake = np.sort([r["p_fake"] for r in alone.values() if r["error"] is None])
  threshold = float(p_fake[len(p_fake) // 3])
  disagree = (p_fake >= threshold) != (p_fake >= 0.5)
  assert disagree.sum() >= 2, (threshold, p_fake)
  inference.write_threshold(workdir, threshold, inference.load_run(workdir).step, 0.9)
  assert inference.load_run(workdir).threshold == threshold
  return workdir, threshold


@pytest.fixture
def keep_verbosity():
  verbosity = logging.get_verbosity()
  yield
  logging.set_verbosity(verbosity)


def predict_flags(workdir, output, fmt="csv"):
  return types.SimpleNamespace(workdir=workdir, output=output, checkpoint="best",
                               format=fmt, batch_size=4, faces="off", annotate=None)


def test_predict_on_folders_with_bad_files_reports_each_file_and_exits_3(
    monkeypatch, capsys, keep_verbosity, folders, alone, run_copy, tmp_path):
  workdir, threshold = run_copy
  output = str(tmp_path / "preds.csv")
  missing = os.path.join(folders, "not_there.jpg")
  monkeypatch.setattr(predict, "FLAGS", predict_flags(workdir, output))
  status = predict.main(["fakeface-predict", os.path.join(folders, "mixed"),
                         os.path.join(folders, "phone"), missing])
  assert status == predict.SOME_FILES_FAILED == 3
  with open(output, newline="") as f:
    rows = list(csv.DictReader(f))
  paths = inference.find_images([os.path.join(folders, "mixed"),
                                 os.path.join(folders, "phone")]) + [missing]
  assert [r["path"] for r in rows] == paths and len(rows) == 5 + 5 + 2 + 5 + 1 + 1
  bad = {os.path.join(folders, "mixed", "fake", "f2_broken.jpg"),
         os.path.join(folders, "mixed", "real", "a_empty.jpg"), missing}
  assert {r["path"] for r in rows if r["error"]} == bad
  for row in rows:
    if row["path"] in bad:
      assert row["p_fake"] == row["prediction"] == row["format"] == ""
      continue
    own = alone[row["path"]]
    assert float(row["p_fake"]) == pytest.approx(own["p_fake"], abs=1e-6)
    assert row["p_fake"] == f"{own['p_fake']:.6f}"
    assert row["prediction"] == ("fake" if own["p_fake"] >= threshold else "real")
    assert (row["warnings"], row["format"], row["width"], row["height"], row["jpeg_grid"]) == (
        own["warnings"], own["format"], str(own["width"]), str(own["height"]),
        own["jpeg_grid"])
  good = [alone[p] for p in paths if p not in bad]
  fake = sum(r["p_fake"] >= threshold for r in good)
  warned = sum(bool(r["warnings"]) for r in good)
  summary = capsys.readouterr().err
  assert (f"{len(paths)} files: {fake} fake, {len(good) - fake} real, 3 unreadable, "
          f"{warned} with warnings (threshold {threshold:.3f}") in summary
  # The same folders without a bad file: every row scored, status 0.
  monkeypatch.setattr(predict, "FLAGS", predict_flags(workdir, str(tmp_path / "p.jsonl"),
                                                      "json"))
  assert predict.main(["fakeface-predict", os.path.join(folders, "phone")]) == cli.OK == 0
  with open(tmp_path / "p.jsonl") as f:
    lines = [json.loads(line) for line in f]
  phone = inference.find_images([os.path.join(folders, "phone")])
  assert [r["path"] for r in lines] == phone
  assert [r["p_fake"] for r in lines] == [round(alone[p]["p_fake"], 6) for p in phone]
  assert all(r["error"] is None for r in lines)
  # One bad file among good ones is enough for status 3.
  monkeypatch.setattr(predict, "FLAGS", predict_flags(workdir, str(tmp_path / "gan.csv")))
  assert predict.main(["fakeface-predict", os.path.join(folders, "gan")]) == 3


def by_hand(labels, p_fake, threshold):
  """Confusion matrix (rows true, columns predicted; fake first), accuracy, balanced
  accuracy, counted here from p_fake >= threshold."""
  labels = np.asarray(labels)
  predicted = np.where(np.asarray(p_fake) >= threshold, classes.FAKE, classes.REAL)
  counts = [[int(np.sum((labels == t) & (predicted == p))) for p in (0, 1)] for t in (0, 1)]
  recalls = [counts[c][c] / sum(counts[c]) for c in (0, 1) if sum(counts[c])]
  return counts, np.trace(counts) / len(labels), np.mean(recalls)


def test_evaluate_reports_the_split_at_the_threshold_it_is_given(run_copy):
  workdir, _ = run_copy
  predictor = inference.load_run(workdir)
  test = split_reports.load_eval_data(predictor.config)["test"]
  p_fake = predictor.p_fake(test.images)
  # At one test image's P(fake) exactly, with images between it and 0.5.
  threshold = float(np.sort(p_fake)[len(p_fake) // 4])
  assert np.any((p_fake >= threshold) != (p_fake >= 0.5))
  report = split_reports.split_report(predictor, test, threshold)
  counts, accuracy, balanced = by_hand(test.labels, p_fake, threshold)
  assert report["threshold"] == threshold
  assert report["confusion_matrix"] == counts
  assert report["accuracy"] == pytest.approx(accuracy)
  assert report["balanced_accuracy"] == pytest.approx(balanced)
  assert report["accuracy_at_0.5"] == pytest.approx(by_hand(test.labels, p_fake, 0.5)[1])
  assert report["accuracy"] != report["accuracy_at_0.5"]


def scores_itself():
  """A predictor whose "images" (N, 1) are their own P(fake), and their distance ten
  times that."""
  return types.SimpleNamespace(score=lambda images, tables: (images[:, 0],
                                                              10 * images[:, 0]))


def test_evaluate_reports_each_source_of_a_mixture_at_the_threshold_it_is_given():
  first = input_pipeline.ArraySplit(images=np.array([[0.9], [0.2], [0.1], [0.05]]),
                                    labels=np.array([0, 0, 1, 1]),
                                    difficulty=np.array(["none"] * 4))
  # The second source's fakes score 0.35-0.45: fake at 0.3, all called real at 0.5.
  second = input_pipeline.ArraySplit(images=np.array([[0.4], [0.35], [0.3], [0.2], [0.45]]),
                                     labels=np.array([0, 0, 1, 1, 0]),
                                     difficulty=np.array(["none"] * 5))
  data = mixture.MixedSplit([first, second], ["first", "second"], np.array([0.5, 0.5]))
  report = split_reports.split_report(scores_itself(), data, threshold=0.3)
  assert report["sources"]["first"] == {"count": 4, "accuracy": 0.75,
                                        "balanced_accuracy": 0.75, "roc_auc": 1.0}
  assert report["sources"]["second"] == {"count": 5, "accuracy": 0.8,
                                         "balanced_accuracy": 0.75, "roc_auc": 1.0}
  assert report["accuracy"] == pytest.approx(7 / 9)
  assert report["accuracy_at_0.5"] == pytest.approx(5 / 9)


def test_evaluate_counts_warnings_with_each_images_own_format_and_distance():
  # Image i has width i + 1 and P(fake) (i + 1) / 10, so its distance is i + 1.
  count = 7
  formats = [image_decoding.ImageFormat("JPEG", i + 1, 32, "RGB", 80,
                                        jpeg_tables.standard_tables(80))
             for i in range(count)]
  split = input_pipeline.ArraySplit(images=(np.arange(1, count + 1) / 10)[:, None],
                                    labels=np.arange(count) % 2, formats=formats)
  seen = []

  def warnings(image_format, distance):
    seen.append((image_format.width, distance))
    return ["size"] if image_format.width % 3 == 0 else []

  predictor = scores_itself()
  predictor.warnings = warnings
  report = split_reports.split_report(predictor, split, threshold=0.5)
  assert [(w, pytest.approx(d)) for w, d in seen] == [(i + 1, i + 1) for i in range(count)]
  assert report["warned"] == 2  # Widths 3 and 6.


def test_evaluate_command_chooses_its_threshold_on_validation_and_reports_at_it(
    monkeypatch, capsys, run_copy):
  workdir, saved = run_copy
  outdir = os.path.join(workdir, "reports", "here")  # --output_dir, made as needed.
  monkeypatch.setattr(evaluate, "FLAGS", types.SimpleNamespace(
      workdir=workdir, folder=[], shifts=["clean"], checkpoint="best", split="test",
      robustness=False, seed=0, output_dir=outdir))
  evaluate.main(["fakeface-evaluate"])
  assert not os.path.exists(os.path.join(workdir, rundir.EVALUATION_DIR, "test.json"))
  with open(os.path.join(outdir, "test.json")) as f:
    report = json.load(f)
  predictor = inference.load_run(workdir)
  data = split_reports.load_eval_data(predictor.config)
  chosen, _ = metrics.best_threshold(data["validation"].labels,
                                     predictor.p_fake(data["validation"].images))
  # Chosen anew on validation for the checkpoint evaluated, not threshold.json's.
  assert report["threshold"] == pytest.approx(chosen) and chosen != saved
  p_fake = predictor.p_fake(data["test"].images)
  counts, accuracy, balanced = by_hand(data["test"].labels, p_fake, report["threshold"])
  assert report["confusion_matrix"] == counts and report["count"] == len(p_fake)
  assert report["accuracy"] == pytest.approx(accuracy)
  assert report["balanced_accuracy"] == pytest.approx(balanced)
  at_half = by_hand(data["test"].labels, p_fake, 0.5)[1]
  assert report["accuracy_at_0.5"] == pytest.approx(at_half)
  assert (f"test accuracy: {at_half:.4f} at threshold 0.5, {accuracy:.4f} at the "
          f"validation threshold {report['threshold']:.4f}") in capsys.readouterr().out


def test_cross_dataset_report_on_mixed_folders_counts_each_folder_at_the_runs_threshold(
    monkeypatch, capsys, folders, alone, run_copy):
  workdir, threshold = run_copy
  specs = [os.path.join(folders, "mixed"), f"{os.path.join(folders, 'phone')}:real",
           f"generated={os.path.join(folders, 'gan')}:fake"]
  shifts = ["clean", "q90"]
  monkeypatch.setattr(evaluate, "FLAGS", types.SimpleNamespace(
      workdir=workdir, folder=specs, shifts=shifts, faces="off", checkpoint="best",
      split="test", robustness=False, seed=0, output_dir=None))
  evaluate.main(["fakeface-evaluate"])
  with open(os.path.join(workdir, rundir.EVALUATION_DIR, "cross_dataset.json")) as f:
    rows = json.load(f)
  assert [(r["folder"], r["shift"]) for r in rows] == [
      (name, shift) for name in ("mixed", "phone:real", "generated") for shift in shifts]
  assert f"threshold {threshold:.4f}" in capsys.readouterr().err
  # Re-saved at quality 90, each file scored alone as it was scored in the report.
  predictor = inference.load_run(workdir)
  resaved = {p: scoring.predict_files(predictor, [p], cross_dataset.SHIFTS["q90"])[0]
             for p in alone}
  assert any(resaved[p]["p_fake"] != alone[p]["p_fake"] for p in alone
             if alone[p]["error"] is None)
  differs_at_half = []
  for row, (spec, shift) in zip(rows, [(s, t) for s in specs for t in shifts]):
    folder = cross_dataset.parse_folder(spec)
    own = alone if shift == "clean" else resaved
    good = [(own[p], label) for p, label in zip(folder.paths, folder.labels)
            if own[p]["error"] is None]
    labels = np.array([label for _, label in good])
    called_fake = np.array([r["p_fake"] >= threshold for r, _ in good])
    warned = np.array([bool(r["warnings"]) for r, _ in good])
    wrong = called_fake != (labels == classes.FAKE)
    is_real = labels == classes.REAL
    assert row["images"] == len(good)
    assert row["unreadable"] == len(folder.paths) - len(good)
    assert (row["real"], row["fake"]) == (int(is_real.sum()), int((~is_real).sum()))
    assert row["accuracy"] == pytest.approx(np.mean(~wrong))
    at_half = np.array([r["p_fake"] >= 0.5 for r, _ in good]) != (labels == classes.FAKE)
    differs_at_half.append(np.mean(~at_half) != row["accuracy"])
    assert row["warned"] == pytest.approx(np.mean(warned))
    assert row["silent_error_rate"] == pytest.approx(np.mean(wrong & ~warned))
    if is_real.any():
      assert row["real_false_positive_rate"] == pytest.approx(np.mean(called_fake[is_real]))
    else:
      assert row["real_false_positive_rate"] is None
    if (~is_real).any():
      assert row["fake_recall"] == pytest.approx(np.mean(called_fake[~is_real]))
    else:
      assert row["fake_recall"] is None
  assert [r["unreadable"] for r in rows] == [2, 2, 0, 0, 1, 1]
  # At 0.5 some folder would read otherwise: the figures are at the run's threshold.
  assert any(differs_at_half)
