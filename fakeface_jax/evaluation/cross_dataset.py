"""Cross-dataset report: one trained run scored on several image folders, as predict scores.

Each file is scored as `predict` scores it (its own format, JPEG tables and warnings):
by default by its faces, a face image of the kind the run was trained on whole, and a
photo fake if any of its faces is; with `faces=False` (evaluate's `--faces off`) as a
whole file. Optionally a format shift of every file comes first (`SHIFTS`: re-saved at
JPEG quality 90, or halved and re-saved). Each folder and shift gets one row: accuracy
at the run's threshold, balanced accuracy, ROC AUC and average precision (with both
classes, on each photo's highest P(fake)), the false-positive rate on real images,
recall on fakes, the share of images warned about (and how often each warning fired),
and the silent-error rate: images predicted wrongly without a warning, over all
images, which is what a user who trusts unwarned predictions gets wrong. Photos with no
face found (`no_face`) and unreadable files are counted apart and not scored.

A folder is given as PATH (with real/ and fake/ subfolders, or itself named real or
fake) or PATH:real / PATH:fake for a folder of one class, optionally prefixed by the
name its rows get, NAME=PATH; by default the shortest tail of its path that tells it
apart from the other folders.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fakeface_jax import classes
from fakeface_jax.data import degradations
from fakeface_jax import errors
from fakeface_jax.evaluation import metrics
from fakeface_jax.evaluation import reporting
from fakeface_jax.serving import inference
from fakeface_jax.serving import scoring

# name -> what it does to each file's bytes (None: the file as it is).
SHIFTS: dict[str, Callable[[bytes], bytes] | None] = {
    "clean": None,
    "q90": functools.partial(degradations.resave, quality=90),
    "halved_q90": functools.partial(degradations.resave, quality=90, scale=0.5),
}
COLUMNS = ("folder", "shift", "images", "real", "fake", "accuracy", "balanced_accuracy",
           "roc_auc", "average_precision", "real_false_positive_rate", "fake_recall",
           "warned", "silent_error_rate", "warnings", "no_face", "unreadable")


@dataclasses.dataclass(frozen=True)
class Folder:
  """A folder of labelled images: its name in the report and each file with its label."""
  name: str
  paths: list[str]
  labels: np.ndarray


def parse_folders(specs: Sequence[str]) -> list[Folder]:
  """Each of `specs` (`parse_folder`), unnamed ones named by the shortest tail of their
  path that no other folder's path ends with."""
  folders = [parse_folder(spec) for spec in specs]
  named = [spec.partition("=")[1] for spec in specs]
  tails = [os.path.normpath(f.name).split(os.sep) for f in folders]
  for i, folder in enumerate(folders):
    if named[i]:
      continue
    for length in range(1, len(tails[i]) + 1):
      tail = tails[i][-length:]
      if all(other[-length:] != tail for j, other in enumerate(tails) if j != i):
        break
    label = specs[i].rpartition(":")[2]
    folders[i] = dataclasses.replace(
        folder, name="/".join(tail) + (f":{label}" if label in classes.NAMES else ""))
  return folders


def parse_folder(spec: str) -> Folder:
  """[NAME=]PATH[:real|:fake] -> its image files and labels, named NAME or (until
  `parse_folders` shortens it) its path; UserError if the class of its images cannot be
  told or it holds none."""
  name, _, spec = spec.rpartition("=")
  path, _, label_name = spec.rpartition(":")
  if label_name not in classes.NAMES:
    path, label_name = spec, ""
  path = os.path.normpath(path)
  if not os.path.isdir(path):
    raise errors.UserError(f"folder {path} does not exist")
  base = os.path.basename(path)
  if not label_name and base in classes.NAMES:
    label_name = base
  if label_name:
    parts = {label_name: path}
  elif all(os.path.isdir(os.path.join(path, name)) for name in classes.NAMES):
    parts = {name: os.path.join(path, name) for name in classes.NAMES}
  else:
    raise errors.UserError(
        f"cannot tell the class of the images in {path}: give it real/ and fake/ "
        f"subfolders, or name it {path}:real or {path}:fake")
  paths, labels = [], []
  for class_name, class_folder in parts.items():
    found = inference.find_images([class_folder])
    paths += found
    labels += [classes.NAMES.index(class_name)] * len(found)
  if not paths:
    raise errors.UserError(f"no image files in {path}")
  return Folder(name or path, paths, np.asarray(labels))


