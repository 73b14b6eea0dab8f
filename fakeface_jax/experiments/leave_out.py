r"""Leave one source out: does a detector catch a source it never saw? And one trained
on no fake at all?

  fakeface-train --config configs/general.py --workdir runs/general_loso --leave_out
  fakeface-train --config configs/general.py --workdir runs/general_pseudo --pseudo_only

For a data mixture, each source in turn is held out entirely, its fakes and its reals,
together with every other entry that reads the same files (its re-saved copy). The run
in WORKDIR/without_NAME trains on the rest, chooses its checkpoint and threshold on
their validation tenths, and is then scored on the held-out source's training images:
never on its `valid` or test part, which stay for in-distribution reports, and never
on anything the run's choices saw. Reported per held-out source: accuracy, ROC AUC and
the real false-positive rate at the run's threshold. Writes
`WORKDIR/leave_out.{json,md,png}`.

This is the project's stand-in for generators and sources outside ../shared: design
choices are made by the mean left-out AUC, not by `valid`. Runs resume like any other,
and a finished one is only scored again.

`--pseudo_only` trains as Self-Blended Images does, with no real fake: every source's
fakes are replaced by pseudo-fakes of its reals (`config.data.pseudo_fakes`, all of
`artifacts.PSEUDO_FAKE_KINDS` where a source sets none), in WORKDIR/pseudo_only. It is
then scored on each source's real fakes and reals of its test role (`valid` for the
140k set and lfw_faceswap, ciplab's held-out part): its training saw none of those
images and no fake of any kind made them. Writes `WORKDIR/pseudo_only.{json,md,png}`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from fakeface_jax import config_checks
from fakeface_jax.data import artifacts
from fakeface_jax.data import datasets
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax import errors
from fakeface_jax.evaluation import split_reports
from fakeface_jax.evaluation import reporting
from fakeface_jax.serving import inference
from fakeface_jax.training import train

PREFIX = "leave_out"  # leave_out.{json,md,png} in the workdir.
PSEUDO_ONLY = "pseudo_only"  # The run's folder, and pseudo_only.{json,md,png}.
# The held-out source's images that are scored: its training images, which no run of the
# protocol saw and no in-distribution report uses.
SCORED_ROLE = "train"
# A pseudo-fakes-only run trained on every source's training reals: scored on its test
# images.
PSEUDO_ONLY_ROLE = "test"
COLUMNS = ("held_out", "count", "accuracy", "roc_auc", "real_fpr", "threshold")
# The report's key of a column whose name is shorter (the table's header).
REPORT_KEYS = {"real_fpr": "real_false_positive_rate"}


def source_groups(config: ml_collections.ConfigDict) -> dict[str, list[str]]:
  """The mixture's sources grouped by the files they read (the folder their dataset is
  prepared into), named by each group's first source: a source and its re-saved copy
  are one group."""
  groups: dict[str, list[str]] = {}
  for name in mixture.source_names(config.data):
    files = datasets.prepared_dir(mixture.source_config(config, name).data)
    groups.setdefault(files, []).append(name)
  return {names[0]: names for names in groups.values()}


def check_protocol(config: ml_collections.ConfigDict) -> None:
  """Holding a source out needs a mixture of at least two groups of sources."""
  config_checks.check_config(config)
  if len(source_groups(config)) < 2:
    raise errors.ConfigError(
        "--leave_out needs a config.data.mixture of at least two sources that read "
        "different files (configs/general.py has three)")


def without(config: ml_collections.ConfigDict, names: list[str]) -> ml_collections.ConfigDict:
  """`config` with the mixture's sources `names` removed; a model with a logit pair per
  source (config.model.num_sources equal to the mixture's size) keeps one per source
  left."""
  config = config.copy_and_resolve_references()
  per_source = config.model.get("num_sources", 0) == len(config.data.mixture)
  with config.unlocked():
    for name in names:
      del config.data.mixture[name]
    if per_source:
      config.model.num_sources = len(config.data.mixture)
  return config


def held_out_report(run_dir: str, source_config: ml_collections.ConfigDict,
                    role: str = SCORED_ROLE) -> dict[str, Any]:
  """The run in `run_dir` scored on the `role` images of one dataset (`source_config`, a
  run's config on it alone), with its real fakes, at the run's threshold."""
  predictor = inference.load_run(run_dir)
  source_config = source_config.copy_and_resolve_references()
  with source_config.unlocked():
    source_config.data.pseudo_fakes.kinds = ()
  data = input_pipeline.load_data(source_config, cache="memory")[role]
  return split_reports.split_report(predictor, data, predictor.threshold)


def run_dir(workdir: str, source: str) -> str:
  return os.path.join(workdir, f"without_{source}")


def _row(source: str, report: dict[str, Any]) -> dict[str, Any]:
  row = {"held_out": source, **{c: report[REPORT_KEYS.get(c, c)] for c in COLUMNS[1:]}}
  logging.info("%s: accuracy %.4f, ROC AUC %.4f, real FPR %.3f (%d images).", source,
               row["accuracy"], row["roc_auc"], row["real_fpr"], row["count"])
  return row


def _summary(rows: list[dict[str, Any]], role: str, title: str, workdir: str,
             prefix: str) -> dict[str, Any]:
  summary = {"title": title, "rows": rows, "scored_role": role,
             "mean_roc_auc": float(np.mean([r["roc_auc"] for r in rows]))}
  if jax.process_index() == 0:
    paths = write(summary, workdir, prefix)
    logging.info("%s:\n%s\nWrote %s.", title, markdown(summary), ", ".join(paths))
  return summary


def leave_one_source_out(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains without each source group in turn and scores the group's first source;
  returns (and writes) the table and the mean left-out AUC."""
  check_protocol(config)
  rows = []
  for source, names in source_groups(config).items():
    logging.info("=== Without %s (%s).", source, ", ".join(names))
    directory = run_dir(workdir, source)
    train.train_and_evaluate(without(config, names), directory)
    report = held_out_report(directory, mixture.source_config(config, source))
    rows.append(_row(source, report))
  return _summary(rows, SCORED_ROLE, "Each source held out of training", workdir, PREFIX)


def pseudo_only_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with every source's fakes replaced by pseudo-fakes (all kinds where a
  source names none)."""
  config = config.copy_and_resolve_references()
  entries = ([config.data.mixture[name] for name in mixture.source_names(config.data)]
             or [config.data])
  with config.unlocked():
    for entry in entries:
      current = entry.get("pseudo_fakes")
      if current is None or not tuple(current.get("kinds", ())):
        entry.pseudo_fakes = {"kinds": artifacts.PSEUDO_FAKE_KINDS, "weights": (),
                              "seed": 0}
  return config


def pseudo_fakes_only(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains on reals and pseudo-fakes alone, then scores every source's real fakes;
  returns (and writes) the table."""
  config_checks.check_config(config)
  directory = os.path.join(workdir, PSEUDO_ONLY)
  train.train_and_evaluate(pseudo_only_config(config), directory)
  sources = ({name: mixture.source_config(config, name) for name in source_groups(config)}
             if mixture.source_names(config.data) else {config.data.name: config})
  rows = [_row(name, held_out_report(directory, source, PSEUDO_ONLY_ROLE))
          for name, source in sources.items()]
  return _summary(rows, PSEUDO_ONLY_ROLE, "Trained on reals and pseudo-fakes alone",
                  workdir, PSEUDO_ONLY)


def markdown(summary: dict[str, Any]) -> str:
  return (f"{summary['title']}, scored on each source's {summary['scored_role']} images; "
          f"mean ROC AUC {summary['mean_roc_auc']:.3f}\n\n"
          + reporting.markdown_table(summary["rows"], COLUMNS))


def compare(summaries: dict[str, dict[str, Any]], path: str,
            goal: float | None = None) -> str:
  """One figure of several recipes' tables (each a `write`n summary, by the recipe's
  name): the ROC AUC on each held-out source, a bar per recipe, the mean AUC in its
  name; `goal` draws the AUC a source must reach."""
  if not summaries:
    raise ValueError("compare needs at least one summary")
  first = next(iter(summaries.values()))
  sources = [r["held_out"] for r in first["rows"]]
  series = {}
  for name, summary in summaries.items():
    auc = {r["held_out"]: r["roc_auc"] for r in summary["rows"]}
    if sorted(auc) != sorted(sources) or summary["title"] != first["title"]:
      raise ValueError(f"{name!r} is a table of {summary['title'].lower()} on "
                       f"{sorted(auc)}, the first one of {first['title'].lower()} on "
                       f"{sorted(sources)}: only tables of one kind on the same sources "
                       "compare")
    series[f"{name} (mean {summary['mean_roc_auc']:.3f})"] = [auc[s] for s in sources]
  return reporting.plot_bars(sources, series, path, title=f"{first['title']}: ROC AUC",
                             ylabel="ROC AUC", chance=0.5, goal=goal)


def write(summary: dict[str, Any], workdir: str, prefix: str = PREFIX) -> list[str]:
  prefix = os.path.join(workdir, prefix)
  paths = [prefix + ext for ext in (".json", ".md", ".png")]
  with open(paths[0], "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  with open(paths[1], "w", encoding="utf-8") as f:
    f.write(markdown(summary))
  rows = summary["rows"]
  reporting.plot_bars([r["held_out"] for r in rows],
                      {m: [r[m] for r in rows] for m in ("accuracy", "roc_auc", "real_fpr")},
                      paths[2], title=summary["title"], chance=0.5)
  return paths
