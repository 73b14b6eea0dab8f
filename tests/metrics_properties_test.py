"""Metrics over any probabilities in [0, 1], edges and ties included, against references
written out here by counting; reports at the threshold they are given, not at 0.5.

Scores are drawn from a small set that holds 0, 1, 0.5 and repeated values, so ties and
both ends of the range turn up in most examples.
"""

import numpy as np
import pytest
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from fakeface_jax import classes
from fakeface_jax import metrics

SCORES = st.sampled_from([0.0, 1.0, 0.5, 0.25, 0.75, 0.1, 0.9, 0.3, 0.6, 0.95, 0.05])


@st.composite
def labelled_scores(draw, min_size=1, both_classes=False):
  n = draw(st.integers(min_size, 30))
  labels = np.array(draw(st.lists(st.sampled_from([classes.FAKE, classes.REAL]),
                                  min_size=n, max_size=n)))
  if both_classes:
    assume((labels == classes.FAKE).any() and (labels == classes.REAL).any())
  p_fake = np.array(draw(st.lists(SCORES, min_size=n, max_size=n)))
  return labels, p_fake


def auc_by_pairs(is_positive, scores):
  pos, neg = scores[is_positive], scores[~is_positive]
  return np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])


def ap_by_thresholds(is_positive, scores):
  total, recall_before = 0.0, 0.0
  for t in sorted(set(scores), reverse=True):
    admitted = scores >= t
    true_pos = np.sum(admitted & is_positive)
    recall = true_pos / is_positive.sum()
    total += (recall - recall_before) * true_pos / admitted.sum()
    recall_before = recall
  return total


def called_fake(p_fake, threshold):
  return np.where(p_fake >= threshold, classes.FAKE, classes.REAL)


@settings(max_examples=100)
@given(labelled_scores(min_size=2, both_classes=True))
def test_auc_is_the_share_of_fake_real_pairs_ordered_right_ties_half(data):
  labels, p_fake = data
  is_fake = labels == classes.FAKE
  assert metrics.roc_auc(is_fake, p_fake) == pytest.approx(auc_by_pairs(is_fake, p_fake))
  # The other class as positive reverses every pair.
  assert metrics.roc_auc(~is_fake, p_fake) == pytest.approx(1 - auc_by_pairs(is_fake, p_fake))


@given(labelled_scores())
def test_auc_and_ap_of_one_class_are_nan(data):
  labels, p_fake = data
  only = np.ones(len(labels), bool)
  assert np.isnan(metrics.roc_auc(only, p_fake)) and np.isnan(metrics.roc_auc(~only, p_fake))
  assert np.isnan(metrics.average_precision(~only, p_fake))
  assert metrics.average_precision(only, p_fake) == pytest.approx(1.0)


@settings(max_examples=100)
@given(labelled_scores(min_size=2, both_classes=True))
def test_average_precision_sums_precision_over_recall_steps_of_distinct_thresholds(data):
  labels, p_fake = data
  is_fake = labels == classes.FAKE
  assert metrics.average_precision(is_fake, p_fake) == pytest.approx(
      ap_by_thresholds(is_fake, p_fake))


@settings(max_examples=100)
@given(labelled_scores(), SCORES)
def test_counts_accuracy_and_balanced_accuracy_at_a_threshold(data, threshold):
  labels, p_fake = data
  predictions = called_fake(p_fake, threshold)
  matrix = metrics.confusion_matrix(labels, predictions)
  assert matrix.dtype == np.int64
  for true in (classes.FAKE, classes.REAL):
    for predicted in (classes.FAKE, classes.REAL):
      assert matrix[true, predicted] == np.sum((labels == true) & (predictions == predicted))
  assert metrics.accuracy(labels, predictions) == pytest.approx(np.mean(labels == predictions))
  recalls = [np.mean(predictions[labels == c] == c) for c in (classes.FAKE, classes.REAL)
             if (labels == c).any()]
  assert metrics.balanced_accuracy(labels, predictions) == pytest.approx(np.mean(recalls))


def test_metrics_of_nothing_are_nan_and_mismatched_lengths_are_refused():
  assert np.isnan(metrics.accuracy([], [])) and np.isnan(metrics.balanced_accuracy([], []))
  for metric in (metrics.accuracy, metrics.balanced_accuracy, metrics.confusion_matrix):
    with pytest.raises(ValueError, match="arrays of different lengths"):
      metric([0, 1], [0])
    with pytest.raises(ValueError, match="arrays of different lengths"):
      metric([0], [0, 1])
  for metric in (metrics.roc_auc, metrics.average_precision):
    with pytest.raises(ValueError, match="arrays of different lengths"):
      metric([True, False], [0.5])
    with pytest.raises(ValueError, match="arrays of different lengths"):
      metric([True], [0.5, 0.2])


