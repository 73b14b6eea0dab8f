"""Datasets as TFDS builders, prepared once as ArrayRecord and read with `tfds.data_source`.

`config.data.name` picks a builder from `BUILDERS`; `prepare` writes it into
`config.data.data_dir` on first use and reuses it after. No TensorFlow is needed at any
point: only `download_and_prepare` and random-access data sources are used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import tensorflow_datasets as tfds
from absl import logging

from fakeface_jax.datasets import synthetic

# Each factory turns `config.data` and a data directory into a builder (not yet prepared).
BUILDERS: dict[str, Callable[[Any, str], tfds.core.DatasetBuilder]] = {
    "synthetic": synthetic.make_builder,
}

# Roles the trainer needs, and the split names datasets use for them, in order of preference.
ROLE_SPLITS = {
    "train": ("train",),
    "validation": ("validation", "valid"),
    "test": ("test",),
}

DEFAULT_DATA_DIR = "~/tensorflow_datasets"


def data_dir(data_config: Any) -> str:
  return os.path.expanduser(data_config.get("data_dir") or DEFAULT_DATA_DIR)


def prepare(data_config: Any) -> tfds.core.DatasetBuilder:
  """Returns the prepared builder named by `data_config.name`, preparing it if needed.

  On several hosts only process 0 writes; the others wait for it and then read.
  """
  builder = BUILDERS[data_config.name](data_config, data_dir(data_config))
  if jax.process_index() == 0:
    if not builder.is_prepared():
      logging.info("Preparing dataset %s into %s (once).", builder.info.full_name,
                   builder.data_dir)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            manual_dir=data_config.get("manual_dir")))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"prepare {builder.info.full_name}")
  return builder


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
