"""Progress lines of long passes: due by time, with the rate and the time left."""

from conftest import FakeClock
from fakeface_jax import progress


def test_a_line_comes_once_the_interval_has_passed_with_rate_and_eta(monkeypatch):
  # The lines themselves, whatever absl's verbosity another test left behind.
  lines = []
  monkeypatch.setattr(progress.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  clock = FakeClock()
  shown = progress.Progress("Features", 1000, clock=clock)
  clock.now += progress.LOG_INTERVAL_S - 1
  shown.update(100)
  assert not lines
  clock.now += 11  # 40 s for 200 images: 5/s, 800 left.
  shown.update(200)
  assert lines == ["Features: 200/1000 images, 5.0/s, ETA 2m40s."]
  clock.now += 1
  shown.update(205)
  assert len(lines) == 1  # The next is due LOG_INTERVAL_S after this one.
  clock.now += progress.LOG_INTERVAL_S
  shown.update(0)
  assert lines[-1].endswith("0/1000 images, 0.0/s, ETA unknown.")


def test_durations_read_in_minutes_then_hours():
  assert progress.format_duration(59.9) == "0m59s"
  assert progress.format_duration(3599) == "59m59s"
  assert progress.format_duration(3600 * 3 + 61) == "3h01m"
  assert progress.format_duration(-5) == "0m00s"
