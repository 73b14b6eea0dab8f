r"""Runs a named grid of configs and tabulates them the way the studies did.

  fakeface-sweep --sweep configs/sweeps/study1.py --workdir runs/study1 \
      --set data.manual_dir=../shared/data/real_vs_fake_140k [--max_epochs 100]

A sweep file's `get_config()` returns `name` and `runs`: each run is a dict with a
`name`, a `config` ("configs/mlp.py:gray,taper"), `overrides` (dotted keys) and
optionally the value the study `reported` for that row. Every run trains in `WORKDIR/<name>` with
`train.train_and_evaluate`, so an interrupted sweep resumes where it stopped and a
finished run (its `row.json` written for the same config) is not trained again:
rerunning a finished sweep only rewrites the table. `--set` overrides apply to every
run; `--max_epochs` caps long runs to what fits, and the table says so.

Writes `WORKDIR/results.{md,csv}` with the studies' columns (model type, epochs, node
structure, train and validation accuracy, images, batch size, grayscale) plus test
accuracy, wall time and the study's figure, and `WORKDIR/overview.png`: validation
accuracy against epoch for every run.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import sys
import time
from typing import Any

import ml_collections
from absl import app
from absl import flags
from absl import logging

from fakeface_jax import cli
from fakeface_jax import config_files
from fakeface_jax import errors
from fakeface_jax import rundir

# Loaded on first use: `--help` and usage errors answer without JAX.
jax = cli.lazy_import("jax")
datasets = cli.lazy_import("fakeface_jax.data.datasets")
selection = cli.lazy_import("fakeface_jax.data.selection")
reporting = cli.lazy_import("fakeface_jax.evaluation.reporting")
learning_curve = cli.lazy_import("fakeface_jax.experiments.learning_curve")
checkpointing = cli.lazy_import("fakeface_jax.training.checkpointing")
train = cli.lazy_import("fakeface_jax.training.train")

FLAGS = flags.FLAGS
COLUMNS = ("run", "model", "epochs", "node_structure", "train_accuracy", "val_accuracy",
           "test_accuracy", "test_roc_auc", "images", "batch_size", "grayscale", "wall_s",
           "reported", "note")


def define_flags() -> None:
  """Defines the command line; called by the entry point, not on import."""
  flags.DEFINE_string("sweep", None, "Sweep file (configs/sweeps/*.py).")
  flags.DEFINE_string("workdir", None, "Directory for the runs and the tables.")
  flags.DEFINE_multi_string("set", [], "KEY=VALUE override for every run, e.g. "
                            "data.manual_dir=/data/140k (values parsed as Python literals "
                            "where possible).")
  flags.DEFINE_integer("max_epochs", None, "Cap every run's epochs at this many.")
  flags.DEFINE_list("only", [], "Run only these run names.")


class UnknownKeyError(errors.ConfigError, KeyError):
  """An override names no config field (a KeyError too, as for a ConfigDict)."""
  __str__ = Exception.__str__  # KeyError's would print the message in quotes.


def _parse_value(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> None:
  """Sets dotted keys; an unknown key fails as it would on the command line."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node.get(parent) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise UnknownKeyError(f"unknown config key {key!r}")
    node[leaf] = value


