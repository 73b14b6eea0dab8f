"""A run's saved config (`config.json`): written when the run starts, read back by
resume, evaluate and predict, with keys renamed or added since older runs were saved
brought up to date."""

from __future__ import annotations

import json
import os
from typing import Any

import jax

from fakeface_jax import rundir
from fakeface_jax.training import checkpointing

# config.model keys renamed since runs were saved, so that older runs still load.
RENAMED_MODEL_KEYS = {"colour_spaces": "color_spaces"}
# config.data keys added since runs were saved, with the behaviour older runs had.
ADDED_DATA_KEYS = {"native_crop": False, "validation_folds": 0, "validation_fold": 0,
                   "resave": {"quality": [0, 0], "scale": [1.0, 1.0], "seed": 0},
                   "face_crop": {"enabled": False, "margin": 1.0},
                   "pseudo_fakes": {"kinds": [], "weights": [], "seed": 0}}
# Top-level config keys added since runs were saved, likewise.
ADDED_KEYS = {"max_real_fpr": 1.0}
# config.model keys added since runs were saved, by model name, likewise.
ADDED_MODEL_KEYS = {"cooccurrence": {"num_sources": 1, "regions": [1.0]}}


def write_config(workdir: str, config: Any) -> None:
  """Writes the run's config as JSON into the workdir (process 0 only)."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, rundir.CONFIG_JSON), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


# What to do about a damaged config.json, unless the caller knows better.
RESTORE_CONFIG_ADVICE = ("it records the run's model and preprocessing: restore it from a "
                         "copy of the run, or retrain")


def read_config(workdir: str, advice: str = RESTORE_CONFIG_ADVICE) -> dict[str, Any]:
  """The run's saved config, with renamed keys brought up to date; checkpointing.CheckpointError
  naming the file if it is missing, or damaged (then saying `advice`)."""
  path = os.path.join(workdir, rundir.CONFIG_JSON)
  try:
    with open(path, encoding="utf-8") as f:
      config = json.load(f)
  except FileNotFoundError as e:
    raise checkpointing.CheckpointError(f"{path} is missing: {workdir} is not a run directory written "
                          "by main.py") from e
  except (OSError, ValueError) as e:
    raise checkpointing.CheckpointError(f"{path} is damaged ({checkpointing.one_line(e, 80)}); {advice}") from e
  if not isinstance(config, dict):
    raise checkpointing.CheckpointError(f"{path} is damaged (not a JSON object); {advice}")
  model = config.get("model", {})
  for old, new in RENAMED_MODEL_KEYS.items():
    if old in model:
      model[new] = model.pop(old)
  for key, value in ADDED_MODEL_KEYS.get(model.get("name"), {}).items():
    model.setdefault(key, value)
  data = config.get("data", {})
  for key, value in ADDED_DATA_KEYS.items():
    data.setdefault(key, value)
  for key, value in ADDED_KEYS.items():
    config.setdefault(key, value)
  return config
