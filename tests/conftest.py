"""Shared test fixtures: a tiny config that trains in seconds on the built-in dataset."""

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile

import hypothesis
import jax
import numpy as np
import pytest
from absl import flags
from PIL import Image

from configs import default
from fakeface_jax import cpu_runtime
from fakeface_jax.data import folders
from fakeface_jax.training import train

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")

# One persistent JAX compilation cache for the whole run (every xdist worker and every
# subprocess a test starts): the tiny runs compile the same programs again and again,
# and loading them instead cuts the suite's time by about a quarter. Made by the
# controlling process, inherited through the environment, removed at its end; a
# user's own JAX_COMPILATION_CACHE_DIR is left alone.
_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_OWN_CACHE_ENV = "FAKEFACE_TEST_OWN_JAX_CACHE"
# The suite compiles hundreds of small programs and runs few of them for long: XLA:CPU's
# lowest backend optimisation compiles them about 30% faster, for every worker and
# subprocess (XLA reads XLA_FLAGS when its backend starts, after this conftest). It is
# not how users run, and it moves scores in their last bits: the packaged model's
# recorded figures are checked with `users_xla_env` instead (docs/testing.md).
FAST_COMPILE = "--xla_backend_optimization_level=0"


def users_xla_env() -> dict[str, str]:
  """The environment with XLA_FLAGS as the user set them, without FAST_COMPILE."""
  return dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "").replace(
      FAST_COMPILE, "").strip())


def pytest_configure(config):
  if not hasattr(config, "workerinput") and FAST_COMPILE not in os.environ.get(
      "XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
  # Every command a test starts would start Python and import JAX twice, to restart
  # itself with huge pages (cpu_runtime); cpu_runtime_test runs that restart itself.
  # The workers and those commands get the huge pages from birth instead: glibc reads
  # its tunables when a process starts, and xdist starts its workers after this hook.
  os.environ.setdefault(cpu_runtime.OPT_OUT, "1")
  huge_pages = cpu_runtime.environment_with_huge_pages(
      {k: v for k, v in os.environ.items() if k != cpu_runtime.OPT_OUT})
  if huge_pages is not None:
    os.environ["GLIBC_TUNABLES"] = huge_pages["GLIBC_TUNABLES"]
  if not hasattr(config, "workerinput") and not os.environ.get(_CACHE_ENV):
    os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="fakeface_jax_test_jax_cache_")
    os.environ[_OWN_CACHE_ENV] = "1"
    # Every program, as predict does: the tiny runs' compile in well under a second.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  if os.environ.get(_OWN_CACHE_ENV):
    # JAX read its settings when this conftest imported it: set them here too.
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  if not hasattr(config, "workerinput") and os.environ.pop(_OWN_CACHE_ENV, None):
    shutil.rmtree(os.environ.pop(_CACHE_ENV), ignore_errors=True)


