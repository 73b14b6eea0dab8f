"""Metrics over any probabilities in [0, 1], edges and ties included, against references
written out here by counting; reports at the threshold they are given, not at 0.5.

Scores are drawn from a small set that holds 0, 1, 0.5 and repeated values, so ties and
both ends of the range turn up in most examples.
"""

import json
import types

import numpy as np
import pytest
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from fakeface_jax import classes
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax.evaluation import split_reports
from fakeface_jax.evaluation import metrics
from fakeface_jax.training import final

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


# ----------------------------------------------------------------------------------------
# Invariances, the threshold's tie-break and group bookkeeping, the reports made with it.
# ----------------------------------------------------------------------------------------


@settings(max_examples=100)
@given(labelled_scores(min_size=2, both_classes=True))
def test_auc_and_ap_see_only_the_order_of_the_scores(data):
  labels, p_fake = data
  is_fake = labels == classes.FAKE
  auc, ap = metrics.roc_auc(is_fake, p_fake), metrics.average_precision(is_fake, p_fake)
  for increasing in (p_fake ** 3, 0.25 + p_fake / 2, np.log1p(p_fake) * 7 - 3):
    assert metrics.roc_auc(is_fake, increasing) == pytest.approx(auc)
    assert metrics.average_precision(is_fake, increasing) == pytest.approx(ap)
  # A decreasing map reverses every pair but keeps ties tied.
  assert metrics.roc_auc(is_fake, 1 - p_fake) == pytest.approx(1 - auc)
  assert metrics.roc_auc(~is_fake, 1 - p_fake) == pytest.approx(auc)
  # The order of the examples does not matter.
  order = np.random.default_rng(len(labels)).permutation(len(labels))
  assert metrics.roc_auc(is_fake[order], p_fake[order]) == pytest.approx(auc)
  assert metrics.average_precision(is_fake[order], p_fake[order]) == pytest.approx(ap)


def _candidates(p_fake):
  values = np.unique(p_fake)
  return np.r_[0.0, (values[1:] + values[:-1]) / 2, 0.5, np.nextafter(1.0, 2.0)]


@settings(max_examples=150)
@given(labelled_scores(min_size=2, both_classes=True))
def test_of_equally_good_thresholds_the_one_nearest_one_half_is_chosen(data):
  labels, p_fake = data
  threshold, score = metrics.best_threshold(labels, p_fake)
  groups, weights = np.zeros(len(labels), int), [1.0]
  candidates = _candidates(p_fake)
  scores = np.array([score_at(labels, p_fake, t, groups, weights) for t in candidates])
  best = candidates[scores >= scores.max() - metrics.SCORE_TIE_TOLERANCE]
  assert score == pytest.approx(scores.max())
  assert abs(threshold - 0.5) == pytest.approx(np.abs(best - 0.5).min())


def test_a_tie_below_one_half_beats_a_tie_far_above_it():
  # Balanced accuracy 0.75 between 0.3 and 0.48 (0.39) and between 0.85 and 0.95
  # (0.9); 0.5 itself scores 0.5. 0.39 is nearer 0.5, though found earlier.
  labels = np.array([classes.FAKE, classes.REAL, classes.FAKE, classes.REAL])
  p_fake = np.array([0.95, 0.85, 0.48, 0.3])
  threshold, score = metrics.best_threshold(labels, p_fake)
  assert threshold == pytest.approx(0.39) and score == pytest.approx(0.75)


def test_a_tie_broken_by_rounding_alone_still_goes_to_the_threshold_nearest_one_half():
  # Found by hypothesis: with the group names reversed, the weighted sum at 1.0 came out
  # one bit above the same score at 0.5, and the threshold jumped from 0.5 to 1.0.
  labels = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1])
  p_fake = np.zeros(len(labels))
  p_fake[10:12] = 1.0
  groups = np.array([1, 1, 1, 2, 1, 1, 1, 1, 1, 0, 0, 2, 1, 1, 1, 1, 1, 1])
  weights = np.array([1.0, 1.4375, 1.0])
  for names, order in ((groups, weights), (2 - groups, weights[::-1])):
    threshold, _ = metrics.best_threshold(labels, p_fake, names, order, max_real_fpr=0.5)
    assert threshold == 0.5


