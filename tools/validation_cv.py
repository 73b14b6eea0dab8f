r"""Cross-validates a config's choices on its training images alone, the test images untouched.

  python -m tools.validation_cv --config configs/general.py --workdir runs/general_vcv \
      --folds 5 [--config.KEY=VALUE ...]

A tenth of train is a small validation split (the 140k subset's is 141 images, so a
point of accuracy is one or two of them). Here run k validates on fold k of the
`--folds` folds of the training part that `config.data.validation_fraction` would have
split off (config.data.validation_folds / validation_fold) and trains on the others: over
the folds every training image validates once, so two candidate configs compare on all
of them. Each fold is `train.train_and_evaluate` in WORKDIR/validation_fold_k
(resumable; a model with fixed features reads one feature cache for every fold). The
checkpoint and threshold of each fold are chosen on its own validation fold, as a run's
are on its tenth, so the accuracies are what the run reports there, not held-out ones.

Prints and writes WORKDIR/validation_cv.{json,md}: mean ± std over the folds of each
source's validation accuracy, balanced accuracy and ROC AUC, for a data mixture (a
single dataset's run reports no such metrics per source).
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags
from ml_collections import config_flags

from fakeface_jax.data import mixture
from fakeface_jax.evaluation import reporting
from fakeface_jax.experiments import crossval
from fakeface_jax.training import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Folder of the fold runs and the summary.")
flags.DEFINE_integer("folds", 5, "How many validation folds.")
flags.mark_flags_as_required(["config", "workdir"])


def fold_config(config, num_folds: int, fold: int):
  """`config` validating on fold `fold` of `num_folds` of its training images."""
  config = config.copy_and_resolve_references()
  config.data.validation_folds, config.data.validation_fold = num_folds, fold
  return config


def validation_reports(results: dict) -> dict[str, dict]:
  """Source name -> the fold's validation metrics, at the fold's threshold."""
  return {name: {**metrics, "threshold": results["threshold"]}
          for name, metrics in results["validation_per_source"].items()}


def summarise(fold_results: list[dict]) -> dict[str, dict]:
  """Source name -> `crossval.summarise`-style mean ± std over the folds."""
  by_source: dict[str, list[dict]] = {}
  for results in fold_results:
    for name, report in validation_reports(results).items():
      by_source.setdefault(name, []).append(report)
  return {name: crossval.summarise(reports) for name, reports in by_source.items()}


def summary_markdown(summary: dict[str, dict]) -> str:
  rows = [{"source": name, "images": s["num_images"],
           **{metric: f"{v['mean']:.3f} ± {v['std']:.3f}"
              for metric, v in s["summary"].items()}}
          for name, s in summary.items()]
  folds = next(iter(summary.values()))["num_folds"]
  return (f"{folds}-fold cross-validation on the training images (each fold's own "
          "validation metrics)\n\n" + reporting.markdown_table(rows))


def main(argv: list[str]) -> None:
  del argv
  config = FLAGS.config
  if not mixture.source_names(config.data):
    raise app.UsageError("validation_cv reports each source of config.data.mixture; this "
                         "config trains on one dataset")
  results = [train.train_and_evaluate(fold_config(config, FLAGS.folds, k),
                                      os.path.join(FLAGS.workdir, f"validation_fold_{k}"))
             for k in range(FLAGS.folds)]
  summary = summarise(results)
  with open(os.path.join(FLAGS.workdir, "validation_cv.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  text = summary_markdown(summary)
  with open(os.path.join(FLAGS.workdir, "validation_cv.md"), "w", encoding="utf-8") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  app.run(main)
