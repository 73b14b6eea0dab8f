"""The huge-page re-exec: the environment it sets, once."""

import os
import subprocess
import sys

import pytest

from fakeface_jax import cpu_runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_huge_page_environment():
  env = cpu_runtime.environment_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
  if env is not None:  # Linux with glibc.
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert cpu_runtime.environment_with_huge_pages(env) is None  # Never twice.
  assert cpu_runtime.environment_with_huge_pages({"FAKEFACE_NO_REEXEC": "1"}) is None


def test_a_command_restarts_itself_once_with_huge_pages():
  # The suite opts every command it starts out of the restart (conftest); this one not.
  env = {k: v for k, v in os.environ.items() if k not in (cpu_runtime.OPT_OUT, "GLIBC_TUNABLES")}
  if cpu_runtime.environment_with_huge_pages(env) is None:
    pytest.skip("huge pages are set through glibc's tunables on Linux with glibc only")
  script = ("import os; from fakeface_jax import cpu_runtime; print(os.getpid(), flush=True); "
            "cpu_runtime.reexec_with_huge_pages(); print(os.getpid(), "
            "os.environ['GLIBC_TUNABLES'])")
  proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                        text=True, timeout=60, cwd=REPO, check=True)
  first, restarted, again = proc.stdout.splitlines()
  # The same process (PID) printed its PID before and after the restart, once each.
  assert first == restarted == again.split()[0]
  assert again.split()[1] == cpu_runtime.HUGE_PAGES_TUNABLE
