"""Checks that reject a bad config at start, in one clear line, before any work is done."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from fakeface_jax.data import datasets
from fakeface_jax.data import degradations
from fakeface_jax.data import face_crop
from fakeface_jax.data import mixture
from fakeface_jax.data import pseudo_fake_files
from fakeface_jax.data import self_blend
from fakeface_jax import errors
from fakeface_jax import models
from fakeface_jax import rundir
from fakeface_jax.training import checkpointing
from fakeface_jax.training import run_config

LR_SCHEDULES = ("constant", "inverse_time", "cosine")
# feature_cache: "auto" computes fixed features once where nothing changes the images.
FEATURES_CACHE_MODES = ("auto", "off")
# Settings that fix the shapes of a run's checkpoints: a workdir resumes only its own.
CHECKPOINT_SHAPING_KEYS = ("model", "data.image_size", "data.grayscale")
# The probability of each host augmentation (config.augment.host), in the order applied.
HOST_DEGRADATIONS = ("downscale_prob", "blur_prob", "noise_prob", "jpeg_prob")


def _choice(kind: str, value: str, choices) -> None:
  if value not in choices:
    raise errors.ConfigError(
        f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(choices))}")


def _check_grid_kept(config: Any, model: Any) -> None:
  """Refuses device augmentations that move pixels off the JPEG grid whose tables the
  model reads: the train step cannot tell the model that the grid moved."""
  device = config.augment.device
  moving = {"rotation_degrees": device.rotation_degrees > 0, "crop_size": device.crop_size,
            "crop_min_scale": device.crop_min_scale < 1.0}
  moved = [name for name, on in moving.items() if on]
  if model.reads_jpeg_tables and moved:
    raise errors.ConfigError(
        f"config.augment.device.{moved[0]} moves pixels off the JPEG grid whose tables "
        f"model {config.model.name!r} reads (config.model.jpeg_features); use the host "
        "augmentations (config.augment.host), which keep each image's tables")


def _check_file_transforms(data_config: Any, where: str = "config.data") -> None:
  try:
    degradations.FileResave.from_config(data_config.resave)
  except (ValueError, TypeError) as e:
    raise errors.ConfigError(f"{where}.resave: {e}") from None
  try:
    crop = face_crop.settings_of(data_config)
  except (ValueError, TypeError) as e:
    raise errors.ConfigError(f"{where}.face_crop: {e}") from None
  try:
    pseudo_fakes = pseudo_fake_files.settings_of(data_config)
  except (ValueError, TypeError) as e:
    raise errors.ConfigError(f"{where}.pseudo_fakes: {e}") from None
  if crop is not None and pseudo_fakes is not None:
    # A pseudo-fake is made of another file than the fake it replaces, whose face
    # landmarks it does not have.
    raise errors.ConfigError(
        f"{where}.pseudo_fakes and {where}.face_crop cannot be combined; "
        "turn one off")


def _check_mixture(data_config: Any) -> None:
  """Each source of a data mixture: a known dataset, config.data keys, sound weights."""
  names = mixture.source_names(data_config)
  for name in names:
    unknown = mixture.unknown_keys(data_config, name)
    if unknown:
      raise errors.ConfigError(
          f"config.data.mixture.{name}.{unknown[0]} is not a config.data key "
          f"(nor one of {', '.join(mixture.MIXTURE_ONLY_KEYS)})")
    _choice(f"config.data.mixture.{name}.name",
            data_config.mixture[name].get("name", data_config.name), datasets.BUILDERS)
  raw = mixture.raw_weights(data_config)
  if names and (np.any(raw < 0) or not raw.sum() > 0):
    raise errors.ConfigError(
        f"config.data.mixture weights must be non-negative with a positive "
        f"sum, got {dict(zip(names, raw.tolist()))}")


def _check_source_pairs(config: Any) -> None:
  """A head of (source, class) pairs (config.model.num_sources) needs a mixture of as
  many sources: each training image's pair is its source's."""
  pairs = config.model.get("num_sources", 1)
  sources = len(mixture.source_names(config.data))
  if pairs > 1 and pairs != sources:
    raise errors.ConfigError(
        f"config.model.num_sources={pairs} needs a data mixture of {pairs} "
        f"sources; config.data.mixture has {sources}")


def _check_host_augmentations(host: Any) -> None:
  """Probabilities in [0, 1]; the ranges that a degradation draws from, where it is on."""
  for name in HOST_DEGRADATIONS:
    if not 0 <= host[name] <= 1:
      raise errors.ConfigError(
          f"config.augment.host.{name} must be in [0, 1], got {host[name]}")
  if host.downscale_prob and not 0 < host.downscale_min_factor < 1:
    raise errors.ConfigError(
        f"config.augment.host.downscale_min_factor must be in (0, 1), got "
        f"{host.downscale_min_factor}")
  if host.jpeg_prob and not 1 <= host.jpeg_min_quality <= host.jpeg_max_quality <= 95:
    raise errors.ConfigError(
        "config.augment.host needs 1 <= jpeg_min_quality <= jpeg_max_quality <= 95, got "
        f"{host.jpeg_min_quality} and {host.jpeg_max_quality}")
  if host.blur_prob and not host.blur_max_sigma >= 0.1:
    raise errors.ConfigError(
        f"config.augment.host.blur_max_sigma must be at least 0.1 (sigmas "
        f"are drawn from [0.1, max]), got {host.blur_max_sigma}")
  if host.noise_prob and not host.noise_max_sigma > 0:
    raise errors.ConfigError(
        f"config.augment.host.noise_max_sigma must be positive, got "
        f"{host.noise_max_sigma}")


def _check_self_blend(device: Any) -> None:
  if not 0 <= device.self_blend_share <= 1:
    raise errors.ConfigError(
        f"config.augment.device.self_blend_share must be in [0, 1], got "
        f"{device.self_blend_share}")
  unknown = set(device.self_blend_kinds) - set(self_blend.MASK_KINDS)
  if device.self_blend_share and (unknown or not device.self_blend_kinds):
    raise errors.ConfigError(
        f"config.augment.device.self_blend_kinds must be a non-empty subset "
        f"of {', '.join(self_blend.MASK_KINDS)}, got "
        f"{tuple(device.self_blend_kinds)}")


def check_config(config: Any) -> None:
  """Validates everything that can be validated without reading data."""
  _choice("config.data.name", config.data.name, datasets.BUILDERS)
  _check_mixture(config.data)
  _check_file_transforms(config.data)
  for name in mixture.source_names(config.data):
    _check_file_transforms(mixture.source_config(config, name).data,
                           f"config.data.mixture.{name}")
  _choice("config.model.name", config.model.name, models.MODELS)
  _choice("config.lr_schedule", config.lr_schedule, LR_SCHEDULES)
  _choice("config.features_cache", config.features_cache, FEATURES_CACHE_MODES)
  try:
    model = models.create_model(config.model)
  except (TypeError, ValueError) as e:
    raise errors.ConfigError(
        f"config.model does not fit model {config.model.name!r}: {e}") from e
  _check_source_pairs(config)
  size = config.data.image_size
  try:
    model.check_image_size(size)
  except ValueError as e:
    raise errors.ConfigError(f"config.data.image_size={size}: {e}") from e
  for key in ("batch_size", "eval_batch_size"):
    batch = config[key]
    if batch < 1 or batch % jax.device_count():
      raise errors.ConfigError(
          f"config.{key}={batch} must be a positive multiple of the "
          f"{jax.device_count()} devices it is split over")
  crop = config.augment.device.crop_size
  if crop and (crop > size or not model.size_agnostic):
    agnostic = [name for name, cls in models.MODELS.items() if cls.size_agnostic]
    raise errors.ConfigError(
        f"config.augment.device.crop_size={crop} needs a model that pools globally "
        f"({', '.join(agnostic)}) and at most config.data.image_size={size}")
  _check_grid_kept(config, model)
  _check_host_augmentations(config.augment.host)
  _check_self_blend(config.augment.device)
  data = config.data
  for name in ("test_fraction", "validation_fraction"):
    if not 0 <= data[name] < 1:
      raise errors.ConfigError(f"config.data.{name} must be in [0, 1), got {data[name]}")
  for folds, fold in (("num_folds", "fold"), ("validation_folds", "validation_fold")):
    if data[folds] > 1 and not 0 <= data[fold] < data[folds]:
      raise errors.ConfigError(
          f"config.data.{fold}={data[fold]} must be in [0, "
          f"config.data.{folds}={data[folds]})")
  for key in ("examples_per_class", "train_examples_per_class", "eval_examples_per_class"):
    if data[key] is not None and data[key] < 1:
      raise errors.ConfigError(
          f"config.data.{key} must be at least 1 (or None for all), got "
          f"{data[key]}")
  if config.num_epochs < 1:
    raise errors.ConfigError(
        f"config.num_epochs must be at least 1, got {config.num_epochs}")
  if not 0 <= config.max_real_fpr <= 1:
    raise errors.ConfigError(
        f"config.max_real_fpr must be in [0, 1], got {config.max_real_fpr}")


def check_dataset_size(config: Any, num_train: int) -> None:
  if config.batch_size > num_train:
    raise errors.ConfigError(
        f"config.batch_size={config.batch_size} is larger than the {num_train} training "
        f"examples of dataset {config.data.name!r}; lower the batch size")


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
  for key in dotted.split("."):
    tree = tree.get(key, {}) if isinstance(tree, dict) else None
  return tree


def check_workdir(config: Any, workdir: str) -> None:
  """The workdir must be writable and, when resuming, hold only this model's checkpoints."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.ConfigError(f"--workdir {workdir} exists and is not a directory")
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.access(existing, os.W_OK | os.X_OK):
    raise errors.ConfigError(
        f"--workdir {workdir} is not writable (no write permission on "
        f"{existing})")
  saved_config = os.path.join(workdir, rundir.CONFIG_JSON)
  checkpoints = os.path.join(workdir, rundir.CHECKPOINTS_DIR)
  has_checkpoints = os.path.isdir(checkpoints) and any(
      name.isdigit() for name in os.listdir(checkpoints))
  if not (config.resume and has_checkpoints and os.path.exists(saved_config)):
    return
  try:
    # The one reader of a run's config: it also renames keys of older runs, which would
    # otherwise look like a different model here.
    saved = run_config.read_config(
        workdir, advice="the checkpoints cannot be checked to be this model's; delete it "
        "to resume anyway, or use --config.resume=false to set the checkpoints aside and "
        "start fresh")
  except checkpointing.CheckpointError as e:
    raise errors.ConfigError(str(e)) from e
  current = json.loads(config.to_json_best_effort())
  for tree in (saved, current):
    tree.get("model", {}).pop("conv_impl", None)  # Same parameters whatever the impl.
  differences = [f"{key}: {_lookup(saved, key)} -> {_lookup(current, key)}"
                 for key in CHECKPOINT_SHAPING_KEYS
                 if _lookup(saved, key) != _lookup(current, key)]
  if differences:
    raise errors.ConfigError(
        f"--workdir {workdir} holds checkpoints of a different model "
        f"({'; '.join(differences)}); use another --workdir, or --config.resume=false "
        "to set them aside and start fresh")
