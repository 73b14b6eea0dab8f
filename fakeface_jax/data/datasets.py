"""Datasets as TFDS builders, prepared once as ArrayRecord and read with `tfds.data_source`.

`config.data.name` picks a builder from `BUILDERS`; `prepare` writes it into
`config.data.data_dir` on first use and reuses it after. No TensorFlow is needed at any
point: only `download_and_prepare` and random-access data sources are used.
"""

from __future__ import annotations

import functools
import logging as std_logging
import os
import sys
from collections.abc import Callable
from typing import Any

import jax
import tensorflow_datasets as tfds
from absl import logging

from fakeface_jax.data import folders
from fakeface_jax.data import synthetic

DatasetError = folders.DatasetError

# Each factory turns `config.data` and a data directory into a builder (not yet prepared).
BUILDERS: dict[str, Callable[[Any, str], tfds.core.DatasetBuilder]] = {
    "synthetic": synthetic.make_builder,
    **{name: functools.partial(folders.make_builder, name)
       for name in ("real_vs_fake_140k", "ciplab", "image_folder")},
}

# Roles the trainer needs, and the split names datasets use for them, in order of preference.
ROLE_SPLITS = {
    "train": ("train",),
    "validation": ("validation", "valid"),
    "test": ("test",),
}

DEFAULT_DATA_DIR = "~/tensorflow_datasets"


class _TfdsNoiseFilter(std_logging.Filter):
  """Drops TFDS's warnings that every run of a custom builder gets (its config is
  custom by design; a not-yet-prepared folder has no dataset_info.json)."""

  NOISE = ("Using custom data configuration: %s", "Variant folder %s has no %s")

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.msg not in self.NOISE


_TFDS_NOISE_FILTER = _TfdsNoiseFilter()


def quiet_tfds() -> None:
  """Silences TFDS's per-run noise; progress bars stay only on a terminal, where their
  escape codes do not end up in logs. Other warnings are kept."""
  logging.get_absl_logger().addFilter(_TFDS_NOISE_FILTER)  # Added once: same object.
  if not sys.stderr.isatty():
    tfds.disable_progress_bar()


def data_dir(data_config: Any) -> str:
  return os.path.expanduser(data_config.get("data_dir") or DEFAULT_DATA_DIR)


def prepare(data_config: Any) -> tfds.core.DatasetBuilder:
  """Returns the prepared builder named by `data_config.name`, preparing it if needed.

  On several hosts only process 0 writes; the others wait for it and then read. Files
  that do not decode are left out, listed in the prepared data's `bad_files.json`, and
  counted in a warning on every run.
  """
  quiet_tfds()
  builder = BUILDERS[data_config.name](data_config, data_dir(data_config))
  if jax.process_index() == 0 and not builder.is_prepared():
    if isinstance(builder, folders.FolderBuilder):
      # Before TFDS announces the preparation or creates any folder under the data_dir.
      builder.check_download()
    logging.info("Preparing dataset %s into %s (once).", builder.info.full_name,
                 builder.data_dir)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            manual_dir=data_config.get("manual_dir")))
    folders.write_bad_files(builder)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"prepare {builder.info.full_name}")
    if jax.process_index() != 0:
      # A builder reads its dataset info when made: make it again now that it exists.
      builder = BUILDERS[data_config.name](data_config, data_dir(data_config))
  bad_files = folders.read_bad_files(builder)
  if bad_files:
    logging.warning("%d file(s) of %s could not be decoded and were left out; see %s.",
                    len(bad_files), data_config.manual_dir,
                    os.path.join(builder.data_dir, folders.BAD_FILES_JSON))
  return builder


def prepared_dir(data_config: Any) -> str:
  """The folder `prepare` writes the dataset named by `data_config` into."""
  return BUILDERS[data_config.name](data_config, data_dir(data_config)).data_dir


def role_splits(builder: tfds.core.DatasetBuilder) -> dict[str, str]:
  """Maps the roles train/validation/test to the builder's split names that exist."""
  available = set(builder.info.splits.keys())
  roles = {}
  for role, candidates in ROLE_SPLITS.items():
    for split in candidates:
      if split in available:
        roles[role] = split
        break
  return roles


def data_source(builder: tfds.core.DatasetBuilder, split: str):
  """Random-access source of records with the image left as encoded bytes."""
  return builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
