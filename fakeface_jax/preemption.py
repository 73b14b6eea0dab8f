"""Turns SIGTERM / SIGINT into a request to checkpoint and stop at the next chance.

Schedulers preempt jobs with SIGTERM and people stop them with Ctrl-C; either way the
train loop should save where it is instead of dying between checkpoints. Inside
`catch_stop_signals()` the first signal only sets a flag the loop polls; a second one
restores the default behaviour so a stuck process can still be interrupted. The processes
of a multi-host run agree on the flag where they synchronise (`train`), so a signal that
reaches one of them stops all of them at the same step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
  """Set by a stop signal; `name` is the signal's name once one arrived."""

  def __init__(self):
    self.name: str | None = None

  def __bool__(self) -> bool:
    return self.name is not None

  @property
  def reason(self) -> str:
    return self.name or "another process's stop signal"


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[StopRequest]:
  request = StopRequest()
  # Signal handlers can only be installed from the main thread; elsewhere (e.g. a
  # notebook's worker thread) signals keep their default behaviour.
  if threading.current_thread() is not threading.main_thread():
    yield request
    return
  previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

  def handler(signum, frame):
    del frame
    request.name = signal.Signals(signum).name
    for sig, old in previous.items():
      signal.signal(sig, old)

  for sig in STOP_SIGNALS:
    signal.signal(sig, handler)
  try:
    yield request
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)
