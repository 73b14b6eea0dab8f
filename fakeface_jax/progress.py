"""Progress lines of long passes (training, feature caching, face finding): how far, how
fast, and how long is left, at most every LOG_INTERVAL_S so a slow pass still shows it
is alive and a fast one does not flood the log."""

from __future__ import annotations

import time

from absl import logging

LOG_INTERVAL_S = 30.0


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  return (f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s")


class Progress:
  """Logs `WHAT: DONE/TOTAL UNIT, RATE/s, ETA T.` once LOG_INTERVAL_S has passed since the
  pass began or since its last line."""

  def __init__(self, what: str, total: int, unit: str = "images", clock=time.perf_counter):
    self.what, self.total, self.unit, self.clock = what, total, unit, clock
    self.start = self.last_line = clock()

  def update(self, done: int) -> None:
    now = self.clock()
    if now - self.last_line < LOG_INTERVAL_S:
      return
    self.last_line = now
    rate = done / (now - self.start)
    eta = format_duration((self.total - done) / rate) if rate else "unknown"
    logging.info("%s: %d/%d %s, %.1f/s, ETA %s.", self.what, done, self.total, self.unit,
                 rate, eta)
