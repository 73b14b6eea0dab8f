"""Detector metrics on the host (NumPy) and their figures.

Conventions: label 1 = real, 0 = fake; `p_fake` is the model's probability of class 0,
and "positive" in ROC AUC and average precision means fake. Definitions follow
scikit-learn's (AUC as the Mann-Whitney statistic with ties counted half; AP as the
step-wise sum over distinct thresholds), without depending on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from fakeface_jax import classes
from fakeface_jax.data import mixture


def _check_lengths(*arrays) -> None:
  lengths = {len(a) for a in arrays}
  if len(lengths) > 1:
    raise ValueError(f"arrays of different lengths: {[len(a) for a in arrays]}")


def confusion_matrix(labels, predictions, num_classes: int = 2) -> np.ndarray:
  """Counts with rows = true class and columns = predicted class."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  _check_lengths(labels, predictions)
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predictions), 1)
  return matrix


def accuracy(labels, predictions) -> float:
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  _check_lengths(labels, predictions)
  return float(np.mean(labels == predictions)) if len(labels) else float("nan")


def balanced_accuracy(labels, predictions) -> float:
  """Mean recall over the classes present in `labels`."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  _check_lengths(labels, predictions)
  recalls = [np.mean(predictions[labels == c] == c) for c in np.unique(labels)]
  return float(np.mean(recalls)) if recalls else float("nan")


def called_fake_share(labels, predictions, of_class: int) -> float:
  """The share of `of_class` images called fake: the real false-positive rate for
  classes.REAL, the fake recall for classes.FAKE (nan where there is none). A
  prediction that is neither class (no verdict) counts as not fake."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  _check_lengths(labels, predictions)
  chosen = labels == of_class
  return float(np.mean(predictions[chosen] == classes.FAKE)) if chosen.any() else float("nan")


def roc_auc(is_positive, scores) -> float:
  """Probability that a random positive scores above a random negative (ties: half)."""
  is_positive, scores = np.asarray(is_positive, bool), np.asarray(scores, np.float64)
  _check_lengths(is_positive, scores)
  n_pos, n_neg = is_positive.sum(), (~is_positive).sum()
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  # Average ranks handle ties exactly as the Mann-Whitney U statistic does.
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores))
  sorted_scores = scores[order]
  _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
  for start, count in zip(starts, counts):
    ranks[order[start:start + count]] = start + (count + 1) / 2
  u = ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2
  return float(u / (n_pos * n_neg))


def average_precision(is_positive, scores) -> float:
  """Sum over distinct thresholds (high to low) of (R_n - R_{n-1}) * P_n."""
  is_positive, scores = np.asarray(is_positive, bool), np.asarray(scores, np.float64)
  _check_lengths(is_positive, scores)
  if not is_positive.any():
    return float("nan")
  order = np.argsort(-scores, kind="mergesort")
  scores, is_positive = scores[order], is_positive[order]
  # Last index of each group of tied scores: a threshold admits the whole group.
  last = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
  true_pos = np.cumsum(is_positive)[last]
  precision = true_pos / (last + 1)
  recall = true_pos / is_positive.sum()
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def reliability_curve(labels, p_fake, num_bins: int = 15,
                      threshold: float = 0.5) -> dict[str, list[float]]:
  """Per confidence bin: mean confidence, accuracy and count of the predicted class."""
  labels, p_fake = np.asarray(labels), np.asarray(p_fake, np.float64)
  _check_lengths(labels, p_fake)
  predicted_fake = p_fake >= threshold
  confidence = np.where(predicted_fake, p_fake, 1 - p_fake)
  correct = predicted_fake == (labels == classes.FAKE)
  bins = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
  curve = {"confidence": [], "accuracy": [], "count": []}
  for b in range(num_bins):
    in_bin = bins == b
    n = int(in_bin.sum())
    curve["count"].append(n)
    curve["confidence"].append(float(confidence[in_bin].mean()) if n else float("nan"))
    curve["accuracy"].append(float(correct[in_bin].mean()) if n else float("nan"))
  return curve


def expected_calibration_error(labels, p_fake, num_bins: int = 15,
                               threshold: float = 0.5) -> float:
  """sum_b |accuracy_b - confidence_b| * n_b / N over equal-width confidence bins."""
  curve = reliability_curve(labels, p_fake, num_bins, threshold)
  total = sum(curve["count"])
  if not total:
    return float("nan")
  return float(sum(abs(a - c) * n / total for a, c, n in
                   zip(curve["accuracy"], curve["confidence"], curve["count"]) if n))


