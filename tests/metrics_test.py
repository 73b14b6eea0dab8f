"""Metrics against hand-computed values."""

import math

import numpy as np
import pytest

from fakeface_jax import classes
from fakeface_jax.evaluation import metrics


def test_confusion_matrix_rows_are_true_classes():
  m = metrics.confusion_matrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
  np.testing.assert_array_equal(m, [[1, 1], [1, 2]])


def test_accuracy_and_balanced_accuracy():
  labels = [0, 0, 0, 0, 1]
  predictions = [0, 0, 0, 0, 0]
  assert metrics.accuracy(labels, predictions) == 0.8
  assert metrics.balanced_accuracy(labels, predictions) == 0.5  # (4/4 + 0/1) / 2


def test_roc_auc_hand_computed():
  # Pairs (pos, neg): (.9,.5) win, (.9,.1) win, (.5,.5) tie = 1/2, (.5,.1) win -> 3.5/4.
  assert metrics.roc_auc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == 0.875
  assert metrics.roc_auc([1, 0], [0.2, 0.8]) == 0.0
  assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.8]))


def test_average_precision_hand_computed():
  # Ranked: .9 pos (P 1, R .5), .8 neg, .7 pos (P 2/3, R 1) -> .5*1 + .5*2/3.
  ap = metrics.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
  assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
  # A tie between a positive and a negative is one threshold: P = 1/2 at R = 1.
  assert metrics.average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_expected_calibration_error_hand_computed():
  # Labels: fake=0. p_fake .9 for two fakes and one real: confidence .9, accuracy 2/3.
  # p_fake .2 (predicted real, confidence .8) for one real: accuracy 1.
  labels = [0, 0, 1, 1]
  p_fake = [0.9, 0.9, 0.9, 0.2]
  expected = 3 / 4 * abs(2 / 3 - 0.9) + 1 / 4 * abs(1 - 0.8)
  assert metrics.expected_calibration_error(labels, p_fake) == pytest.approx(expected)


def test_best_threshold_separates_when_possible():
  labels = np.array([0, 0, 1, 1])
  p_fake = np.array([0.3, 0.25, 0.2, 0.1])  # All below 0.5, but perfectly ranked.
  threshold, score = metrics.best_threshold(labels, p_fake)
  assert score == 1.0 and 0.2 < threshold <= 0.25


