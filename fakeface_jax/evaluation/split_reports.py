"""Reports of a run's predictor on a split of its own dataset: every metric at a
threshold, by fake difficulty and by source, the threshold chosen on validation, and the
same metrics under each degradation.

The library behind `fakeface-evaluate` on a split, cross-validation's folds and the
leave-one-source-out protocol.
"""

from __future__ import annotations

import csv
import json
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from fakeface_jax import classes
from fakeface_jax.data import degradations
from fakeface_jax.data import folders
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax.evaluation import metrics
from fakeface_jax.evaluation import reporting
from fakeface_jax.serving import inference


def _images_and_tables(data) -> tuple[np.ndarray, np.ndarray | None]:
  """A split's images and JPEG tables, every one (a data mixture's too)."""
  return data.take_batch(np.arange(len(data)))


def choose_threshold(predictor: inference.Predictor, validation) -> tuple[float, float]:
  """The P(fake) threshold with the best balanced accuracy on the validation split (a
  mixture's: the weighted mean of its sources'), within the run's config.max_real_fpr."""
  return metrics.best_threshold(validation.labels,
                                predictor.p_fake(*_images_and_tables(validation)),
                                **mixture.threshold_groups(validation),
                                max_real_fpr=predictor.config.max_real_fpr)


def split_report(predictor: inference.Predictor, data, threshold: float) -> dict[str, Any]:
  """Every metric at `threshold`; where the fakes have difficulties (ciplab), also the
  accuracy on each difficulty's fakes and on the real images, in that order."""
  has_groups = data.difficulty is not None and set(data.difficulty) != {folders.NO_DIFFICULTY}
  real = classes.NAMES[classes.REAL]
  groups = np.where(data.labels == classes.FAKE, data.difficulty, real) if has_groups else None
  p_fake, distance = predictor.score(*_images_and_tables(data))
  report = metrics.classification_report(data.labels, p_fake, threshold=threshold,
                                         groups=groups)
  per_source = metrics.per_source_metrics(data, p_fake, threshold)
  if per_source is not None:
    report["sources"] = per_source
  formats = data.take_formats(np.arange(len(data)))
  if formats is not None:
    distance = [None] * len(formats) if distance is None else distance.tolist()
    report["warned"] = sum(bool(predictor.warnings(f, d)) for f, d in zip(formats, distance))
  # What training reports, beside the figure at the chosen threshold.
  report["accuracy_at_0.5"] = metrics.classification_report(data.labels, p_fake)["accuracy"]
  if has_groups:
    order = (*folders.DIFFICULTIES, folders.NO_DIFFICULTY, real)
    report["groups"] = dict(sorted(report["groups"].items(), key=lambda g: order.index(g[0])))
  return report


def robustness_report(predictor: inference.Predictor, data, threshold: float,
                      seed: int) -> list[dict[str, Any]]:
  """One row of metrics per degradation of the split's images (at the model's input size)."""
  rows = []
  clean, own_tables = _images_and_tables(data)
  for name, degrade in degradations.DEGRADATIONS.items():
    images = degrade(clean, seed)
    after = degradations.TABLES_AFTER.get(name)
    tables = own_tables if after is None or own_tables is None else np.broadcast_to(
        after, own_tables.shape)
    report = metrics.classification_report(data.labels, predictor.p_fake(images, tables),
                                           threshold=threshold)
    rows.append({"degradation": name, **{k: report[k] for k in (
        "accuracy", "balanced_accuracy", "roc_auc", "average_precision", "ece")}})
    logging.info("%-14s accuracy %.4f  AUC %.4f", name, report["accuracy"], report["roc_auc"])
  return rows


def write_robustness(rows: list[dict[str, Any]], prefix: str) -> list[str]:
  """`robustness_report`'s rows as PREFIX.{json,csv,md} and a bar chart PREFIX.png;
  returns the paths."""
  paths = [prefix + ext for ext in (".json", ".csv", ".md", ".png")]
  with open(paths[0], "w") as f:
    json.dump(rows, f, indent=2)
  with open(paths[1], "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  with open(paths[2], "w") as f:
    f.write(reporting.markdown_table(rows))
  reporting.plot_bars([r["degradation"] for r in rows],
                      {"accuracy": [r["accuracy"] for r in rows],
                       "ROC AUC": [r["roc_auc"] for r in rows]},
                      paths[3], title="Robustness to degradations", chance=0.5)
  return paths


def load_eval_data(config: ml_collections.ConfigDict) -> dict:
  """Every role of the run's dataset, decoded into memory."""
  return input_pipeline.load_data(config, cache="memory")