def _share(mask: np.ndarray) -> float:
  return float(mask.mean()) if len(mask) else float("nan")


def folder_row(predictor: inference.Predictor, folder: Folder, shift: str,
               faces: bool = True) -> dict[str, Any]:
  """The report's row of one folder under one shift (COLUMNS): each file scored as
  `predict` scores it, by its faces (`scoring.image_rows`: fake if any face is) or,
  without `faces`, whole. Files with no face found are counted (`no_face`), not scored."""
  score = scoring.predict_faces if faces else scoring.predict_files
  rows = scoring.image_rows(score(predictor, folder.paths, SHIFTS[shift]))
  read = np.array([r["error"] is None for r in rows], bool)
  scored = np.array([r["p_fake"] is not None for r in rows], bool)
  kept = [r for r, is_scored in zip(rows, scored) if is_scored]
  labels = folder.labels[scored]
  p_fake = np.array([r["p_fake"] for r in kept], np.float64)
  predicted = np.array([classes.NAMES.index(r["image_prediction"]) for r in kept], np.int64)
  warned = np.array([bool(r["warnings"]) for r in kept], bool)
  causes = collections.Counter(cause for r in kept if r["warnings"]
                               for cause in r["warnings"].split(";"))
  is_fake, is_real = labels == classes.FAKE, labels == classes.REAL
  wrong = predicted != labels
  return {
      "folder": folder.name, "shift": shift, "images": int(scored.sum()),
      "real": int(is_real.sum()), "fake": int(is_fake.sum()),
      "accuracy": metrics.accuracy(labels, predicted),
      "balanced_accuracy": metrics.balanced_accuracy(labels, predicted),
      "roc_auc": metrics.roc_auc(is_fake, p_fake),
      "average_precision": (metrics.average_precision(is_fake, p_fake)
                            if is_real.any() else float("nan")),
      "real_false_positive_rate": metrics.called_fake_share(labels, predicted, classes.REAL),
      "fake_recall": metrics.called_fake_share(labels, predicted, classes.FAKE),
      "warned": _share(warned),
      "silent_error_rate": _share(wrong & ~warned),
      "warnings": " ".join(f"{cause}:{n}" for cause, n in causes.most_common()),
      "no_face": int((read & ~scored).sum()),
      "unreadable": int((~read).sum()),
  }


def check_shifts(shifts: Sequence[str]) -> None:
  """UserError naming the first of `shifts` that is not one of SHIFTS."""
  unknown = [s for s in shifts if s not in SHIFTS]
  if unknown:
    raise errors.UserError(f"unknown shift {unknown[0]!r}; choose from {', '.join(SHIFTS)}")


def report(predictor: inference.Predictor, folders: Sequence[Folder],
           shifts: Sequence[str] = ("clean",), faces: bool = True) -> list[dict[str, Any]]:
  """One row per folder and shift, folders in the order given (`folder_row`)."""
  check_shifts(shifts)
  return [folder_row(predictor, folder, shift, faces) for folder in folders
          for shift in shifts]


def _cell(value: Any) -> Any:
  # NaN (a metric a one-class folder does not have) reads as "-" in the table.
  return "-" if isinstance(value, float) and np.isnan(value) else value


def write(rows: list[dict[str, Any]], prefix: str) -> list[str]:
  """prefix.{json,md,png}: the rows, a Markdown table, and a figure of accuracy,
  warned share and silent-error rate per folder and shift."""
  paths = [prefix + ext for ext in (".json", ".md", ".png")]
  with open(paths[0], "w") as f:
    json.dump([{k: None if _cell(v) == "-" else v for k, v in row.items()} for row in rows],
              f, indent=2)
  with open(paths[1], "w") as f:
    f.write(reporting.markdown_table([{k: _cell(v) for k, v in row.items()} for row in rows]))
  labels = [f"{r['folder']} ({r['shift']})" for r in rows]
  reporting.plot_bars(labels, {
      "balanced accuracy": [r["balanced_accuracy"] for r in rows],
      "warned": [r["warned"] for r in rows],
      "silent errors": [r["silent_error_rate"] for r in rows]},
      paths[2], title="Cross-dataset report: balanced accuracy, warned share, silent errors",
      chance=0.5)
  return paths