# Equal scores summed in another order (groups renamed, weights scaled) can differ in
# the last bits; a real difference is at least a weight over a group's size, far above.
SCORE_TIE_TOLERANCE = 1e-9


def best_threshold(labels, p_fake, groups=None, group_weights=None,
                   max_real_fpr: float = 1.0) -> tuple[float, float]:
  """The threshold t (predict fake when p_fake >= t) maximising balanced accuracy.

  With `groups` (each example's group index, e.g. its source in a data mixture) the
  score is the mean of each group's balanced accuracy weighted by `group_weights`
  (equal by default), so that a large group does not set everyone's threshold alone.
  Only thresholds that call at most `max_real_fpr` of each group's real images fake
  compete (predicting everything real always qualifies).
  Candidates are midpoints between consecutive distinct scores, 0.5 and the ends; ties
  in the score (within SCORE_TIE_TOLERANCE) go to the candidate closest to 0.5.
  """
  labels, p_fake = np.asarray(labels), np.asarray(p_fake, np.float64)
  _check_lengths(labels, p_fake)
  groups = np.zeros(len(labels), np.int64) if groups is None else np.asarray(groups)
  _check_lengths(labels, groups)
  present = np.unique(groups)
  if group_weights is None:
    weights = np.ones(len(present))
  else:
    given = np.asarray(group_weights, np.float64)
    if len(present) and present.max() >= len(given):
      raise ValueError(f"group {present.max()} has no weight ({len(given)} given)")
    weights = given[present]
  weights = weights / weights.sum()
  members = [groups == g for g in present]
  values = np.unique(p_fake)
  # Just above 1 predicts everything real; p_fake never exceeds 1.
  candidates = np.r_[0.0, (values[1:] + values[:-1]) / 2, 0.5, np.nextafter(1.0, 2.0)]

  reals = [m & (labels == classes.REAL) for m in members]

  def score(t):
    called_fake = p_fake >= t
    if any(called_fake[r].mean() > max_real_fpr for r in reals if r.any()):
      return -np.inf
    predictions = np.where(called_fake, classes.FAKE, classes.REAL)
    return sum(w * balanced_accuracy(labels[m], predictions[m])
               for m, w in zip(members, weights))

  scores = np.array([score(t) for t in candidates])
  best = np.flatnonzero(scores >= scores.max() - SCORE_TIE_TOLERANCE)
  choice = best[np.argmin(np.abs(candidates[best] - 0.5))]
  return float(candidates[choice]), float(scores[choice])


def classification_report(labels, p_fake, threshold: float = 0.5,
                          groups: Sequence[str] | None = None) -> dict[str, Any]:
  """Every metric of a detector at `threshold`, as JSON-serialisable values."""
  labels, p_fake = np.asarray(labels), np.asarray(p_fake, np.float64)
  _check_lengths(labels, p_fake)
  predictions = np.where(p_fake >= threshold, classes.FAKE, classes.REAL)
  is_fake = labels == classes.FAKE
  report = {
      "count": int(len(labels)),
      "count_fake": int(is_fake.sum()),
      "count_real": int((~is_fake).sum()),
      "threshold": float(threshold),
      "accuracy": accuracy(labels, predictions),
      "balanced_accuracy": balanced_accuracy(labels, predictions),
      "real_false_positive_rate": called_fake_share(labels, predictions, classes.REAL),
      "roc_auc": roc_auc(is_fake, p_fake),
      "average_precision": average_precision(is_fake, p_fake),
      "ece": expected_calibration_error(labels, p_fake, threshold=threshold),
      "confusion_matrix": confusion_matrix(labels, predictions).tolist(),
      "reliability": reliability_curve(labels, p_fake, threshold=threshold),
  }
  if groups is not None:
    groups = np.asarray(groups)
    _check_lengths(labels, groups)
    report["groups"] = {
        str(g): {"count": int((groups == g).sum()),
                 "accuracy": accuracy(labels[groups == g], predictions[groups == g])}
        for g in np.unique(groups)}
  return report


def per_source_metrics(split: Any, p_fake: np.ndarray,
                       threshold: float = 0.5) -> dict[str, dict[str, float]] | None:
  """Count, accuracy, balanced accuracy and ROC AUC of each source of a mixed split at
  `threshold` (None for a single dataset's split)."""
  if not isinstance(split, mixture.MixedSplit):
    return None
  sources, labels = split.sources, split.labels
  out = {}
  for name in split.names:
    report = classification_report(labels[sources == name], p_fake[sources == name],
                                   threshold=threshold)
    out[name] = {k: report[k] for k in ("count", "accuracy", "balanced_accuracy", "roc_auc")}
  return out


