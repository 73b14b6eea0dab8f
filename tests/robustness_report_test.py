"""evaluate's robustness report: each degradation's images and JPEG tables reach the model,
noise drawn from the given seed, and every row's metrics at the given threshold."""

import numpy as np
import pytest

from fakeface_jax import classes
from fakeface_jax.data import degradations
from fakeface_jax.data import jpeg_tables
from fakeface_jax.evaluation import split_reports
from fakeface_jax.evaluation import metrics


class RecordingPredictor:
  """Scores an image by its mean brightness and keeps what it was given."""

  def __init__(self):
    self.calls = []

  def p_fake(self, images, tables=None):
    self.calls.append((np.array(images), None if tables is None else np.array(tables)))
    return images.reshape(len(images), -1).mean(axis=1) / 255.0


class Split:
  def __init__(self, images, tables, labels):
    self.images, self.tables, self.labels = images, tables, labels

  def __len__(self):
    return len(self.labels)

  def take_batch(self, positions):
    return self.images[positions], None if self.tables is None else self.tables[positions]


def _split(with_tables: bool) -> Split:
  rng = np.random.default_rng(0)
  levels = np.array([30, 90, 120, 150, 200, 230])  # Mean brightness sets P(fake).
  images = np.clip(levels[:, None, None, None] + rng.integers(-20, 21, (6, 16, 12, 3)),
                   0, 255).astype(np.uint8)
  tables = (np.stack([jpeg_tables.standard_tables(q) for q in (50, 60, 70, 80, 90, 95)])
            if with_tables else None)
  labels = np.array([classes.REAL, classes.REAL, classes.FAKE, classes.REAL, classes.FAKE,
                     classes.FAKE])
  return Split(images, tables, labels)


@pytest.mark.parametrize("with_tables", [True, False])
def test_each_degradation_reaches_the_model_with_the_tables_it_leaves(with_tables):
  data, predictor = _split(with_tables), RecordingPredictor()
  rows = split_reports.robustness_report(predictor, data, threshold=0.5, seed=7)
  assert [r["degradation"] for r in rows] == list(degradations.DEGRADATIONS)
  for (images, tables), name in zip(predictor.calls, degradations.DEGRADATIONS):
    np.testing.assert_array_equal(images, degradations.DEGRADATIONS[name](data.images, 7))
    after = degradations.TABLES_AFTER.get(name)
    if not with_tables:
      assert tables is None
    elif after is None:
      np.testing.assert_array_equal(tables, data.tables)
    else:
      np.testing.assert_array_equal(tables, np.broadcast_to(after, data.tables.shape))


def test_the_noise_follows_the_seed():
  data = _split(False)
  noisy = {}
  for seed in (7, 8):
    predictor = RecordingPredictor()
    split_reports.robustness_report(predictor, data, threshold=0.5, seed=seed)
    noisy[seed] = predictor.calls[list(degradations.DEGRADATIONS).index("noise5")][0]
  np.testing.assert_array_equal(noisy[7], degradations.gaussian_noise(data.images, 5.0, 7))
  assert not np.array_equal(noisy[7], noisy[8])


def test_every_row_is_at_the_given_threshold():
  data = _split(False)
  threshold = 0.42  # Between the second and third images' scores: 0.5 calls one more real.
  rows = split_reports.robustness_report(RecordingPredictor(), data, threshold, seed=0)
  clean = rows[0]
  p_fake = data.images.reshape(6, -1).mean(axis=1) / 255.0
  predictions = np.where(p_fake >= threshold, classes.FAKE, classes.REAL)
  assert clean["accuracy"] == pytest.approx(metrics.accuracy(data.labels, predictions))
  at_half = np.where(p_fake >= 0.5, classes.FAKE, classes.REAL)
  assert metrics.accuracy(data.labels, at_half) != clean["accuracy"]
  assert clean["ece"] == pytest.approx(
      metrics.expected_calibration_error(data.labels, p_fake, threshold=threshold))
