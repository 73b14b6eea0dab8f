r"""k-fold cross-validation of one config, summarised as mean ± std over the folds.

  fakeface-train --config configs/detector.py --workdir runs/detector_ciplab_cv \
      --folds 5 --config.data.name=ciplab --config.data.manual_dir=/path/to/ciplab \
      --config.data.validation_fraction=0.1

Fold k trains in `WORKDIR/fold_k` with config.data.fold=k of config.data.num_folds,
through `train.train_and_evaluate`, so an interrupted cross-validation resumes where it
stopped and a finished fold is only evaluated again. Each fold's held-out part is
reported at the threshold chosen on that fold's validation split, as `evaluate` does;
set config.data.validation_fraction so that split is not the held-out part itself.
Writes `WORKDIR/crossval.{json,md,png}`.

A data mixture folds each of its sources that has a training split only (ciplab in
configs/general.py); the others keep their own splits in every fold, and the summary is
of the folded sources' held-out images.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from fakeface_jax import cli
from fakeface_jax import config_checks
from fakeface_jax.data import datasets
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax import errors
from fakeface_jax.evaluation import split_reports
from fakeface_jax.evaluation import reporting
from fakeface_jax import rundir
from fakeface_jax.serving import inference
from fakeface_jax.training import train

SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "roc_auc")
# Not a command of its own: cross-validation is a training run with --folds.
POINTER = ("cross-validation runs as `fakeface-train --folds K` (or `python main.py --folds "
           "K`); see fakeface-train --help")


def _own_eval_splits(data_config: ml_collections.ConfigDict) -> list[str]:
  """The evaluation splits a dataset has of its own (folds would ignore them)."""
  splits = datasets.role_splits(datasets.prepare(data_config))
  return sorted({"validation", "test"} & set(splits))


def folded_sources(config: ml_collections.ConfigDict) -> list[str]:
  """The sources of a data mixture that folds apply to: those with a training split
  only; the others keep their own splits in every fold. Empty for a single dataset."""
  return [name for name in mixture.source_names(config.data)
          if not _own_eval_splits(mixture.source_config(config, name).data)]


def fold_config(config: ml_collections.ConfigDict, num_folds: int,
                fold: int) -> ml_collections.ConfigDict:
  """`config` training on every fold but `fold`, which it holds out as its test split.
  A data mixture's sources inherit the keys; those with splits of their own ignore them
  (`folded_sources`)."""
  config = config.copy_and_resolve_references()
  config.data.num_folds, config.data.fold = num_folds, fold
  return config


def check_foldable(config: ml_collections.ConfigDict, num_folds: int) -> None:
  """Folds are drawn from a training split; a dataset with its own evaluation splits
  (the 140k download, the built-in synthetic set) would silently ignore them, and a
  mixture needs at least one source without them."""
  if num_folds < 2:
    raise errors.ConfigError(f"--folds must be at least 2, got {num_folds}")
  config_checks.check_config(config)
  if mixture.source_names(config.data):
    if not folded_sources(config):
      raise errors.ConfigError(
          "every source of config.data.mixture has its own validation or test split; "
          "cross-validation folds a source with a training split only (ciplab, a flat "
          "image folder)")
    return
  own = _own_eval_splits(config.data)
  if own:
    raise errors.ConfigError(
        f"dataset {config.data.name!r} has its own {' and '.join(own)} split(s); "
        "cross-validation folds apply to datasets with a training split only (ciplab, a "
        "flat image folder)")


def fold_report(fold_dir: str) -> dict[str, Any]:
  """The fold's held-out split at the threshold chosen on its validation split."""
  predictor = inference.load_run(fold_dir)
  test = input_pipeline.load_data(predictor.config, cache="memory")["test"]
  folded = folded_sources(predictor.config)
  if folded:  # Only the folded sources' held-out images change from fold to fold.
    keep = [test.names.index(name) for name in folded]
    test = mixture.MixedSplit([test.parts[k] for k in keep], folded, test.weights[keep])
  return split_reports.split_report(predictor, test, predictor.threshold)


