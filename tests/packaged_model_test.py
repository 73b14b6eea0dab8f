"""The detector shipped in the package: it loads, answers `fakeface-predict photo.jpg`
without a run, it and its face model reproduce their recorded test accuracy on the
shared sets, and a damaged or missing file of either is one error line."""

import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from absl import app
from PIL import Image

from fakeface_jax.benchmarks import benchmark
from fakeface_jax.evaluation import cross_dataset
from fakeface_jax.evaluation import evaluate
from fakeface_jax import rundir
from fakeface_jax.serving import inference
from fakeface_jax.serving import scoring
from fakeface_jax.training import checkpointing
from tests.conftest import shared_data
from tests.conftest import users_xla_env
from tools import package_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def packaged():
  # Batches of two: the probe below is two images, and scoring the 62 padded rows of a
  # default batch of 64 costs seconds under the suite's lowest optimisation.
  return inference.load_packaged(batch_size=2)


def test_the_packaged_model_loads_with_its_threshold_and_training_domain(packaged):
  assert 0 < packaged.threshold < 1
  assert packaged.training_domain is not None
  probe = np.zeros((2, packaged.image_size, packaged.image_size, 3), np.uint8)
  p_fake = packaged.p_fake(probe)
  assert p_fake.shape == (2,) and np.all((0 <= p_fake) & (p_fake <= 1))
  assert package_model.megabytes_of(inference.PACKAGED_DIR) <= package_model.MAX_MEGABYTES


# The packaged detector and its face model: each records its figures in its folder.
MODELS = {"detector": inference.PACKAGED_DIR,
          "face_model": os.path.join(inference.PACKAGED_DIR, inference.FACES_DIR)}


def _recorded_figures(model: str = "detector") -> dict:
  with open(os.path.join(MODELS[model], inference.FIGURES_JSON)) as f:
    return json.load(f)


@pytest.mark.parametrize("model", MODELS)
def test_the_packaged_models_record_figures_for_every_shared_set(model):
  assert set(_recorded_figures(model)) == {"faces140k", "ciplab", "lfw_faceswap"}


# The figures of one set as `fakeface-predict` gives them to users: in a process of its
# own, with XLA's default optimisation rather than the suite's (conftest.FAST_COMPILE).
# The face model's are its own verdicts, every file scored by its faces' crops, as
# `tools.package_model` recorded them.
SET_FIGURES = """
import json, os, sys
from absl import flags
flags.FLAGS.mark_as_parsed()
from fakeface_jax.serving import inference
from tools import package_model
model, recorded = sys.argv[1], json.loads(sys.stdin.read())
paths = [os.path.join(os.getcwd(), path) for path in recorded["files"]]
packaged = inference.load_packaged()
predictor = packaged if model == "detector" else packaged.face_model
print(json.dumps(package_model.verdict_figures(predictor, paths, recorded["labels"])))
"""


# One test per model and set, so that the two workers of `pytest -n 2` share the work:
# the detector's 1,716 files scored whole; the face model's on the smallest set, 197
# files whose faces are found and scored (all 1,716 would add a minute and a half to the
# suite; `tools.package_model` measured them all when it packaged the model).
@pytest.mark.slow
@pytest.mark.parametrize("model, name", [
    ("detector", "faces140k"), ("detector", "ciplab"), ("detector", "lfw_faceswap"),
    ("face_model", "faces140k")])