def test_best_threshold_maximises_balanced_not_plain_accuracy_on_imbalanced_data():
  # 2 fakes, 8 reals. Predicting fake for p >= 0.5 (only 0.6) is right 9 times in 10
  # but catches one fake in two (balanced 0.75); p >= 0.25 also catches the 0.3 fake at
  # the cost of the 0.35 real: 9 in 10 as well, balanced (2/2 + 7/8) / 2.
  labels = np.array([0, 0] + [1] * 8)
  p_fake = np.array([0.6, 0.3, 0.35, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
  threshold, score = metrics.best_threshold(labels, p_fake)
  assert threshold == pytest.approx(0.25)
  assert score == pytest.approx((1 + 7 / 8) / 2)


def test_best_threshold_breaks_ties_towards_one_half():
  # Balanced accuracy 0.75 at t = 0.75 (between 0.9 and 0.6) and at t = 0.2 (between 0.3
  # and 0.1); 0.75 is nearer 0.5. Candidates below 0.5 come first in the search order.
  labels = np.array([0, 1, 0, 1])
  p_fake = np.array([0.9, 0.6, 0.3, 0.1])
  assert metrics.best_threshold(labels, p_fake) == (pytest.approx(0.75), 0.75)


def _two_sources():
  """A large source separated at 0.3 and a small one whose reals reach 0.6. Pooled, the
  large one sets the threshold and the small one's reals are called fake; its fakes
  spread up to 0.95, so just above 0.6 loses it less than 0.3 loses the small one."""
  big_labels = np.array([0] * 50 + [1] * 50)
  big_p = np.r_[np.linspace(0.35, 0.95, 50), np.linspace(0.05, 0.25, 50)]
  small_labels = np.array([0] * 5 + [1] * 5)
  small_p = np.r_[np.linspace(0.75, 0.95, 5), np.linspace(0.3, 0.6, 5)]
  return (np.r_[big_labels, small_labels], np.r_[big_p, small_p],
          np.r_[np.zeros(100, int), np.ones(10, int)])


def _mean_balanced(labels, p_fake, groups, threshold):
  predictions = np.where(p_fake >= threshold, 0, 1)
  return np.mean([metrics.balanced_accuracy(labels[groups == g], predictions[groups == g])
                  for g in (0, 1)])


def test_best_threshold_with_groups_maximises_their_mean_balanced_accuracy():
  labels, p_fake, groups = _two_sources()
  pooled, _ = metrics.best_threshold(labels, p_fake)
  threshold, score = metrics.best_threshold(labels, p_fake, groups)
  assert pooled < 0.35 and 0.6 < threshold < 0.65
  assert score == pytest.approx(_mean_balanced(labels, p_fake, groups, threshold))
  assert score > _mean_balanced(labels, p_fake, groups, pooled) + 0.05


def test_best_threshold_follows_the_group_weights():
  labels, p_fake, groups = _two_sources()
  threshold, _ = metrics.best_threshold(labels, p_fake, groups, group_weights=[100, 1])
  assert threshold < 0.35


def _real_fpr(labels, p_fake, threshold):
  return np.mean(p_fake[labels == 1] >= threshold)


def test_best_threshold_calls_at_most_the_cap_of_the_reals_fake():
  labels, p_fake, _ = _two_sources()
  pooled, _ = metrics.best_threshold(labels, p_fake)
  capped, score = metrics.best_threshold(labels, p_fake, max_real_fpr=0.05)
  assert _real_fpr(labels, p_fake, pooled) > 0.05 >= _real_fpr(labels, p_fake, capped)
  # The best balanced accuracy among the thresholds within the cap.
  feasible = [t for t in np.r_[np.unique(p_fake), 1.0001]
              if _real_fpr(labels, p_fake, t) <= 0.05]
  assert score == pytest.approx(max(metrics.balanced_accuracy(
      labels, np.where(p_fake >= t, 0, 1)) for t in feasible))


def test_best_threshold_caps_each_groups_real_fpr():
  labels, p_fake, groups = _two_sources()
  small = groups == 1
  # Weighted towards the large source, the threshold calls most of the small one's
  # reals fake; the cap holds in each group, not over all reals pooled.
  weighted, _ = metrics.best_threshold(labels, p_fake, groups, group_weights=[100, 1])
  capped, _ = metrics.best_threshold(labels, p_fake, groups, group_weights=[100, 1],
                                     max_real_fpr=0.2)
  assert _real_fpr(labels[small], p_fake[small], weighted) > 0.5
  assert _real_fpr(labels[small], p_fake[small], capped) <= 0.2
  assert _real_fpr(labels[~small], p_fake[~small], capped) <= 0.2


def test_best_threshold_refuses_a_group_without_weight():
  labels, p_fake, groups = _two_sources()
  with pytest.raises(ValueError, match="group 1 has no weight"):
    metrics.best_threshold(labels, p_fake, groups, group_weights=[1.0])


@pytest.mark.parametrize("fakes_score_higher", [True, False])
def test_report_counts_fake_as_the_positive_class(fakes_score_higher):
  # Labels: 0 = fake. Every fake scoring above every real is a perfect detector of fakes
  # (AUC = AP = 1); the reverse ranking is the worst one (AUC 0, AP at its floor).
  labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
  high, low = [0.9, 0.8, 0.7], [0.4, 0.3, 0.2, 0.1, 0.05]
  p_fake = np.array(high + low if fakes_score_higher else [0.1, 0.05, 0.02] + [0.9] * 5)
  report = metrics.classification_report(labels, p_fake)
  if fakes_score_higher:
    assert report["roc_auc"] == 1.0 and report["average_precision"] == 1.0
    assert report["confusion_matrix"] == [[3, 0], [0, 5]]
  else:
    assert report["roc_auc"] == 0.0
    # The five reals (tied) come first; each fake then adds a third of recall at
    # precision 1/6, 2/7 and 3/8.
    assert report["average_precision"] == pytest.approx((1 / 6 + 2 / 7 + 3 / 8) / 3)
    assert report["confusion_matrix"] == [[0, 3], [5, 0]]


def test_classification_report_with_groups():
  report = metrics.classification_report([0, 0, 1, 1], [0.9, 0.4, 0.2, 0.1],
                                         groups=["easy", "hard", "none", "none"])
  assert report["accuracy"] == 0.75
  assert report["confusion_matrix"] == [[1, 1], [0, 2]]
  assert report["groups"]["hard"] == {"count": 1, "accuracy": 0.0}
  assert "| accuracy | 0.7500 |" in metrics.report_markdown(report)


def test_mismatched_lengths_raise():
  with pytest.raises(ValueError, match="different lengths"):
    metrics.accuracy([0, 1], [0])


@pytest.mark.parametrize("call", [
    lambda: metrics.reliability_curve([0, 1, 1], [0.2, 0.9]),
    lambda: metrics.classification_report([0, 1, 1], [0.2, 0.9]),
    # Groups one short: no image may be counted under a neighbour's group.
    lambda: metrics.classification_report([0, 1, 1], [0.2, 0.9, 0.4], groups=["a", "b"]),
])
def test_every_report_refuses_arrays_of_different_lengths(call):
  with pytest.raises(ValueError, match=r"different lengths: \[3, 2\]"):
    call()


def test_confusion_title_names_the_split_accuracy_and_threshold():
  title = metrics.confusion_title([[3, 1], [0, 4]], "test", threshold=0.42)
  assert title == "Confusion matrix, test:\naccuracy 0.875 at threshold 0.42 (8 images)"
  assert metrics.confusion_title([[1, 0], [0, 1]], None) == (
      "Confusion matrix:\naccuracy 1.000 (2 images)")


def test_called_fake_share_is_the_real_fpr_or_the_fake_recall_and_no_verdict_is_not_fake():
  labels = np.array([classes.REAL] * 4 + [classes.FAKE] * 2)
  predicted = np.array([classes.FAKE, classes.REAL, -1, classes.REAL, classes.FAKE, -1])
  assert metrics.called_fake_share(labels, predicted, classes.REAL) == 0.25
  assert metrics.called_fake_share(labels, predicted, classes.FAKE) == 0.5
  assert np.isnan(metrics.called_fake_share(labels[:4], predicted[:4], classes.FAKE))
  report = metrics.classification_report(labels, np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.4]))
  assert report["real_false_positive_rate"] == 0.25
