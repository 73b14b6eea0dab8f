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

import json
import os
import sys
from typing import Any

from absl import app
from absl import flags

from fakeface_jax import cli
from fakeface_jax import rundir

# Loaded on first use: `--help` and usage errors answer without JAX.
cross_dataset = cli.lazy_import("fakeface_jax.evaluation.cross_dataset")
metrics = cli.lazy_import("fakeface_jax.evaluation.metrics")
reporting = cli.lazy_import("fakeface_jax.evaluation.reporting")
split_reports = cli.lazy_import("fakeface_jax.evaluation.split_reports")
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
  data = split_reports.load_eval_data(predictor.config)
  threshold, val_balanced = split_reports.choose_threshold(predictor, data["validation"])
  role = FLAGS.split if FLAGS.split in data else next(iter(data))
  outdir = output_dir()

  report = split_reports.split_report(predictor, data[role], threshold)
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
    rows = split_reports.robustness_report(predictor, data[role], threshold, FLAGS.seed)
    print(reporting.markdown_table(rows))
    outputs += split_reports.write_robustness(rows,
                                              os.path.join(outdir, f"robustness_{role}"))
  print(f"threshold {threshold:.4f} (validation balanced accuracy {val_balanced:.4f}); "
        f"wrote {', '.join(outputs)}", file=sys.stderr)


def run() -> None:
  """Console-script entry point (`fakeface-evaluate`)."""
  cli.run(main, name="fakeface-evaluate", doc=__doc__, define_flags=define_flags)


if __name__ == "__main__":
  run()