def test_the_packaged_models_reproduce_their_recorded_test_accuracy(model, name):
  shared_data()  # Skips (fails under CI) without ../shared/data.
  recorded = _recorded_figures(model)[name]
  proc = subprocess.run([sys.executable, "-c", SET_FIGURES, model], input=json.dumps(recorded),
                        cwd=REPO, env=users_xla_env(), capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  figures = json.loads(proc.stdout.splitlines()[-1])
  assert abs(figures["accuracy"] - recorded["accuracy"]) <= 0.01, figures


def test_the_packaged_model_scores_faces_in_larger_photos_with_a_face_crop_run(packaged):
  assert not packaged.trained_on_faces
  assert packaged.crop_model is packaged.face_model and packaged.face_model.trained_on_faces
  assert packaged.face_model.face_model is None
  assert packaged.face_model.image_size == packaged.image_size


@pytest.mark.parametrize("damage", ["missing_params", "truncated_params", "bad_config",
                                    "missing_domain", "bad_threshold", "truncated_faces"])
def test_a_damaged_or_missing_packaged_file_is_one_error_line(damage, tmp_path):
  copy = str(tmp_path / "pretrained")
  shutil.copytree(inference.PACKAGED_DIR, copy)
  params = os.path.join(copy, inference.PARAMS_FILE)
  if damage == "truncated_faces":
    params = os.path.join(copy, inference.FACES_DIR, inference.PARAMS_FILE)
  if damage == "missing_params":
    os.remove(params)
  elif damage in ("truncated_params", "truncated_faces"):
    with open(params, "rb") as f:
      data = f.read()
    with open(params, "wb") as f:
      f.write(data[:len(data) // 3])
  elif damage == "bad_config":
    with open(os.path.join(copy, rundir.CONFIG_JSON), "w") as f:
      f.write("{not json")
  elif damage == "missing_domain":
    os.remove(os.path.join(copy, rundir.DOMAIN_JSON))
  else:
    with open(os.path.join(copy, rundir.THRESHOLD_JSON), "w") as f:
      json.dump({"threshold": "high"}, f)
  with pytest.raises(checkpointing.CheckpointError) as raised:
    inference.load_packaged(directory=copy)
  message = str(raised.value)
  assert "\n" not in message and copy in message
  assert "tools.package_model" in message or "reinstall" in message


# Originals in ../shared of ciplab_256 files (600 px, JPEG q95 4:4:4), real and fake.
CIPLAB_ORIGINALS = ("training_real/real_00049.jpg", "training_real/real_00072.jpg",
                    "training_fake/easy_208_1111.jpg", "training_fake/mid_122_1100.jpg")


def test_a_ciplab_original_is_scored_as_its_ciplab_256_copy(packaged):
  """A face image larger than the training images is made as the dataset made its
  copy of it (`TrainingDomain.as_training_file`), so it gets the copy's very score."""
  originals = shared_data("ciplab_originals_sample", "real_and_fake_face")
  copies = shared_data("ciplab_256", "real_and_fake_face")
  rows = scoring.predict_faces(packaged, [os.path.join(originals, n) for n in CIPLAB_ORIGINALS])
  first = [by_file[0] for by_file in scoring.rows_by_file(rows).values()]
  as_copies = scoring.predict_files(packaged, [os.path.join(copies, n)
                                               for n in CIPLAB_ORIGINALS])
  assert [r["scored"] for r in first] == ["resaved"] * len(CIPLAB_ORIGINALS)
  assert [r["width"] for r in first] == [600] * len(CIPLAB_ORIGINALS)
  assert [r["p_fake"] for r in first] == [r["p_fake"] for r in as_copies]


def test_predict_without_a_workdir_uses_the_packaged_model(tmp_path):
  image = tmp_path / "gray.png"
  Image.fromarray(np.full((64, 64), 128, np.uint8)).save(image)
  proc = subprocess.run([sys.executable, "-m", "fakeface_jax.serving.predict", str(image)],
                        cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
  assert proc.returncode == 0, proc.stderr[-2000:]
  # A flat gray square has no face: one row that says so, and the summary line.
  assert proc.stdout.splitlines()[1].startswith(f"{image},,")
  assert "no_face" in proc.stdout
  assert "1 files (0 faces, 1 without a face)" in proc.stderr
  face_model = inference.load_packaged().face_model
  assert (f"; faces in larger photos: threshold {face_model.threshold:.3f}, step "
          f"{face_model.step})") in proc.stderr


def test_evaluate_on_folders_without_a_run_reports_the_packaged_detector(
    packaged, monkeypatch, tmp_path):
  rng = np.random.default_rng(0)
  for label in ("real", "fake"):
    (tmp_path / "set" / label).mkdir(parents=True)
    for i in range(2):
      image = rng.integers(0, 256, (8, 8, 3), np.uint8)
      Image.fromarray(image).resize((96, 96)).save(tmp_path / "set" / label / f"{i}.png")
  monkeypatch.chdir(tmp_path)
  # The module's packaged detector (batches of two) is the one evaluate loads.
  monkeypatch.setattr(inference, "load_packaged", lambda: packaged)
  monkeypatch.setattr(evaluate, "FLAGS", types.SimpleNamespace(
      workdir=None, folder=[str(tmp_path / "set")], shifts=["clean"], faces="off",
      checkpoint="best", split="test", robustness=False, seed=0, output_dir=None))
  evaluate.main(["fakeface-evaluate"])
  with open(tmp_path / rundir.EVALUATION_DIR / "cross_dataset.json") as f:
    [row] = json.load(f)
  [expected] = cross_dataset.report(packaged, cross_dataset.parse_folders(
      [str(tmp_path / "set")]), faces=False)
  assert row["images"] == 4 and row["accuracy"] == pytest.approx(expected["accuracy"])
  assert row["roc_auc"] == pytest.approx(expected["roc_auc"])
  # A report on a split needs the run.
  monkeypatch.setattr(evaluate.FLAGS, "folder", [])
  with pytest.raises(app.UsageError, match="missing --workdir"):
    evaluate.main(["fakeface-evaluate"])


def test_the_cold_start_benchmark_times_first_and_warm_calls_of_a_folder(tmp_path):
  folder = tmp_path / "photos"
  folder.mkdir()
  Image.fromarray(np.full((64, 64), 128, np.uint8)).save(folder / "gray.png")
  result = benchmark.benchmark_cold_start(str(folder), repeats=1)
  assert result["photos"] == 1 and len(result["warm_s"]) == 1
  assert result["first_call_s"] > 0 and result["warm_s_median"] == result["warm_s"][0]
  assert result["warm_photos_per_s"] == pytest.approx(1 / result["warm_s_median"], rel=0.02)
