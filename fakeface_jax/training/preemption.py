"""Turns SIGTERM / SIGINT into a request to checkpoint and stop at the next chance.

Schedulers preempt jobs with SIGTERM and people stop them with Ctrl-C; either way the
train loop should save where it is instead of dying between checkpoints. Inside
`catch_stop_signals(plan)` the first signal is acknowledged at once (a warning saying
`plan`, what the loop will do) and sets a flag the loop polls; a second one restores
the default behaviour so a stuck process can still be interrupted. The processes
of a multi-host run agree on the flag where they synchronise (`train`), so a signal that
reaches one of them stops all of them at the same step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from absl import logging

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
def catch_stop_signals(plan: str) -> Iterator[StopRequest]:
  """Turns the first stop signal into a set `StopRequest`, acknowledged with `plan`."""
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
    # Waiting for a step or a checkpoint can take a while: say at once that it is coming.
    logging.warning("stop requested (%s): %s; a second signal stops at once, without one.",
                    request.name, plan)
    for sig, old in previous.items():
      signal.signal(sig, old)

  for sig in STOP_SIGNALS:
    signal.signal(sig, handler)
  try:
    yield request
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)
