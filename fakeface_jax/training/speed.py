"""Progress of a training run: images/s and ETA, and when a progress line is due."""

from __future__ import annotations

import time
from typing import Any

import jax

from fakeface_jax import progress

# Longest time between waits for the device to finish the steps dispatched so far.
SYNC_INTERVAL_S = 1.0


class Throughput:
  """Images/s, ETA, and whether a progress line is due.

  Rates are timed from the end of the run's first step, which compiles; a resumed run
  compiles again, so its first step is left out too.
  """

  def __init__(self, total_steps: int, batch_size: int, clock=time.perf_counter):
    self.steps_left = total_steps
    self.batch_size = batch_size
    self.clock = clock
    self.start: float | None = None
    self.images = 0
    self.last_line = clock()
    self.last_sync = self.last_line
    self.sync_every = 1  # Steps between waits for the device; adapts to the step time.
    self.unsynced = 0

  def step_done(self, state: Any) -> None:
    self.steps_left -= 1
    self.unsynced += 1
    if self.start is None:
      self._sync(state)
      self.start = self.last_sync
      return
    self.images += self.batch_size
    if self.unsynced >= self.sync_every:
      self._sync(state)

  def _sync(self, state: Any) -> None:
    """Waits for the dispatched steps, about every SYNC_INTERVAL_S.

    JAX dispatches steps asynchronously: without a wait the loop can queue a whole
    epoch in seconds, and rates and lines due by time would describe dispatched steps,
    not finished ones (the detector printed nothing for two minutes that way). One wait
    a second costs nothing measurable on any backend.
    """
    jax.block_until_ready(state)
    now = self.clock()
    seconds_per_step = (now - self.last_sync) / self.unsynced
    self.sync_every = max(1, round(SYNC_INTERVAL_S / max(seconds_per_step, 1e-6)))
    self.last_sync, self.unsynced = now, 0

  def line_due(self) -> bool:
    """Whether progress.LOG_INTERVAL_S passed since the last line. Each process asks its own
    clock: a line needs no agreement between processes (stopping does)."""
    return self.clock() - self.last_line >= progress.LOG_INTERVAL_S

  def summary(self) -> str:
    self.last_line = self.clock()
    if not self.images:
      return "compiled"
    rate = self.images / (self.last_line - self.start)
    eta = progress.format_duration(self.steps_left * self.batch_size / rate)
    return f"{rate:.0f} img/s | ETA {eta}"