def reliability_by_hand(labels, p_fake, num_bins, threshold):
  fake = p_fake >= threshold
  confidence = np.where(fake, p_fake, 1 - p_fake)
  correct = fake == (labels == classes.FAKE)
  bins = [min(int(c * num_bins), num_bins - 1) for c in confidence]
  return confidence, correct, np.array(bins)


@settings(max_examples=100)
@given(labelled_scores(), SCORES, st.sampled_from([1, 2, 4, 15]))
def test_reliability_bins_hold_every_example_once_confidence_one_in_the_last(
    data, threshold, num_bins):
  labels, p_fake = data
  curve = metrics.reliability_curve(labels, p_fake, num_bins, threshold)
  confidence, correct, bins = reliability_by_hand(labels, p_fake, num_bins, threshold)
  assert sum(curve["count"]) == len(labels)
  assert curve["count"] == [int(np.sum(bins == b)) for b in range(num_bins)]
  for b in range(num_bins):
    if curve["count"][b]:
      assert curve["confidence"][b] == pytest.approx(confidence[bins == b].mean())
      assert curve["accuracy"][b] == pytest.approx(correct[bins == b].mean())
    else:
      assert np.isnan(curve["confidence"][b]) and np.isnan(curve["accuracy"][b])
  ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * np.sum(bins == b)
            for b in range(num_bins) if np.any(bins == b)) / len(labels)
  assert metrics.expected_calibration_error(labels, p_fake, num_bins,
                                            threshold) == pytest.approx(ece)


def test_a_certain_and_right_detector_is_perfectly_calibrated():
  labels = np.array([classes.FAKE, classes.FAKE, classes.REAL, classes.REAL])
  p_fake = np.array([1.0, 1.0, 0.0, 0.0])
  curve = metrics.reliability_curve(labels, p_fake, num_bins=15)
  assert curve["count"][-1] == 4 and sum(curve["count"]) == 4
  assert metrics.expected_calibration_error(labels, p_fake) == 0.0
  assert np.isnan(metrics.expected_calibration_error([], []))


@settings(max_examples=150)
@given(labelled_scores(), SCORES)
def test_the_report_is_made_at_its_threshold_a_score_on_it_counting_fake(data, threshold):
  labels, p_fake = data
  report = metrics.classification_report(labels, p_fake, threshold)
  predictions = called_fake(p_fake, threshold)
  assert report["threshold"] == threshold
  assert report["confusion_matrix"] == metrics.confusion_matrix(labels, predictions).tolist()
  assert report["accuracy"] == pytest.approx(np.mean(predictions == labels))
  assert report["balanced_accuracy"] == pytest.approx(
      metrics.balanced_accuracy(labels, predictions), nan_ok=True)
  assert report["count"] == len(labels)
  assert report["count_fake"] == np.sum(labels == classes.FAKE)
  assert report["count_real"] == np.sum(labels == classes.REAL)
  np.testing.assert_equal(report["reliability"],
                          metrics.reliability_curve(labels, p_fake, threshold=threshold))
  assert report["ece"] == pytest.approx(
      metrics.expected_calibration_error(labels, p_fake, threshold=threshold))
  is_fake = labels == classes.FAKE
  assert report["roc_auc"] == pytest.approx(metrics.roc_auc(is_fake, p_fake), nan_ok=True)
  assert report["average_precision"] == pytest.approx(
      metrics.average_precision(is_fake, p_fake), nan_ok=True)


def test_a_report_away_from_one_half_differs_from_the_one_at_one_half():
  labels = np.array([classes.FAKE, classes.FAKE, classes.REAL, classes.REAL])
  p_fake = np.array([0.9, 0.4, 0.3, 0.1])
  at_run = metrics.classification_report(labels, p_fake, threshold=0.35)
  assert at_run["confusion_matrix"] == [[2, 0], [0, 2]] and at_run["accuracy"] == 1.0
  assert metrics.classification_report(labels, p_fake)["accuracy"] == 0.75


