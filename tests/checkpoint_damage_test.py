"""Fault injection: every kind of file of the newest checkpoint step, and of the run
directory, damaged in every way a crash or a bad disk can leave it.

One tiny run of 3 epochs (steps 4, 8, 12) is trained once; each case damages a copy
of it. Damage to a step must make resume, `best` and `last` fall back to the good
steps with a warning naming the step and the damage; resuming the damaged copy for
its last epoch must end with the parameters of the undamaged run.
"""

import glob
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_tiny_config
from fakeface_jax import config_checks
from fakeface_jax import errors
from fakeface_jax import rundir
from fakeface_jax.serving import inference
from fakeface_jax.training import checkpointing
from fakeface_jax.training import steps
from fakeface_jax.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 3
NEWEST, PREVIOUS = 12, 8  # The tiny config has 4 steps per epoch.


def damage_file(path: str, how: str) -> None:
  if how == "delete":
    os.remove(path)
    return
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    if how == "random":
      f.write(random.Random(size).randbytes(size))
    f.truncate({"empty": 0, "half": size // 2, "random": size}[how])


# Each file kind Orbax writes for a step -> (the files, what the warning calls them).
# In a one-process run Orbax merges the arrays into state/d/; the per-process copies
# under state/ocdbt.process_0/ are not read on restore, so they are no checkpoint's
# weak point.
FILE_KINDS = {
    "step metadata": (["_CHECKPOINT_METADATA"], "_CHECKPOINT_METADATA"),
    "commit file": (["commit_success.txt"], "commit_success.txt"),
    "item commit file": (["state/commit_success.txt"], "state/commit_success.txt"),
    "metrics": (["metrics/metrics"], "metrics/metrics"),
    "progress metadata": (["meta/metadata"], "meta/metadata"),
    "array files": (["state/d/*"], "state/d/"),
    "array index": (["state/manifest.ocdbt"], "state/manifest.ocdbt"),
    "array tree metadata": (["state/_METADATA"], "state/_METADATA"),
}
HOW = ("empty", "half", "random", "delete")


def damage_kind(kind: str, how: str):
  def damage(step_dir):
    for pattern in FILE_KINDS[kind][0]:
      paths = glob.glob(os.path.join(step_dir, pattern))
      assert paths, pattern
      for path in paths:
        damage_file(path, how)
  return damage


def leave_uncommitted(step_dir):
  os.rename(step_dir, step_dir + checkpointing.TMP_SUFFIX)


def remove_files(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      os.remove(os.path.join(root, name))


def empty_every_file(step_dir):
  """What a power loss before the data reached the disk can leave."""
  for root, _, files in os.walk(step_dir):
    for name in files:
      damage_file(os.path.join(root, name), "empty")


# Case -> (damage of the newest step, text the warning must contain).
CASES = {f"{kind}, {how}": (damage_kind(kind, how), FILE_KINDS[kind][1])
         for kind in FILE_KINDS for how in HOW}
CASES.update({
    "uncommitted step directory": (leave_uncommitted, "never committed"),
    "step directory without files": (remove_files, "no files"),
    "every file emptied": (empty_every_file, "_CHECKPOINT_METADATA is unreadable"),
})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
  """The undamaged run and the digest of its final parameters."""
  workdir = str(tmp_path_factory.mktemp("damage") / "run")
  config = make_tiny_config(data_dir)
  config.num_epochs = EPOCHS
  config.checkpoint.max_to_keep = 3
  train.train_and_evaluate(config, workdir)
  return workdir, newest_digest(workdir)


@pytest.fixture(scope="module")
def compiled_predictor(trained):
  """A predictor compiled once; cases swap in the parameters they loaded."""
  predictor = inference.load_run(trained[0])
  predictor.p_fake(IMAGES)
  return predictor


IMAGES = np.zeros((3, 32, 32, 3), np.uint8)


def newest_digest(workdir):
  step = checkpointing.usable_steps(workdir)[0]
  return steps.params_digest(checkpointing.restore_state_here(workdir, step)["params"])


def damaged_copy(trained, tmp_path, damage) -> str:
  workdir = str(tmp_path / "run")
  shutil.copytree(trained[0], workdir)
  damage(os.path.join(workdir, rundir.CHECKPOINTS_DIR, str(NEWEST)))
  return workdir


def step_dir(workdir, step):
  return os.path.join(workdir, rundir.CHECKPOINTS_DIR, str(step))


@pytest.mark.parametrize("case", CASES)
def test_predict_and_resume_skip_the_damaged_newest_step(trained, compiled_predictor,
                                                        tmp_path, caplog, case):
  damage, named = CASES[case]
  workdir = damaged_copy(trained, tmp_path, damage)
  chosen = {}
  with caplog.at_level("WARNING"):
    for which in ("last", "best"):
      predictor = inference.load_run(workdir, which)
      chosen[which] = predictor.step
      compiled_predictor.params = predictor.params
      assert np.all(np.isfinite(compiled_predictor.p_fake(IMAGES)))
  assert chosen["last"] == PREVIOUS
  assert chosen["best"] == checkpointing.best_step(
      os.path.join(workdir, rundir.CHECKPOINTS_DIR), [4, PREVIOUS])
  [warning] = [r.getMessage() for r in caplog.records if "Skipping" in r.getMessage()][:1]
  assert f"{step_dir(workdir, NEWEST)}" in warning and named in warning, warning
  assert os.path.exists(step_dir(workdir, NEWEST)) or case.startswith("uncommitted"), (
      "inference must not move anything")

  # Training's view: the step is moved aside, saying so, and the previous one restores.
  caplog.clear()
  with caplog.at_level("WARNING"):
    checkpoints = checkpointing.Checkpoints(workdir, max_to_keep=3)
  assert "moved to" in caplog.text and named in caplog.text
  assert checkpoints.step_dirs() == [PREVIOUS, 4]
  assert os.listdir(os.path.join(workdir, rundir.CORRUPT_DIR))
  checkpoints.close()


@pytest.mark.parametrize("case", [
    "every file emptied", "uncommitted step directory", "metrics, half",
    "array files, random"])
def test_resume_past_the_damaged_step_ends_with_the_uninterrupted_parameters(
    trained, tmp_path, data_dir, caplog, case):
  workdir = damaged_copy(trained, tmp_path, CASES[case][0])
  config = make_tiny_config(data_dir)
  config.num_epochs = EPOCHS
  with caplog.at_level("WARNING"):
    train.train_and_evaluate(config, workdir)
  assert caplog.text.count("Skipping damaged checkpoint") == 1
  assert CASES[case][1] in caplog.text
  assert newest_digest(workdir) == trained[1]


def test_no_good_step_says_so_in_one_line(trained, tmp_path):
  workdir = damaged_copy(trained, tmp_path, empty_every_file)
  for step in (4, PREVIOUS):
    empty_every_file(step_dir(workdir, step))
  with pytest.raises(checkpointing.CheckpointError, match="no usable checkpoint") as error:
    inference.load_run(workdir, "best")
  assert "\n" not in str(error.value)
  with pytest.raises(checkpointing.CheckpointError, match="--config.resume=false"):
    checkpointing.Checkpoints(workdir).restore_latest(None)


def test_predict_command_warns_once_and_predicts(trained, tmp_path):
  """The issue's reproduction: every file of the newest step emptied."""
  workdir = damaged_copy(trained, tmp_path, empty_every_file)
  image = tmp_path / "image.png"
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
  proc = subprocess.run(
      [sys.executable, "-m", "fakeface_jax.serving.predict", "--workdir", workdir, "--checkpoint",
       "last", "--output", "-", str(image)], cwd=REPO, capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert str(image) in proc.stdout
  [warning] = [line for line in proc.stderr.splitlines() if "Skipping damaged" in line]
  assert step_dir(workdir, NEWEST) in warning
  assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------
# The run directory's own files.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
def test_damaged_config_json_is_one_line_naming_it(trained, tmp_path, data_dir, how):
  workdir = damaged_copy(trained, tmp_path, lambda _: None)
  damage_file(os.path.join(workdir, rundir.CONFIG_JSON), how)
  with pytest.raises(checkpointing.CheckpointError, match="config.json is") as error:
    inference.load_run(workdir)
  assert "\n" not in str(error.value)
  config = make_tiny_config(data_dir)
  if how == "delete":  # Nothing to compare with: resuming is allowed.
    config_checks.check_workdir(config, workdir)
  else:
    with pytest.raises(errors.ConfigError, match="config.json is damaged"):
      config_checks.check_workdir(config, workdir)


@pytest.mark.parametrize("how", ("empty", "half", "random"))
def test_damaged_threshold_json_warns_and_uses_the_default(trained, tmp_path, caplog, how):
  workdir = damaged_copy(trained, tmp_path, lambda _: None)
  damage_file(os.path.join(workdir, rundir.THRESHOLD_JSON), how)
  with caplog.at_level("WARNING"):
    predictor = inference.load_run(workdir)
  assert predictor.threshold == inference.DEFAULT_THRESHOLD
  assert "threshold.json is damaged" in caplog.text


def test_resume_rewrites_damaged_threshold_json_and_data_files_csv(trained, tmp_path,
                                                                   data_dir):
  def damage_run_files(newest):
    workdir = os.path.dirname(os.path.dirname(newest))
    damage_file(os.path.join(workdir, rundir.THRESHOLD_JSON), "half")
    damage_file(os.path.join(workdir, rundir.MANIFEST_CSV), "random")

  workdir = damaged_copy(trained, tmp_path, damage_run_files)
  config = make_tiny_config(data_dir)
  config.num_epochs = EPOCHS
  train.train_and_evaluate(config, workdir)
  for name in (rundir.THRESHOLD_JSON, rundir.MANIFEST_CSV):
    with open(os.path.join(workdir, name), "rb") as f, \
        open(os.path.join(trained[0], name), "rb") as g:
      assert f.read() == g.read(), name
  assert inference.load_run(workdir).threshold != inference.DEFAULT_THRESHOLD