@settings(max_examples=60)
@given(labelled_scores(min_size=2, both_classes=True),
       st.lists(st.integers(0, 2), min_size=30, max_size=30),
       st.lists(st.floats(0.1, 5.0), min_size=3, max_size=3),
       st.sampled_from([0.2, 0.5, 1.0]), st.integers(1, 4))
def test_the_best_threshold_does_not_depend_on_group_names_order_or_weight_scale(
    data, group_list, weights, cap, offset):
  labels, p_fake = data
  groups = np.array(group_list[:len(labels)])
  expected = metrics.best_threshold(labels, p_fake, groups, weights, max_real_fpr=cap)
  # Examples shuffled with their groups.
  order = np.random.default_rng(len(labels)).permutation(len(labels))
  assert metrics.best_threshold(labels[order], p_fake[order], groups[order], weights,
                                max_real_fpr=cap) == pytest.approx(expected)
  # Groups renamed to other indices (none of them the first), each keeping its weight.
  renamed = np.full(offset + 3, 1000.0)
  renamed[offset:] = weights
  assert metrics.best_threshold(labels, p_fake, groups + offset, renamed,
                                max_real_fpr=cap) == pytest.approx(expected)
  # Reversed names: group g is now 2 - g, and so is its weight.
  assert metrics.best_threshold(labels, p_fake, 2 - groups, weights[::-1],
                                max_real_fpr=cap) == pytest.approx(expected)
  assert metrics.best_threshold(labels, p_fake, groups, np.asarray(weights) * 7.5,
                                max_real_fpr=cap) == pytest.approx(expected)


def test_a_group_that_is_not_first_is_weighed_by_its_own_weight():
  # Groups 1 and 2 only (no group 0): group 2 is separated at 0.65, group 1 at 0.35.
  labels = np.array([0, 1, 0, 1])
  p_fake = np.array([0.4, 0.3, 0.7, 0.6])
  groups = np.array([1, 1, 2, 2])
  low, _ = metrics.best_threshold(labels, p_fake, groups, [100.0, 5.0, 1.0])
  high, _ = metrics.best_threshold(labels, p_fake, groups, [100.0, 1.0, 5.0])
  assert low == pytest.approx(0.35) and high == pytest.approx(0.65)


def _source(p_fake, labels):
  """A mixture part whose "images" (N, 1) are their own P(fake)."""
  return input_pipeline.ArraySplit(images=np.asarray(p_fake, float)[:, None],
                                   labels=np.asarray(labels),
                                   difficulty=np.array(["none"] * len(labels)))


def scores_itself():
  return types.SimpleNamespace(score=lambda images, tables: (images[:, 0], None))


@st.composite
def three_sources(draw):
  parts = []
  for _ in range(3):
    labels, p_fake = draw(labelled_scores(min_size=1))
    parts.append(_source(p_fake, labels))
  return mixture.MixedSplit(parts, ["first", "second", "third"], np.array([0.5, 0.3, 0.2]))


@settings(max_examples=60)
@given(three_sources(), SCORES)
def test_every_source_of_a_mixture_is_reported_at_the_threshold_given(split, threshold):
  p_fake = np.concatenate([part.images[:, 0] for part in split.parts])
  per_source = metrics.per_source_metrics(split, p_fake, threshold)
  assert list(per_source) == ["first", "second", "third"]
  for name, part in zip(split.names, split.parts):
    own = part.images[:, 0]
    report = metrics.classification_report(part.labels, own, threshold)
    predictions = called_fake(own, threshold)
    assert per_source[name]["count"] == len(part)
    assert per_source[name]["accuracy"] == pytest.approx(np.mean(predictions == part.labels))
    assert per_source[name]["balanced_accuracy"] == pytest.approx(
        report["balanced_accuracy"])
    assert per_source[name]["roc_auc"] == pytest.approx(report["roc_auc"], nan_ok=True)
  # The whole split's report, its sources and the figure at 0.5 beside it.
  report = split_reports.split_report(scores_itself(), split, threshold)
  predictions = called_fake(p_fake, threshold)
  assert report["threshold"] == threshold
  assert report["accuracy"] == pytest.approx(np.mean(predictions == split.labels))
  assert report["confusion_matrix"] == metrics.confusion_matrix(split.labels,
                                                                predictions).tolist()
  np.testing.assert_equal(report["sources"], per_source)
  assert report["accuracy_at_0.5"] == pytest.approx(
      np.mean(called_fake(p_fake, 0.5) == split.labels))