# Property tests: no deadline (JAX compiles on first call); under CI the examples are
# derived from each test's name, so a run is reproducible and a red CI is a red laptop.
# `HYPOTHESIS_PROFILE=thorough pytest ...` tries 1,000 examples where a test sets no count.
hypothesis.settings.register_profile(
    "dev", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(
    "ci", parent=hypothesis.settings.get_profile("dev"), derandomize=True,
    database=None, print_blob=True)
hypothesis.settings.register_profile(
    "thorough", parent=hypothesis.settings.get_profile("dev"), max_examples=1000)
hypothesis.settings.load_profile(os.environ.get(
    "HYPOTHESIS_PROFILE",
    "ci" if os.environ.get("CI", "").lower() in ("1", "true") else "dev"))


@pytest.fixture(scope="session", autouse=True)
def _absl_flags_parsed():
  # grain and absl-using code read flags; outside app.run they must be marked parsed.
  flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """One TFDS data directory per session, so the tiny dataset is prepared once."""
  return str(tmp_path_factory.mktemp("tensorflow_datasets"))


def make_tiny_config(data_dir: str):
  """`configs/default.py:tiny` (64 32-pixel images, 4 steps an epoch) in `data_dir`."""
  config = default.get_config("tiny")
  config.data.data_dir = data_dir
  return config


@pytest.fixture
def tiny_config(data_dir):
  return make_tiny_config(data_dir)


def make_learning_config(data_dir: str):
  """The tiny config given enough images and epochs to learn (about 10 s on 2 cores):
  test accuracy 0.98 and AUC 1.0 on the built-in data's obvious traces, where chance
  is 0.5. Tests that need a model that has learned something use this one."""
  config = make_tiny_config(data_dir)
  config.num_epochs = 12
  config.learning_rate = 3e-3
  config.eval_batch_size = 64
  config.data.synthetic.num_train = 128
  config.data.synthetic.num_validation = 64
  config.data.synthetic.num_test = 64
  return config


# Mutation testing forks a fresh pytest session for every mutant; with this set (by
# tools/mutation.sh) the shared runs below are trained once into it and read back after,
# since rerunning a finished run returns its saved results without training.
RUN_CACHE = os.environ.get("FAKEFACE_TEST_RUN_CACHE")


@contextlib.contextmanager
def shared_by_workers(tmp_path_factory, name: str):
  """A folder `name` of this run that every xdist worker shares, held under a lock: the
  first worker in makes what goes in it, and the others find it made instead of making
  it again (without xdist, a folder of the session)."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # The run's folder; each worker's own is below it.
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      folder = root / name
      folder.mkdir(exist_ok=True)
      yield str(folder)
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _shared_run(tmp_path_factory, name, config_of):
  """(workdir, results) of `config_of(data_dir)` trained once for all workers, or into
  RUN_CACHE when that is set; either way with a data directory of its own. A finished
  run's results are read back without training (`train.train_and_evaluate`)."""
  if RUN_CACHE:
    workdir, data_dir = (os.path.join(RUN_CACHE, d) for d in (name, "tensorflow_datasets"))
    return workdir, train.train_and_evaluate(config_of(data_dir), workdir)
  with shared_by_workers(tmp_path_factory, name) as folder:
    workdir, data_dir = (os.path.join(folder, d) for d in ("run", "tensorflow_datasets"))
    return workdir, train.train_and_evaluate(config_of(data_dir), workdir)


@pytest.fixture(scope="session")
def learned_run(tmp_path_factory):
  """(workdir, results) of one run of the learning config, shared by the whole session."""
  return _shared_run(tmp_path_factory, "learned_run", make_learning_config)


@pytest.fixture(scope="session")
def finished_tiny_run(tmp_path_factory):
  """(workdir, results) of one uninterrupted run of the tiny config, shared by the
  session; tests must not write into it."""
  return _shared_run(tmp_path_factory, "finished_tiny_run", make_tiny_config)


class FakeClock:
  """A clock for progress and throughput tests: it reads `now`, which a test moves."""

  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def run_on_cpu_devices(script: str, devices: int, *args: str) -> subprocess.CompletedProcess:
  """`python -c script *args` on `devices` CPU devices (the count is fixed before JAX
  starts, so in a process of its own), from the repository root."""
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
             f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", script, *args], env=env, timeout=300,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def main_command(workdir, data_dir, *extra) -> list[str]:
  """A main.py run of a tiny config: 64 training images, 4 steps per epoch."""
  return [sys.executable, "main.py", "--config", "configs/default.py:tiny", "--workdir",
          str(workdir), f"--config.data.data_dir={data_dir}", *extra]


def shared_data(*parts: str) -> str:
  """A folder of ../shared/data; where it is absent, a skip saying so, or under CI
  (`CI=true`, where ../shared is always laid beside the clone) a failure, so that a
  missing folder cannot turn the real-data tests into a green run that tested nothing."""
  path = os.path.abspath(os.path.join(SHARED_DATA, *parts))
  if not os.path.isdir(path):
    message = f"shared data folder {path} is absent (see the README's datasets section)"
    if os.environ.get("CI", "").lower() in ("1", "true"):
      pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)
  return path


def write_image(path, seed=0, size=24, fmt=None, mode="RGB"):
  """A random image file (any PIL format and mode), creating its folder."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
  array = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
  Image.fromarray(array[..., 0] if mode == "L" else array, mode).save(path, format=fmt)


def make_ciplab(root, num_real: int, fakes_per_difficulty: int, size: int = 24) -> None:
  """A ciplab download under `root`: real images and easy/mid/hard fakes, named as hers."""
  base = os.path.join(root, "real_and_fake_face")
  for i in range(num_real):
    write_image(os.path.join(base, "training_real", f"real_{i:05d}.jpg"), seed=i, size=size)
  for d, difficulty in enumerate(folders.DIFFICULTIES):
    for i in range(fakes_per_difficulty):
      write_image(os.path.join(base, "training_fake", f"{difficulty}_{i}_1111.jpg"),
                  seed=10_000 + 1000 * d + i, size=size)


def centre_of_mass(masks):
  """(N, H, W, 1) masks -> (N, 2) mass-weighted (row, column) as fractions of the size."""
  masks = np.asarray(masks)[..., 0]
  _, height, width = masks.shape
  rows = (np.arange(height) + 0.5) / height
  cols = (np.arange(width) + 0.5) / width
  total = masks.sum((1, 2))
  return np.stack([(masks.sum(2) * rows).sum(1) / total,
                   (masks.sum(1) * cols).sum(1) / total], -1)