def run_config(run: dict[str, Any], sets: dict[str, Any], max_epochs: int | None
               ) -> tuple[ml_collections.ConfigDict, str]:
  """The run's config with its overrides, the sweep-wide ones and the epoch cap."""
  config = config_files.load_config(run["config"])
  apply_overrides(config, dict(run.get("overrides", {})))
  apply_overrides(config, sets)
  note = ""
  if max_epochs and config.num_epochs > max_epochs:
    note = f"cut to {max_epochs} of {config.num_epochs} epochs"
    config.num_epochs = max_epochs
  # Long runs checkpoint about 20 times, not every epoch.
  config.checkpoint.every_epochs = max(config.checkpoint.every_epochs,
                                       config.num_epochs // 20)
  return config, note


def fit_batch_to_data(config: ml_collections.ConfigDict) -> str:
  """Shrinks the batch to the training set when the data on disk hold fewer images."""
  builder = datasets.prepare(config.data)
  num_train = len(selection.select_examples(config, builder)["train"][1])
  if config.batch_size <= num_train:
    return ""
  batch = max(jax.device_count(), num_train - num_train % jax.device_count())
  note = f"batch {config.batch_size} > {num_train} images on disk: used {batch}"
  logging.warning("%s", note)
  config.batch_size = batch
  config.eval_batch_size = min(config.eval_batch_size, batch)
  return note


def _saved_row(run_dir: str, config: ml_collections.ConfigDict) -> dict | None:
  path = os.path.join(run_dir, rundir.SWEEP_ROW_JSON)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  return saved["row"] if saved["config"] == json.loads(config.to_json_best_effort()) else None


def run_one(run: dict[str, Any], workdir: str, sets: dict[str, Any],
            max_epochs: int | None) -> dict:
  run_dir = os.path.join(workdir, run["name"])
  config, note = run_config(run, sets, max_epochs)
  batch_note = fit_batch_to_data(config)
  saved = _saved_row(run_dir, config)
  if saved is not None:
    logging.info("Run %s is finished; not training it again.", run["name"])
    return saved
  logging.info("Run %s: %s %s", run["name"], run["config"], dict(run.get("overrides", {})))
  start = time.perf_counter()
  results = train.train_and_evaluate(config, run_dir)
  model = config.model
  row = {
      "run": run["name"],
      "model": model.name,
      "epochs": config.num_epochs,
      "node_structure": model.get("node_structure", "-"),
      "train_accuracy": results["train_accuracy"],
      "val_accuracy": results["val_accuracy"],
      "test_accuracy": results["test_accuracy"],
      "test_roc_auc": results.get("test_roc_auc"),
      "images": results["num_train"],
      "batch_size": config.batch_size,
      "grayscale": config.data.grayscale,
      "wall_s": round(time.perf_counter() - start, 1),
      "reported": run.get("reported", None),
      "note": "; ".join(n for n in (note, batch_note) if n),
      # A learning-curve point (configs/sweeps/learning_curve.py); not a table column.
      "curve": run.get("curve"),
  }
  with open(os.path.join(run_dir, rundir.SWEEP_ROW_JSON), "w") as f:
    json.dump({"config": json.loads(config.to_json_best_effort()), "row": row}, f, indent=2)
  return row


def write_tables(rows: list[dict], workdir: str, title: str) -> list[str]:
  paths = [os.path.join(workdir, name) for name in
           (rundir.SWEEP_RESULTS_MD, rundir.SWEEP_RESULTS_CSV, rundir.SWEEP_OVERVIEW_PNG)]
  def cell(key, value):
    if value is None:
      return "-"
    if isinstance(value, float):
      return f"{value:.1f}" if key == "wall_s" else f"{value:.4f}"
    return value
  formatted = [{k: cell(k, row.get(k)) for k in COLUMNS} for row in rows]
  with open(paths[0], "w") as f:
    f.write(f"# {title}\n\n" + reporting.markdown_table(formatted))
  with open(paths[1], "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  curves = {}
  for row in rows:
    metrics_csv = os.path.join(workdir, row["run"], rundir.METRICS_CSV)
    with open(metrics_csv) as f:
      epochs = list(csv.DictReader(f))
    curves[row["run"]] = ([int(e["epoch"]) for e in epochs],
                          [float(e["val_accuracy"]) for e in epochs])
  reporting.plot_lines(curves, paths[2], title=f"{title}: validation accuracy",
                       xlabel="epoch", ylabel="validation accuracy")
  return paths + learning_curve.write(rows, workdir)


def run_sweep(sweep: ml_collections.ConfigDict, workdir: str, sets: dict[str, Any],
              max_epochs: int | None = None, only: list[str] | None = None) -> list[dict]:
  os.makedirs(workdir, exist_ok=True)
  runs = [run for run in sweep.runs if not only or run["name"] in only]
  unknown = set(only or ()) - {run["name"] for run in sweep.runs}
  if unknown:
    raise errors.ConfigError(f"--only names unknown runs {sorted(unknown)}")
  rows = []
  for i, run in enumerate(runs, 1):
    logging.info("=== Sweep %s: run %d/%d (%s).", sweep.name, i, len(runs), run["name"])
    rows.append(run_one(run, workdir, sets, max_epochs))
  write_tables(rows, workdir, sweep.name)
  return rows


def main(argv: list[str]) -> None:
  del argv  # No positional arguments (cli.run checks).
  checkpointing.quiet_orbax_logging()
  sets = {}
  for item in FLAGS.set:
    key, sep, value = item.partition("=")
    if not sep:
      raise app.UsageError(f"--set takes KEY=VALUE, got {item!r}")
    sets[key] = _parse_value(value)
  run_sweep(config_files.load_config(FLAGS.sweep), FLAGS.workdir, sets, FLAGS.max_epochs,
            FLAGS.only)
  with open(os.path.join(FLAGS.workdir, rundir.SWEEP_RESULTS_MD)) as f:
    print(f.read())
  print(f"wrote the tables and figures in {FLAGS.workdir}", file=sys.stderr)


def run() -> None:
  """Console-script entry point (`fakeface-sweep`)."""
  cli.run(main, name="fakeface-sweep", doc=__doc__, define_flags=define_flags,
          required=("sweep", "workdir"))


if __name__ == "__main__":
  run()
