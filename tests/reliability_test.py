"""Failure behaviour: kill -9, preemption signals, damaged checkpoints, non-finite loss,
determinism, config and path errors, and a disk that fills up while checkpointing."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import optax
import pytest

from configs import detector
from conftest import main_command
from conftest import shared_by_workers
from fakeface_jax import config_checks
from fakeface_jax import errors
from fakeface_jax import models
from fakeface_jax import rundir
from fakeface_jax.training import checkpointing
from fakeface_jax.training import run_config
from fakeface_jax.training import run_state
from fakeface_jax.training import speed
from fakeface_jax.training import steps
from fakeface_jax.training import train
from fakeface_jax.training import workdir_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def final_params_digest(workdir: str) -> str:
  """SHA-256 of the parameters of the newest checkpoint, as training logs it."""
  directory = os.path.join(workdir, rundir.CHECKPOINTS_DIR)
  step = max(int(d) for d in os.listdir(directory) if d.isdigit())
  return steps.params_digest(checkpointing.restore_state_here(workdir, step)["params"])


def run_main(*args, **kwargs):
  return subprocess.run(main_command(*args), cwd=REPO, capture_output=True, text=True,
                        timeout=600, **kwargs)


def wait_for_checkpoint(workdir, process, timeout=300):
  directory = os.path.join(workdir, "checkpoints")
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.isdir(directory) and any(d.isdigit() for d in os.listdir(directory)):
      return
    assert process.poll() is None, process.communicate()[1][-3000:]
    time.sleep(0.05)
  raise TimeoutError("no checkpoint appeared")


# Long enough that a signal sent at the first checkpoint always lands mid-training, even
# now that a tiny epoch takes a fraction of a second.
EPOCHS = "--config.num_epochs=16"


@pytest.fixture(scope="module")
def uninterrupted_digest(tmp_path_factory, data_dir):
  with shared_by_workers(tmp_path_factory, "uninterrupted") as folder:
    digest = os.path.join(folder, "digest")
    if not os.path.exists(digest):  # Else another worker trained it already.
      workdir = os.path.join(folder, "run")
      proc = run_main(workdir, data_dir, EPOCHS)
      assert proc.returncode == 0, proc.stderr[-3000:]
      with open(digest, "w") as f:
        f.write(final_params_digest(workdir))
    with open(digest) as f:
      return f.read()


@pytest.mark.slow
def test_kill_9_then_rerun_ends_bit_identical(tmp_path, data_dir, uninterrupted_digest):
  workdir = tmp_path / "killed"
  process = subprocess.Popen(main_command(workdir, data_dir, EPOCHS), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  wait_for_checkpoint(workdir, process)
  process.send_signal(signal.SIGKILL)
  process.communicate()
  rerun = run_main(workdir, data_dir, EPOCHS)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "Resumed from" in rerun.stderr
  assert final_params_digest(str(workdir)) == uninterrupted_digest


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_checkpoints_and_resumes_exactly(tmp_path, data_dir,
                                                     uninterrupted_digest, stop_signal):
  workdir = tmp_path / "preempted"
  process = subprocess.Popen(main_command(workdir, data_dir, EPOCHS), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  wait_for_checkpoint(workdir, process)
  process.send_signal(stop_signal)
  _, stderr = process.communicate(timeout=300)
  assert process.returncode != 0
  assert f"stopped by {signal.Signals(stop_signal).name}" in stderr
  assert "rerun the same command to resume" in stderr
  rerun = run_main(workdir, data_dir, EPOCHS)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert final_params_digest(str(workdir)) == uninterrupted_digest


def send_stop_after_step(monkeypatch, stop_step, stop_signal=signal.SIGTERM):
  """Makes the train loop receive `stop_signal` right after global step `stop_step`."""
  step_done = speed.Throughput.step_done  # pylint: disable=protected-access

  def step_done_then_stop(self, state):
    step_done(self, state)
    if int(state.step) == stop_step:
      os.kill(os.getpid(), stop_signal)

  monkeypatch.setattr(speed.Throughput, "step_done",  # pylint: disable=protected-access
                      step_done_then_stop)


def send_stop_during_first_validation(monkeypatch):
  evaluate = steps.evaluate

  def stop_then_evaluate(*args, **kwargs):
    monkeypatch.setattr(steps, "evaluate", evaluate)
    os.kill(os.getpid(), signal.SIGTERM)
    return evaluate(*args, **kwargs)

  monkeypatch.setattr(steps, "evaluate", stop_then_evaluate)


# The tiny config has 4 steps per epoch. A single process stops at the next step, also
# after an epoch's last step or during its validation, without finishing the validation:
# that checkpoint says the epoch is still to validate (step_in_epoch 4), and the rerun
# validates it and replaces the checkpoint with the epoch's own of the same step
# number (a rerun once crashed on saving that step twice).
@pytest.mark.parametrize("when, stop_signal, saved_meta", [
    ("after step 2", signal.SIGTERM, {"epoch": 0, "step_in_epoch": 2}),
    ("after step 4", signal.SIGINT, {"epoch": 0, "step_in_epoch": 4}),
    ("during validation", signal.SIGTERM, {"epoch": 0, "step_in_epoch": 4}),
])
def test_stop_anywhere_in_an_epoch_checkpoints_that_step_and_resumes_to_identical_parameters(
    tiny_config, tmp_path, monkeypatch, caplog, finished_tiny_run, when, stop_signal,
    saved_meta):
  if when == "during validation":
    send_stop_during_first_validation(monkeypatch)
  else:
    send_stop_after_step(monkeypatch, int(when.split()[-1]), stop_signal)
  workdir = str(tmp_path / "stopped")
  name = signal.Signals(stop_signal).name
  with pytest.raises(run_state.Preempted, match=f"stopped by {name} at step"):
    train.train_and_evaluate(tiny_config, workdir)
  assert (f"stop requested ({name}): stopping after this step with a checkpoint"
          in caplog.text)
  directory = os.path.join(workdir, rundir.CHECKPOINTS_DIR)
  [step] = [d for d in os.listdir(directory) if d.isdigit()]
  assert int(step) == saved_meta["step_in_epoch"]  # Epoch 1's step the signal followed.
  with open(os.path.join(directory, step, "meta", "metadata")) as f:
    meta = json.load(f)
  assert {k: meta[k] for k in saved_meta} == saved_meta
  # The stop did not wait for the validation: no epoch was logged.
  assert (tmp_path / "stopped" / rundir.METRICS_JSONL).read_text() == ""
  monkeypatch.undo()
  if when == "during validation":  # Resumed, and stopped again before validating.
    send_stop_during_first_validation(monkeypatch)
    with pytest.raises(run_state.Preempted, match=f"stopped by {name} at step 4"):
      train.train_and_evaluate(tiny_config, workdir)
    monkeypatch.undo()
  train.train_and_evaluate(tiny_config, workdir)
  assert final_params_digest(workdir) == final_params_digest(finished_tiny_run[0])
  with open(os.path.join(workdir, rundir.METRICS_JSONL)) as f:
    assert [json.loads(line)["epoch"] for line in f] == [1, 2]


def test_same_config_and_seed_give_identical_parameters(tiny_config, tmp_path,
                                                         finished_tiny_run):
  train.train_and_evaluate(tiny_config, str(tmp_path / "again"))
  assert (final_params_digest(str(tmp_path / "again"))
          == final_params_digest(finished_tiny_run[0]))


# ---------------------------------------------------------------------------------------
# Damaged checkpoints.
# ---------------------------------------------------------------------------------------


def small_state():
  model = models.TaperingMLP(width=4)
  return steps.create_train_state(jax.random.key(0), model, (4, 4, 1), optax.adam(1e-3))


def save_steps(workdir, steps=(1, 2, 3)):
  checkpoints = checkpointing.Checkpoints(str(workdir), max_to_keep=5)
  state = small_state()
  for step in steps:
    state = state.replace(step=jnp.asarray(step))
    checkpoints.save(step, state, {"epoch": step, "step_in_epoch": 0, "totals": None},
                     metrics={"val_accuracy": 0.5})
  checkpoints.close()
  return state


def _empty(step_dir):
  for root, dirs, files in os.walk(step_dir, topdown=False):
    for name in files:
      os.remove(os.path.join(root, name))
    for name in dirs:
      os.rmdir(os.path.join(root, name))


def _missing_arrays(step_dir):
  state_dir = os.path.join(step_dir, "state")
  for name in os.listdir(state_dir):
    path = os.path.join(state_dir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)


def _garbled_meta(step_dir):
  with open(os.path.join(step_dir, "meta", "metadata"), "w") as f:
    f.write("{not json")


def _truncated(step_dir):
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    for name in files:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      with open(path, "r+b") as f:
        f.truncate(size // 3)


@pytest.mark.parametrize("damage", [_empty, _missing_arrays, _garbled_meta, _truncated])
def test_damaged_newest_checkpoint_is_skipped(tmp_path, damage, caplog):
  save_steps(tmp_path)
  damage(str(tmp_path / "checkpoints" / "3"))
  checkpoints = checkpointing.Checkpoints(str(tmp_path))
  with caplog.at_level("WARNING"):
    _, meta, step = checkpoints.restore_latest(small_state())
  assert step == 2 and meta["epoch"] == 2
  assert "Skipping damaged checkpoint" in caplog.text and "checkpoints/3" in caplog.text
  assert not (tmp_path / "checkpoints" / "3").exists()
  assert os.listdir(tmp_path / "checkpoints_corrupt")
  # The manager keeps working: a new save after the skip succeeds and restores.
  checkpoints.save(3, small_state(), {"epoch": 3, "step_in_epoch": 0, "totals": None})
  checkpoints.wait_until_finished()
  assert checkpoints.restore_latest(small_state())[2] == 3


def test_a_foreign_directory_named_like_a_step_is_skipped(tmp_path):
  save_steps(tmp_path, steps=(1,))
  os.makedirs(tmp_path / "checkpoints" / "99" / "something")
  assert checkpointing.Checkpoints(str(tmp_path)).restore_latest(small_state())[2] == 1


def test_no_usable_checkpoint_says_so(tmp_path):
  save_steps(tmp_path, steps=(1, 2))
  for step in ("1", "2"):
    _garbled_meta(str(tmp_path / "checkpoints" / step))
  with pytest.raises(checkpointing.CheckpointError, match="--config.resume=false"):
    checkpointing.Checkpoints(str(tmp_path)).restore_latest(small_state())


def test_resume_false_sets_old_checkpoints_aside(tiny_config, tmp_path):
  save_steps(tmp_path / "run", steps=(1,))
  tiny_config.resume = False
  tiny_config.num_epochs = 1
  train.train_and_evaluate(tiny_config, str(tmp_path / "run"))
  assert any(name.startswith("checkpoints.old-") for name in os.listdir(tmp_path / "run"))


def test_disk_full_while_checkpointing_keeps_the_previous_one(tmp_path, monkeypatch):
  save_steps(tmp_path, steps=(1,))
  from orbax.checkpoint._src.handlers import \
      json_checkpoint_handler  # pylint: disable=g-import-not-at-top

  async def disk_full(self, x, directory):
    del self, x
    (directory / "metadata").write_text('{"half": ')
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", disk_full)
  checkpoints = checkpointing.Checkpoints(str(tmp_path))
  with pytest.raises(Exception, match="No space left"):
    checkpoints.save(2, small_state(), {"epoch": 2, "step_in_epoch": 0, "totals": None})
    checkpoints.wait_until_finished()
  monkeypatch.undo()
  _, meta, step = checkpointing.Checkpoints(str(tmp_path)).restore_latest(small_state())
  assert step == 1 and meta["epoch"] == 1


# ---------------------------------------------------------------------------------------
# Non-finite loss, config and path errors.
# ---------------------------------------------------------------------------------------


def test_nonfinite_loss_names_the_step_and_keeps_the_last_checkpoint(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  tiny_config.num_epochs = 1
  train.train_and_evaluate(tiny_config, workdir)
  tiny_config.num_epochs = 3
  tiny_config.learning_rate = 1e38
  with pytest.raises(train.NonFiniteLossError, match=r"non-finite at step \d+"):
    train.train_and_evaluate(tiny_config, workdir)
  checkpoints = checkpointing.Checkpoints(workdir)
  assert checkpoints.restore_latest(small_state_like(tiny_config))[2] == 4


def small_state_like(config):
  """A state with the structure training saves (the optimizer state depends on the lr
  schedule), to restore checkpoints into."""
  model = models.create_model(config.model)
  shape = (config.data.image_size, config.data.image_size, 3)
  tx = optax.adam(steps.learning_rate_schedule(config, steps_per_epoch=4))
  return steps.create_train_state(jax.random.key(0), model, shape, tx)


@pytest.mark.parametrize("override, message", [
    ("--config.batch_sise=8", "did you mean"),
    ("--config.batch_size=eight", "batch_size"),
    ("--config.model.name=resnet9000", "unknown config.model.name 'resnet9000'"),
    ("--config.data.name=ciplab --config.data.manual_dir=/nonexistent/ciplab",
     "/nonexistent/ciplab is not a folder"),
    ("--folds 5", "dataset 'synthetic' has its own test and validation split(s)"),
])
def test_bad_command_lines_fail_in_one_line_and_write_nothing(tmp_path, data_dir, override,
                                                              message):
  workdir = tmp_path / "run"
  proc = run_main(workdir, data_dir, *override.split())
  assert proc.returncode != 0
  assert message.lower() in proc.stderr.lower()
  assert not workdir.exists()


def test_workdir_that_is_a_file_is_rejected(tiny_config, tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(errors.ConfigError, match="is not a directory"):
    config_checks.check_workdir(tiny_config, str(path))


def test_unwritable_workdir_is_rejected(tiny_config, tmp_path, monkeypatch):
  # Tests may run as root, for whom chmod does not deny writes; deny through os.access.
  monkeypatch.setattr(os, "access", lambda path, mode: False)
  with pytest.raises(errors.ConfigError, match="is not writable"):
    config_checks.check_workdir(tiny_config, str(tmp_path / "new" / "run"))


def test_workdir_of_a_different_model_is_rejected(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  tiny_config.num_epochs = 1
  train.train_and_evaluate(tiny_config, workdir)
  tiny_config.model.features = (4, 4, 4, 4)
  with pytest.raises(errors.ConfigError, match="holds checkpoints of a different model"):
    train.train_and_evaluate(tiny_config, workdir)
  tiny_config.model.features = (8, 8, 8, 8)
  tiny_config.model.conv_impl = "xla"  # Same parameters: resuming is fine.
  config_checks.check_workdir(tiny_config, workdir)


def test_a_run_saved_before_a_key_was_renamed_is_still_this_model(tmp_path):
  # Detector runs saved before "color" was the one spelling have model.colour_spaces.
  config = detector.get_config()
  workdir = tmp_path / "run"
  (workdir / rundir.CHECKPOINTS_DIR / "10").mkdir(parents=True)
  saved = json.loads(config.to_json_best_effort())
  saved["model"]["colour_spaces"] = saved["model"].pop("color_spaces")
  (workdir / rundir.CONFIG_JSON).write_text(json.dumps(saved))
  config_checks.check_workdir(config, str(workdir))
  config.model.color_spaces = ("rgb", "ycbcr")
  with pytest.raises(errors.ConfigError, match="holds checkpoints of a different model"):
    config_checks.check_workdir(config, str(workdir))


def test_a_run_saved_before_native_crop_existed_reads_as_resizing_its_images(tmp_path):
  saved = json.loads(detector.get_config().to_json_best_effort())
  del saved["data"]["native_crop"]
  (tmp_path / rundir.CONFIG_JSON).write_text(json.dumps(saved))
  assert run_config.read_config(str(tmp_path))["data"]["native_crop"] is False


def test_a_run_saved_before_the_real_fpr_cap_existed_reads_as_uncapped(tmp_path):
  saved = json.loads(detector.get_config().to_json_best_effort())
  del saved["max_real_fpr"]
  (tmp_path / rundir.CONFIG_JSON).write_text(json.dumps(saved))
  assert run_config.read_config(str(tmp_path))["max_real_fpr"] == 1.0


def test_a_detector_saved_before_regions_and_source_pairs_resumes_as_it_was(tmp_path):
  config = detector.get_config()
  workdir = tmp_path / "run"
  (workdir / rundir.CHECKPOINTS_DIR / "10").mkdir(parents=True)
  saved = json.loads(config.to_json_best_effort())
  del saved["model"]["num_sources"], saved["model"]["regions"]
  (workdir / rundir.CONFIG_JSON).write_text(json.dumps(saved))
  model = run_config.read_config(str(workdir))["model"]
  assert model["num_sources"] == 1 and model["regions"] == [1.0]
  config_checks.check_workdir(config, str(workdir))  # The same model: it resumes.


# ---------------------------------------------------------------------------------------
# The workdir lock.
# ---------------------------------------------------------------------------------------


def test_a_second_training_in_a_busy_workdir_is_refused_in_one_line(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lock.hold(workdir):
    with pytest.raises(workdir_lock.WorkdirBusy,
                       match=f"is in use: pid {os.getpid()} on .* is training in it") as info:
      train.train_and_evaluate(tiny_config, workdir)
  assert "\n" not in str(info.value)
  assert not os.path.exists(os.path.join(workdir, rundir.CHECKPOINTS_DIR))


_HOLD_LOCK = ("import sys, time; from fakeface_jax.training import workdir_lock\n"
              "with workdir_lock.hold(sys.argv[1]):\n"
              "  print('locked', flush=True); time.sleep(600)")


def test_a_lock_left_by_a_killed_run_does_not_block_the_next(tmp_path):
  workdir = str(tmp_path / "run")
  holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, workdir], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline() == "locked\n"
  with pytest.raises(workdir_lock.WorkdirBusy, match=f"pid {holder.pid} on"):
    with workdir_lock.hold(workdir):
      pass
  holder.kill()
  holder.communicate()
  assert os.path.exists(os.path.join(workdir, rundir.LOCK_FILE))
  with workdir_lock.hold(workdir):
    pass