def report_markdown(report: dict[str, Any]) -> str:
  """The report's headline numbers (and per-group accuracy) as Markdown tables."""
  keys = ("count", "threshold", "accuracy", "balanced_accuracy", "roc_auc",
          "average_precision", "ece")
  lines = ["| metric | value |", "|---|---|"]
  for key in keys:
    value = report[key]
    lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else
                 f"| {key} | {value} |")
  (tn, fp), (fn, tp) = report["confusion_matrix"]
  lines += ["", "| true \\ predicted | fake | real |", "|---|---|---|",
            f"| fake | {tn} | {fp} |", f"| real | {fn} | {tp} |"]
  if "groups" in report:
    lines += ["", "| group | count | accuracy |", "|---|---|---|"]
    lines += [f"| {g} | {v['count']} | {v['accuracy']:.4f} |"
              for g, v in report["groups"].items()]
  if "sources" in report:
    lines += ["", "| source | count | accuracy | balanced_accuracy | roc_auc |",
              "|---|---|---|---|---|"]
    lines += [f"| {name} | {v['count']} | {v['accuracy']:.4f} | "
              f"{v['balanced_accuracy']:.4f} | {v['roc_auc']:.4f} |"
              for name, v in report["sources"].items()]
  return "\n".join(lines) + "\n"


def _draw_confusion(ax, matrix: np.ndarray, class_names: Sequence[str], title: str) -> None:
  totals = matrix.sum(axis=1, keepdims=True)
  share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
  ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
  for (i, j), count in np.ndenumerate(matrix):
    ax.text(j, i, f"{count}\n{share[i, j]:.0%}", ha="center", va="center",
            color="white" if share[i, j] > 0.5 else "black")
  ax.set_xticks(range(len(class_names)), class_names)
  ax.set_yticks(range(len(class_names)), class_names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title, fontsize=10)


def confusion_title(matrix: np.ndarray, split: str | None,
                    threshold: float | None = None) -> str:
  """"Confusion matrix, test: accuracy 0.875 at threshold 0.42": what and how good."""
  matrix = np.asarray(matrix)
  where = f", {split}" if split else ""
  at = f" at threshold {threshold:.2f}" if threshold is not None else ""
  return (f"Confusion matrix{where}:\naccuracy {np.trace(matrix) / max(matrix.sum(), 1):.3f}"
          f"{at} ({matrix.sum()} images)")


def plot_confusion_matrix(matrix: np.ndarray, path: str, *, split: str | None = None,
                          threshold: float | None = None,
                          class_names: Sequence[str] = classes.NAMES) -> str:
  """The matrix with counts and row shares, titled with `split` and its accuracy."""
  fig, ax = plt.subplots(figsize=(4, 4.3))
  _draw_confusion(ax, np.asarray(matrix), class_names,
                  confusion_title(matrix, split, threshold))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def _draw_reliability(ax, report: dict[str, Any]) -> None:
  """Accuracy per confidence bin, each bar labelled with its image count."""
  curve = report["reliability"]
  edges = np.linspace(0, 1, len(curve["count"]) + 1)
  bars = ax.bar(edges[:-1], np.nan_to_num(curve["accuracy"]), width=np.diff(edges),
                align="edge", edgecolor="black", alpha=0.7, label="accuracy (n = images)")
  ax.bar_label(bars, labels=[f"{n}" if n else "" for n in curve["count"]], fontsize=7)
  ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
  # Confidence is at least 0.5 at threshold 0.5; another threshold can put predictions
  # below it, and those bins must stay in view.
  populated = [edge for edge, n in zip(edges, curve["count"]) if n]
  ax.set_xlim(min([0.5, *populated]), 1)
  ax.set_ylim(0, 1.12)
  ax.set_xlabel("confidence of the predicted class")
  ax.set_ylabel("accuracy")
  ax.set_title(f"Reliability (ECE {report['ece']:.3f})", fontsize=10)
  # Below the axes: inside, it would cover the bars of some bins.
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)


def plot_report(report: dict[str, Any], path: str, *, split: str | None = None) -> str:
  """Confusion matrix and reliability diagram side by side, headed by the metrics."""
  fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 4.6))
  _draw_confusion(left, np.asarray(report["confusion_matrix"]), classes.NAMES,
                  confusion_title(report["confusion_matrix"], split, report["threshold"]))
  _draw_reliability(right, report)
  fig.suptitle(f"accuracy {report['accuracy']:.3f} | balanced {report['balanced_accuracy']:.3f}"
               f" | AUC {report['roc_auc']:.3f} | AP {report['average_precision']:.3f}")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
