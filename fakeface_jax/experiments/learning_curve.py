"""Learning curves from a sweep: accuracy and AUC against training-set size, per model.

A sweep run that carries a `curve` entry ({dataset, model, train_size, seed}, as
`configs/sweeps/learning_curve.py` writes them) contributes one point; `summarise`
groups the points by dataset, model and size and gives the mean and the spread
(min to max) over seeds, `write` the table, the figure (one panel per dataset and
metric, log x axis) and the JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from fakeface_jax.evaluation import reporting  # pylint: disable=g-import-not-at-top
from fakeface_jax import rundir  # pylint: disable=g-import-not-at-top

METRICS = {"test_accuracy": "accuracy", "test_roc_auc": "ROC AUC"}


def _size_key(row: dict[str, Any]) -> int:
  """The run's number of training images ("all" has it counted in the row)."""
  return int(row["images"])


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One entry per (dataset, model, training images): mean, min and max per metric."""
  groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
  for row in rows:
    if row.get("curve"):
      key = (row["curve"]["dataset"], row["curve"]["model"], _size_key(row))
      groups.setdefault(key, []).append(row)
  summary = []
  for (dataset, model, images), members in sorted(groups.items()):
    entry = {"dataset": dataset, "model": model, "train_images": images,
             "seeds": len(members)}
    for key in METRICS:
      values = np.array([m[key] for m in members if m.get(key) is not None], float)
      entry[f"{key}_mean"] = float(values.mean()) if len(values) else None
      entry[f"{key}_min"] = float(values.min()) if len(values) else None
      entry[f"{key}_max"] = float(values.max()) if len(values) else None
    summary.append(entry)
  return summary


def markdown(summary: Sequence[dict[str, Any]]) -> str:
  """A table per dataset: rows = training images, cells = model's mean (min-max)."""
  out = []
  for dataset in sorted({e["dataset"] for e in summary}):
    entries = [e for e in summary if e["dataset"] == dataset]
    models = sorted({e["model"] for e in entries})
    for key, label in METRICS.items():
      rows = []
      for images in sorted({e["train_images"] for e in entries}):
        row = {"train images": images}
        for model in models:
          match = [e for e in entries if e["model"] == model and e["train_images"] == images]
          row[model] = _cell(match[0], key) if match else "-"
        rows.append(row)
      out.append(f"### {dataset}: validation-split {label} (mean, min-max over seeds)\n\n"
                 + reporting.markdown_table(rows))
  return "\n".join(out)


def _cell(entry: dict[str, Any], key: str) -> str:
  mean = entry[f"{key}_mean"]
  if mean is None:
    return "-"
  if entry["seeds"] == 1:
    return f"{mean:.3f}"
  return f"{mean:.3f} ({entry[f'{key}_min']:.3f}-{entry[f'{key}_max']:.3f})"


def plot(summary: Sequence[dict[str, Any]], path: str) -> str:
  """A row per dataset, a column per metric; a line per model with its seed spread."""
  datasets = sorted({e["dataset"] for e in summary})
  fig, axes = plt.subplots(len(datasets), len(METRICS), squeeze=False,
                           figsize=(5 * len(METRICS), 3.6 * len(datasets)))
  for axes_row, dataset in zip(axes, datasets):
    entries = [e for e in summary if e["dataset"] == dataset]
    for ax, (key, label) in zip(axes_row, METRICS.items()):
      for model in sorted({e["model"] for e in entries}):
        points = sorted((e for e in entries if e["model"] == model
                         and e[f"{key}_mean"] is not None), key=lambda e: e["train_images"])
        x = [e["train_images"] for e in points]
        ax.plot(x, [e[f"{key}_mean"] for e in points], marker="o", label=model)
        ax.fill_between(x, [e[f"{key}_min"] for e in points],
                        [e[f"{key}_max"] for e in points], alpha=0.2)
      ax.axhline(0.5, color="black", linestyle="--", linewidth=1)
      ax.set_xscale("log")
      ax.set_xlabel("training images")
      ax.set_ylabel(label)
      ax.set_title(f"{dataset}: {label} on its valid split", fontsize=10)
      ax.grid(alpha=0.3)
  axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def write(rows: Sequence[dict[str, Any]], workdir: str) -> list[str]:
  """learning_curve.{json,md,png} in `workdir`; nothing if no row is a curve point."""
  summary = summarise(rows)
  if not summary:
    return []
  prefix = os.path.join(workdir, rundir.LEARNING_CURVE_PREFIX)
  with open(prefix + ".json", "w") as f:
    json.dump(summary, f, indent=2)
  with open(prefix + ".md", "w") as f:
    f.write(markdown(summary))
  return [prefix + ".json", prefix + ".md", plot(summary, prefix + ".png")]