@settings(max_examples=100)
@given(labelled_scores(), SCORES, st.lists(st.sampled_from("abc"), min_size=30, max_size=30))
def test_each_groups_accuracy_is_of_its_own_images(data, threshold, names):
  labels, p_fake = data
  groups = np.array(names[:len(labels)])
  report = metrics.classification_report(labels, p_fake, threshold, groups=groups)
  predictions = called_fake(p_fake, threshold)
  assert sorted(report["groups"]) == sorted(set(groups))
  for g, row in report["groups"].items():
    mine = groups == g
    assert row["count"] == mine.sum()
    assert row["accuracy"] == pytest.approx(np.mean(predictions[mine] == labels[mine]))


def score_at(labels, p_fake, t, groups, weights):
  predictions = called_fake(p_fake, t)
  present = np.unique(groups)
  w = np.asarray(weights, float)[present]
  w = w / w.sum()
  return sum(wi * metrics.balanced_accuracy(labels[groups == g], predictions[groups == g])
             for g, wi in zip(present, w))


@settings(max_examples=100)
@given(labelled_scores(min_size=2, both_classes=True),
       st.lists(st.integers(0, 2), min_size=30, max_size=30),
       st.lists(st.floats(0.1, 5.0), min_size=3, max_size=3))
def test_the_best_threshold_scores_what_it_says_and_no_cut_scores_more(data, group_list,
                                                                       weights):
  labels, p_fake = data
  groups = np.array(group_list[:len(labels)])
  threshold, score = metrics.best_threshold(labels, p_fake, groups, weights)
  assert score == pytest.approx(score_at(labels, p_fake, threshold, groups, weights))
  # Every cut between distinct scores, and the two that call everything one class.
  values = np.unique(p_fake)
  cuts = np.r_[0.0, (values[1:] + values[:-1]) / 2, 1.5]
  assert score >= max(score_at(labels, p_fake, t, groups, weights) for t in cuts) - 1e-12


def test_the_best_threshold_weighs_groups_by_their_own_weight_in_any_position():
  # Group 1 (second) is separated at 0.65, group 0 at 0.35: the heavier one wins.
  labels = np.array([0, 1, 0, 1])
  p_fake = np.array([0.4, 0.3, 0.7, 0.6])
  groups = np.array([0, 0, 1, 1])
  low, _ = metrics.best_threshold(labels, p_fake, groups, [5.0, 1.0])
  high, _ = metrics.best_threshold(labels, p_fake, groups, [1.0, 5.0])
  assert low == pytest.approx(0.35) and high == pytest.approx(0.65)
  swapped, _ = metrics.best_threshold(labels, p_fake, 1 - groups, [1.0, 5.0])
  assert swapped == pytest.approx(0.35)


@settings(max_examples=100)
@given(labelled_scores(min_size=2, both_classes=True), st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_the_best_threshold_never_calls_more_reals_fake_than_the_cap(data, cap):
  labels, p_fake = data
  threshold, _ = metrics.best_threshold(labels, p_fake, max_real_fpr=cap)
  reals = labels == classes.REAL
  assert np.mean(p_fake[reals] >= threshold) <= cap
  # Calling everything real (a threshold above 1) always qualifies, even at a cap of 0.
  assert threshold <= np.nextafter(1.0, 2.0)


def test_the_best_threshold_with_a_score_of_exactly_one_can_call_it_fake():
  labels = np.array([classes.FAKE, classes.REAL, classes.REAL])
  p_fake = np.array([1.0, 0.2, 0.1])
  threshold, score = metrics.best_threshold(labels, p_fake)
  assert score == 1.0 and 0.2 < threshold <= 1.0


def test_a_group_without_a_weight_is_refused():
  with pytest.raises(ValueError, match="group 2 has no weight"):
    metrics.best_threshold([0, 1, 1], [0.2, 0.4, 0.6], [0, 1, 2], [1.0, 1.0])


def test_the_markdown_report_puts_each_count_in_its_cell():
  labels = np.array([0, 0, 0, 1, 1])
  p_fake = np.array([0.9, 0.8, 0.2, 0.7, 0.1])  # 2 fakes caught, 1 missed, 1 real called fake.
  report = metrics.classification_report(labels, p_fake, groups=np.array(list("aabbb")))
  text = metrics.report_markdown(report)
  assert "| fake | 2 | 1 |" in text and "| real | 1 | 1 |" in text
  assert "| threshold | 0.5000 |" in text and "| count | 5 |" in text
  assert "| accuracy | 0.6000 |" in text
  assert "| a | 2 | 1.0000 |" in text and "| b | 3 | 0.3333 |" in text