def test_a_mixtures_second_source_at_a_threshold_where_one_half_disagrees():
  first = _source([0.9, 0.1], [classes.FAKE, classes.REAL])
  second = _source([0.4, 0.35, 0.2], [classes.FAKE, classes.FAKE, classes.REAL])
  split = mixture.MixedSplit([first, second], ["first", "second"], np.array([0.5, 0.5]))
  p_fake = np.array([0.9, 0.1, 0.4, 0.35, 0.2])
  per_source = metrics.per_source_metrics(split, p_fake, 0.3)
  assert per_source["second"]["accuracy"] == 1.0  # At 0.5 it would be 1/3.
  assert metrics.per_source_metrics(split, p_fake)["second"]["accuracy"] == pytest.approx(1 / 3)
  report = split_reports.split_report(scores_itself(), split, 0.3)
  assert report["accuracy"] == 1.0 and report["accuracy_at_0.5"] == pytest.approx(0.6)
  assert report["sources"]["second"]["accuracy"] == 1.0


def _stub_run(workdir, data, scores):
  """What `final.test_best_checkpoint` reads of a run: checkpoints, evaluation and data."""
  def evaluate_role(params, role):
    del params
    p_fake, labels = scores[role], data[role].labels
    argmax = called_fake(p_fake, 0.5)
    return {"accuracy": float(np.mean(argmax == labels)), "loss": 0.1,
            "confusion_matrix": metrics.confusion_matrix(labels, argmax).tolist(),
            "p_fake": p_fake}
  checkpoints = types.SimpleNamespace(
      wait_until_finished=lambda: None, best_step=lambda: 7, close=lambda: None,
      restore=lambda step, state: (state, {"epoch": 2}))
  log = types.SimpleNamespace(rows=[{"train_accuracy": 0.5}], close=lambda: None)
  config = types.SimpleNamespace(max_real_fpr=1.0)
  return types.SimpleNamespace(checkpoints=checkpoints, evaluate=evaluate_role, data=data,
                               config=config, log=log, workdir=str(workdir))


def test_the_final_test_reports_at_the_validation_threshold_and_fakes_as_positive(
    tmp_path, monkeypatch):
  fake, real = classes.FAKE, classes.REAL
  # Validation: fakes 0.3-0.4, reals 0.1-0.2 in both sources, so the threshold is
  # about 0.25; at 0.5 the test's fakes at 0.3-0.45 would be called real.
  validation = [(0.4, fake), (0.3, fake), (0.2, real), (0.1, real)]
  test_first = [(0.9, fake), (0.05, real), (0.15, real)]
  test_second = [(0.45, fake), (0.35, fake), (0.3, fake), (0.2, real), (0.1, real)]

  def mixed(first, second):
    parts = [_source(*zip(*[(p, label) for p, label in rows])) for rows in (first, second)]
    return mixture.MixedSplit(parts, ["first", "second"], np.array([0.5, 0.5]))

  data = {"train": mixed(validation, validation), "validation": mixed(validation, validation),
          "test": mixed(test_first, test_second)}
  scores = {role: np.concatenate([part.images[:, 0] for part in split.parts])
            for role, split in data.items()}
  written = {}
  monkeypatch.setattr(final, "write_outputs",
                      lambda workdir, rows, results: written.update(results) or [])
  results = final.test_best_checkpoint(  # pylint: disable=protected-access
      _stub_run(tmp_path, data, scores), types.SimpleNamespace(params=None))
  assert written == results
  threshold = results["threshold"]
  assert 0.2 < threshold <= 0.3
  labels = data["test"].labels
  assert results["test_accuracy_at_threshold"] == 1.0
  assert results["test_accuracy"] == pytest.approx(5 / 8)  # At 0.5, as training's argmax.
  assert results["test_roc_auc"] == 1.0 == auc_by_pairs(labels == fake, scores["test"])
  assert results["test_per_source"]["second"] == {
      "count": 5, "accuracy": 1.0, "balanced_accuracy": 1.0, "roc_auc": 1.0}
  assert results["test_per_source"]["first"]["accuracy"] == 1.0
  assert results["validation_per_source"]["second"]["accuracy"] == 1.0
  with open(tmp_path / "threshold.json", encoding="utf-8") as f:
    assert json.load(f)["threshold"] == threshold
