"""Multi-process data parallelism: two processes on 127.0.0.1 train like one process."""

import os
import re
import signal
import socket
import subprocess
import time

import jax
import numpy as np
import pytest

from conftest import main_command
from fakeface_jax import rundir
from fakeface_jax.training import checkpointing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGEST = re.compile(r"Final parameters \(step (\d+)\) sha256 ([0-9a-f]{64})")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def command(workdir, data_dir, *extra):
  return main_command(workdir, data_dir, "--config.model.conv_impl=xla",
                      "--config.num_epochs=2", *extra)


def start_two_processes(workdir, data_dir, *extra) -> list[subprocess.Popen]:
  """main.py as processes 0 and 1 of one run, coordinated on a free local port."""
  port = free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return [subprocess.Popen(
      command(workdir, data_dir, "--distributed", f"--coordinator_address=127.0.0.1:{port}",
              "--num_processes=2", f"--process_id={i}", *extra),
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for i in range(2)]


def final_params(workdir):
  directory = os.path.join(workdir, rundir.CHECKPOINTS_DIR)
  step = max(int(d) for d in os.listdir(directory) if d.isdigit())
  # Saved by two processes; restored here on one device.
  return checkpointing.restore_state_here(workdir, step)["params"]


@pytest.mark.slow
def test_two_processes_hold_equal_parameters_equal_to_one_process(tmp_path, data_dir):
  # One process first: it also prepares the dataset the two processes then read.
  single = subprocess.run(command(tmp_path / "single", data_dir), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-3000:]

  processes = start_two_processes(tmp_path / "multi", data_dir)
  logs = []
  for process in processes:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    logs.append(stderr)
  assert "process 1/2" in logs[1] and "process 0/2" in logs[0]

  digests = [DIGEST.search(log).groups() for log in logs]
  assert digests[0] == digests[1]  # Both processes hold bit-identical parameters.
  # Same global batches; only the order of the gradient all-reduce may differ.
  np.testing.assert_allclose(flat(final_params(str(tmp_path / "multi"))),
                             flat(final_params(str(tmp_path / "single"))),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_stop_signal_to_one_process_stops_both_at_one_checkpoint(tmp_path, data_dir):
  workdir = tmp_path / "preempted"
  epochs = "--config.num_epochs=16"  # Long enough to stop in; each more is 0.3 s twice.
  processes = start_two_processes(workdir, data_dir, epochs)
  checkpoints = workdir / rundir.CHECKPOINTS_DIR
  deadline = time.time() + 300
  while not (checkpoints.is_dir() and any(d.isdigit() for d in os.listdir(checkpoints))):
    assert time.time() < deadline and processes[0].poll() is None, "no checkpoint appeared"
    time.sleep(0.05)
  processes[1].send_signal(signal.SIGTERM)
  logs = [process.communicate(timeout=300)[1] for process in processes]
  assert [p.returncode for p in processes] == [1, 1], logs[0][-2000:] + logs[1][-2000:]
  assert "stopped by another process's stop signal" in logs[0], logs[0][-2000:]
  assert "stopped by SIGTERM" in logs[1], logs[1][-2000:]
  steps = [int(m.group(1)) for m in (re.search(r"at step (\d+);", log) for log in logs)]
  assert steps[0] == steps[1] < 16 * 4  # The same step, before the end (4 steps an epoch).

  processes = start_two_processes(workdir, data_dir, epochs)
  logs = [process.communicate(timeout=300)[1] for process in processes]
  assert [p.returncode for p in processes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
  assert all(f"Resumed from {checkpoints} at step {steps[0]}" in log for log in logs)


def flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
