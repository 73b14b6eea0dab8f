r"""Evaluation and robustness reports of a trained run, on a split or any image folder.

  fakeface-evaluate --workdir runs/default                 # test split
  fakeface-evaluate --workdir runs/default --split=validation
  fakeface-evaluate --workdir runs/default --robustness
  fakeface-evaluate --workdir runs/default --folder=/photos --folder=/phone:real \
      --shifts=clean,q90,halved_q90                       # cross-dataset report
  fakeface-evaluate --folder=/photos                     # of the packaged detector

On a split of the run's dataset, the decision threshold is chosen on the run's
validation split (best balanced accuracy) for the checkpoint evaluated, as training
does for the best checkpoint (`threshold.json`, which `predict` uses); the accuracy at
0.5 is printed beside it, and the count of images `predict` would warn about. Reports
go to `WORKDIR/evaluation/NAME.{json,md,png}` (or `--output_dir`); robustness to
`robustness_NAME.*`.

With --folder (repeatable), the files of each folder are scored as `predict` scores
them (by their faces; `--faces off`: whole files), at the run's threshold, and
`cross_dataset` writes one table and one figure,
`WORKDIR/evaluation/cross_dataset.{json,md,png}`: per folder and shift, accuracy,
balanced accuracy, AUC, AP, false-positive rate on real images, recall on fakes, the
share warned about, the silent-error rate, and the photos with no face found. A folder
is PATH (real/ and fake/ subfolders, or itself named real or fake), or PATH:real /
PATH:fake. Without --workdir, the detector shipped in the package is scored, as
`fakeface-predict` without one scores, and the report goes to `./evaluation/` (or
`--output_dir`).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Any

import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging

from fakeface_jax import classes
from fakeface_jax import cli
from fakeface_jax import rundir

# Loaded on first use: `--help` and usage errors answer without JAX.
degradations = cli.lazy_import("fakeface_jax.data.degradations")
folders = cli.lazy_import("fakeface_jax.data.folders")
input_pipeline = cli.lazy_import("fakeface_jax.data.input_pipeline")
mixture = cli.lazy_import("fakeface_jax.data.mixture")
cross_dataset = cli.lazy_import("fakeface_jax.evaluation.cross_dataset")
metrics = cli.lazy_import("fakeface_jax.evaluation.metrics")
reporting = cli.lazy_import("fakeface_jax.evaluation.reporting")
inference = cli.lazy_import("fakeface_jax.serving.inference")
checkpointing = cli.lazy_import("fakeface_jax.training.checkpointing")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command line; called by the entry points, not on import."""
  flags.DEFINE_string("workdir", None, "Run directory written by fakeface-train; with "
                      "--folder alone, the detector shipped in the package.")
  flags.DEFINE_string("split", "test", "Split of the run's dataset: train, validation, test.")
  flags.DEFINE_multi_string("folder", [], "Cross-dataset report on these folders instead "
                            "of a split: [NAME=]PATH (real/ and fake/ subfolders), "
                            "PATH:real or PATH:fake; repeat the flag for several.")
  # The names of cross_dataset.SHIFTS, written out so that help loads no JAX (a test
  # holds them equal).
  flags.DEFINE_list("shifts", ["clean"], "With --folder: format shifts of every file, "
                    "any of clean, q90, halved_q90.")
  flags.DEFINE_enum("faces", "on", ["on", "off"], "With --folder, as predict's: on: score "
                    "each photo by its faces; off: each whole file.")
  flags.DEFINE_string("output_dir", None, "Where the reports go; by default "
                      "WORKDIR/evaluation, or ./evaluation for the packaged detector.")
  flags.DEFINE_string("checkpoint", "best", "best, last, or a step number.")
  flags.DEFINE_bool("robustness", False, "Also report metrics under image degradations.")
  flags.DEFINE_integer("seed", 0, "Seed of the random degradations (noise).")


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
  per_source = mixture.per_source_metrics(data, p_fake, threshold)
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


def accuracy_line(role: str, report: dict[str, Any]) -> str:
  """Accuracy at 0.5 (as training prints it) and at the validation threshold, labelled."""
  return (f"{role} accuracy: {report['accuracy_at_0.5']:.4f} at threshold 0.5, "
          f"{report['accuracy']:.4f} at the validation threshold "
          f"{report['threshold']:.4f}")


def output_dir() -> str:
  """--output_dir, made: by default the run's evaluation folder, or ./evaluation for the
  packaged detector."""
  outdir = FLAGS.output_dir or os.path.join(FLAGS.workdir or "", rundir.EVALUATION_DIR)
  os.makedirs(outdir, exist_ok=True)
  return outdir


def cross_dataset_main(folders: list[cross_dataset.Folder]) -> None:
  """--folder: the cross-dataset report of the run, or of the packaged detector without
  one, printed and written."""
  if FLAGS.workdir:
    predictor, whose = inference.load_run(FLAGS.workdir, FLAGS.checkpoint), "the run's"
  else:
    predictor, whose = inference.load_packaged(), "packaged"
  rows = cross_dataset.report(predictor, folders, FLAGS.shifts, FLAGS.faces == "on")
  outdir = output_dir()
  outputs = cross_dataset.write(rows, os.path.join(outdir, "cross_dataset"))
  with open(outputs[1], encoding="utf-8") as f:
    print(f.read())
  print(f"threshold {predictor.threshold:.4f} ({whose}, chosen on its validation split); "
        f"wrote {', '.join(outputs)}", file=sys.stderr)


def main(argv: list[str]) -> None:
  del argv  # No positional arguments (cli.run checks).
  checkpointing.quiet_orbax_logging()
  if FLAGS.folder:  # Folders and shifts are checked before the run is loaded.
    cross_dataset.check_shifts(FLAGS.shifts)
    cross_dataset_main(cross_dataset.parse_folders(FLAGS.folder))
    return
  if not FLAGS.workdir:
    raise app.UsageError("missing --workdir (a report on a split needs the run; --folder "
                         "alone scores the packaged detector)")
  predictor = inference.load_run(FLAGS.workdir, FLAGS.checkpoint)
  data = load_eval_data(predictor.config)
  threshold, val_balanced = choose_threshold(predictor, data["validation"])
  role = FLAGS.split if FLAGS.split in data else next(iter(data))
  outdir = output_dir()

  report = split_report(predictor, data[role], threshold)
  prefix = os.path.join(outdir, role)
  with open(prefix + ".json", "w") as f:
    json.dump(report, f, indent=2)
  with open(prefix + ".md", "w") as f:
    f.write(metrics.report_markdown(report))
  metrics.plot_report(report, prefix + ".png", split=role)
  print(metrics.report_markdown(report))
  print(accuracy_line(role, report))
  if "warned" in report:
    print(f"{report['warned']} of {report['count']} {role} images would get a warning "
          "from predict")
  outputs = [prefix + ext for ext in (".json", ".md", ".png")]
  if FLAGS.robustness:
    rows = robustness_report(predictor, data[role], threshold, FLAGS.seed)
    print(reporting.markdown_table(rows))
    outputs += write_robustness(rows, os.path.join(outdir, f"robustness_{role}"))
  print(f"threshold {threshold:.4f} (validation balanced accuracy {val_balanced:.4f}); "
        f"wrote {', '.join(outputs)}", file=sys.stderr)


def run() -> None:
  """Console-script entry point (`fakeface-evaluate`)."""
  cli.run(main, name="fakeface-evaluate", doc=__doc__, define_flags=define_flags)


if __name__ == "__main__":
  run()
