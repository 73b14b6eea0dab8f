"""One training at a time in a workdir: an exclusive `flock` on `train.lock`.

Two trainings in one workdir would save over each other's checkpoints and metrics. The
lock is the kernel's, so it goes away with the process that holds it: a run killed with
kill -9 leaves the file but not the lock, and its rerun resumes. The file only names
the holder (pid and host) for the message a refused run prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator

from fakeface_jax import errors
from fakeface_jax import rundir


class WorkdirBusy(errors.UserError, RuntimeError):
  """Another process is training in the workdir."""


def _holder(fd: int) -> str:
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 200).decode("utf-8", "replace").strip()
  # Empty while the holder is between taking the lock and writing its name.
  return text or "another process"


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock (creating the workdir) until the block ends.

  Raises WorkdirBusy naming the holder if another process holds it.
  """
  os.makedirs(workdir, exist_ok=True)
  path = rundir.path(workdir, rundir.LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirBusy(
          f"--workdir {workdir} is in use: {_holder(fd)} is training in it ({path}); "
          "wait for it to finish or stop it, or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    yield
  finally:
    # Closing the last descriptor releases the lock.
    os.close(fd)