def summarise(reports: list[dict[str, Any]]) -> dict[str, Any]:
  """Per-fold rows and mean ± sample std over folds of each metric and group accuracy
  (and of each source's accuracy and AUC, where several sources were folded)."""
  rows = []
  for fold, report in enumerate(reports):
    row = {"fold": fold, "count": report["count"], "threshold": report["threshold"],
           **{m: report[m] for m in SUMMARY_METRICS}}
    row.update({f"accuracy_{g}": v["accuracy"]
                for g, v in report.get("groups", {}).items()})
    sources = report.get("sources", {})
    if len(sources) > 1:  # Several folded sources (a source and its re-saved copy).
      for name, source in sources.items():
        row.update({f"{m}_{name}": source[m] for m in ("accuracy", "roc_auc")})
    rows.append(row)
  columns = dict.fromkeys(k for r in rows for k in r if k not in ("fold", "count", "threshold"))
  # A group too small to reach every fold is averaged over the folds it reached; ddof=1:
  # the folds are a sample of the splits one could have drawn.
  stats = {c: {"mean": float(np.nanmean([r.get(c, np.nan) for r in rows])),
               "std": float(np.nanstd([r.get(c, np.nan) for r in rows], ddof=1))}
           for c in columns}
  return {"num_folds": len(reports), "num_images": sum(r["count"] for r in rows),
          "folds": rows, "summary": stats}


def summary_markdown(summary: dict[str, Any]) -> str:
  means = [{"metric": c, "mean": s["mean"], "std": s["std"]}
           for c, s in summary["summary"].items()]
  return (f"{summary['num_folds']}-fold cross-validation, {summary['num_images']} "
          "held-out images in all\n\n" + reporting.markdown_table(means) + "\n"
          + reporting.markdown_table(summary["folds"]))


def write_summary(summary: dict[str, Any], workdir: str) -> list[str]:
  prefix = os.path.join(workdir, rundir.CROSSVAL_PREFIX)
  paths = [prefix + ext for ext in (".json", ".md", ".png")]
  with open(paths[0], "w") as f:
    json.dump(summary, f, indent=2)
  with open(paths[1], "w") as f:
    f.write(summary_markdown(summary))
  folds = summary["folds"]
  reporting.plot_bars([f"fold {r['fold']}" for r in folds] + ["mean"],
                      {m: [r[m] for r in folds] + [summary["summary"][m]["mean"]]
                       for m in ("accuracy", "roc_auc")},
                      paths[2], title=f"{summary['num_folds']}-fold cross-validation", chance=0.5)
  return paths


def cross_validate(config: ml_collections.ConfigDict, workdir: str,
                   num_folds: int) -> dict[str, Any]:
  """Trains and evaluates every fold in turn; returns (and writes) the summary."""
  check_foldable(config, num_folds)
  reports = []
  for fold in range(num_folds):
    logging.info("=== Fold %d/%d.", fold + 1, num_folds)
    fold_dir = rundir.fold_dir(workdir, fold)
    train.train_and_evaluate(fold_config(config, num_folds, fold), fold_dir)
    reports.append(fold_report(fold_dir))
    logging.info("Fold %d: accuracy %.4f, ROC AUC %.4f (%d images).", fold,
                 reports[-1]["accuracy"], reports[-1]["roc_auc"], reports[-1]["count"])
  summary = summarise(reports)
  if jax.process_index() == 0:
    paths = write_summary(summary, workdir)
    logging.info("Cross-validation:\n%s\nWrote %s.", summary_markdown(summary),
                 ", ".join(paths))
  return summary



if __name__ == "__main__":
  if set(sys.argv[1:]) <= set(cli.HELP_ARGS):
    print(POINTER)
  else:
    cli.fail(POINTER, cli.USAGE_ERROR)
