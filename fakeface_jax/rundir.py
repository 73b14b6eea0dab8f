"""Every file and folder a run leaves in its workdir, named in one place.

The README's "What a run leaves in its workdir" table lists the same names; modules
import them from here rather than spelling a file name of their own.
"""

from __future__ import annotations

import os

# Written by training (train.train_and_evaluate and the modules it calls).
CONFIG_JSON = "config.json"              # The run's exact config.
CHECKPOINTS_DIR = "checkpoints"          # Orbax steps: the latest and the best.
CORRUPT_DIR = "checkpoints_corrupt"      # Damaged steps, set aside with a warning.
METRICS_CSV = "metrics.csv"              # Per-epoch train/validation metrics.
METRICS_JSONL = "metrics.jsonl"          # The same, one JSON object a line.
TENSORBOARD_DIR = "tensorboard"          # The same as TensorBoard events.
TEST_METRICS_JSON = "test_metrics.json"  # The best checkpoint's test metrics.
CURVES_PNG = "curves.png"                # Loss and accuracy curves.
CONFUSION_PNG = "confusion_matrix.png"   # The test confusion matrix.
THRESHOLD_JSON = "threshold.json"        # Decision threshold chosen on validation.
DOMAIN_JSON = "training_domain.json"     # What it trained on, for predict's warnings.
MANIFEST_CSV = "data_files.csv"          # Which files went into which role.
LOCK_FILE = "train.lock"                 # Held while a process trains in the workdir.
# Written by the other entry points.
EVALUATION_DIR = "evaluation"            # fakeface_jax.evaluation.evaluate's reports.
ANALYSIS_DIR = "analysis"                # fakeface_jax.experiments.analysis's figures.
SWEEP_ROW_JSON = "row.json"              # A finished sweep run's table row.
SWEEP_RESULTS_MD = "results.md"          # A sweep's table, and as CSV:
SWEEP_RESULTS_CSV = "results.csv"
SWEEP_OVERVIEW_PNG = "overview.png"      # Validation accuracy against epoch, every run.
LEARNING_CURVE_PREFIX = "learning_curve" # learning_curve.{json,md,png} of a sweep.
CROSSVAL_PREFIX = "crossval"             # crossval.{json,md,png}: the folds' summary.


def path(workdir: str, name: str) -> str:
  """The path of one of this module's names in `workdir`."""
  return os.path.join(workdir, name)


def fold_dir(workdir: str, fold: int) -> str:
  """Where fold `fold` of a cross-validation trains."""
  return os.path.join(workdir, f"fold_{fold}")
