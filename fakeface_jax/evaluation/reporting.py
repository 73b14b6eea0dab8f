"""Run outputs: per-epoch metrics as CSV, JSON lines and TensorBoard events, and curves.

Only process 0 writes. On resume the history is cut back to the restored epoch, so
the files always describe exactly one uninterrupted sequence of epochs.
"""

from __future__ import annotations

import csv
import json
import os
import textwrap
from collections.abc import Sequence
from typing import Any

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from fakeface_jax import rundir  # pylint: disable=g-import-not-at-top


class MetricsLog:
  """Appends one row of scalars per epoch to metrics.jsonl, metrics.csv and TensorBoard."""

  def __init__(self, workdir: str, *, resume_after_epoch: int):
    self.workdir = workdir
    self.enabled = jax.process_index() == 0
    self.rows: list[dict[str, Any]] = []
    if not self.enabled:
      return
    path = os.path.join(workdir, rundir.METRICS_JSONL)
    if os.path.exists(path):
      with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
      self.rows = [r for r in rows if r["epoch"] <= resume_after_epoch]
    self._rewrite()
    # tensorboardX writes event files with protobuf alone (flax.metrics.tensorboard would
    # import TensorFlow); purge_step drops events of epochs being redone after a resume.
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self.tensorboard = SummaryWriter(os.path.join(workdir, rundir.TENSORBOARD_DIR),
                                     purge_step=resume_after_epoch + 1)

  def _rewrite(self) -> None:
    with open(os.path.join(self.workdir, rundir.METRICS_JSONL), "w") as f:
      for row in self.rows:
        f.write(json.dumps(row) + "\n")
    columns = list(dict.fromkeys(k for row in self.rows for k in row))
    with open(os.path.join(self.workdir, rundir.METRICS_CSV), "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=columns)
      writer.writeheader()
      writer.writerows(self.rows)

  def write(self, row: dict[str, Any]) -> None:
    if not self.enabled:
      return
    self.rows.append(row)
    self._rewrite()
    for key, value in row.items():
      if key != "epoch" and isinstance(value, (int, float)):
        self.tensorboard.add_scalar(key, value, row["epoch"])
    self.tensorboard.flush()

  def close(self) -> None:
    if self.enabled:
      self.tensorboard.close()


def plot_curves(rows: Sequence[dict[str, Any]], path: str) -> str:
  """Loss and accuracy per epoch, train against validation (study 2's figures)."""
  epochs = [r["epoch"] for r in rows]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, metric in zip(axes, ("loss", "accuracy")):
    for split, style in (("train", "-o"), ("val", "-s")):
      key = f"{split}_{metric}"
      if any(key in r for r in rows):
        ax.plot(epochs, [r.get(key, float("nan")) for r in rows], style, ms=3,
                label="train" if split == "train" else "validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(metric.capitalize())
    ax.grid(alpha=0.3)
    ax.legend()
  axes[1].set_ylim(0, 1)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def _cell(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4f}"
  return "" if value is None else str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
  """A GitHub Markdown table of `rows` (floats to 4 decimals), one row per dict."""
  columns = list(columns or dict.fromkeys(k for row in rows for k in row))
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def plot_bars(labels: Sequence[str], series: dict[str, Sequence[float]], path: str, *,
              title: str, ylabel: str = "", chance: float | None = None,
              goal: float | None = None) -> str:
  """Grouped bars: one group per label, one bar per series; `chance` draws the level a
  guess reaches (0.5 for accuracy and AUC on two balanced classes), `goal` the level a
  result must reach."""
  # Wide enough for each bar's value label, and for the legend beside the axes.
  fig_width = max(6, 0.9 * len(labels) + 2, 0.3 * len(labels) * len(series) + 4)
  fig, ax = plt.subplots(figsize=(fig_width, 4))
  width = 0.8 / len(series)
  for i, (name, values) in enumerate(series.items()):
    positions = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
    bars = ax.bar(positions, values, width, label=name)
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
  ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
  ax.set_ylim(0, 1.05)
  ax.set_ylabel(ylabel)
  # The legend takes the right of the figure; a long title would run past its edge.
  ax.set_title("\n".join(textwrap.wrap(title, int(7 * fig_width))))
  ax.grid(axis="y", alpha=0.3)
  if chance is not None:
    ax.axhline(chance, color="black", linestyle="--", linewidth=1, label="chance")
  if goal is not None:
    ax.axhline(goal, color="black", linestyle=":", linewidth=1.5, label="goal")
  # Outside the axes: inside, the legend hides the bars under it.
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_lines(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str, *,
               title: str, xlabel: str, ylabel: str) -> str:
  """One line per named (x, y) curve; a log x axis when x spans two decades or more."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for name, (x, y) in curves.items():
    ax.plot(x, y, marker="o" if len(x) < 15 else None, markersize=3, label=name)
  xs = [v for x, _ in curves.values() for v in x if v > 0]
  if xs and max(xs) / min(xs) >= 100:
    ax.set_xscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
