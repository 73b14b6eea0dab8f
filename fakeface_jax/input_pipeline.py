"""Host-side input: decode encoded images, cache them as uint8 arrays, batch per process.

Records come from a TFDS data source with the image left as encoded bytes; grain maps
the decoder over them. Decoded splits are held in memory as uint8 arrays, so an epoch
is a permutation of indices; float conversion and augmentation happen on the device.

Batches are deterministic functions of (seed, epoch, step): a run resumed from any
step sees exactly the batches an uninterrupted run would have seen. With several
processes, each process yields its own contiguous slice of every global batch.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np
from absl import logging
from PIL import Image

from fakeface_jax import config_checks
from fakeface_jax import datasets
from fakeface_jax import preprocessing


@dataclasses.dataclass(frozen=True)
class ArraySplit:
  """A decoded split: uint8 images (N, S, S, C) and int32 labels (N,), 0 = fake, 1 = real."""
  images: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.labels)


def decode_image(data: bytes, image_size: int, grayscale: bool) -> np.ndarray:
  """Encoded image bytes -> uint8 (image_size, image_size, 1 or 3).

  JPEG `draft` lets libjpeg decode at a reduced scale first, which is much faster for
  large images; the final resize is antialiased bilinear.
  """
  with Image.open(io.BytesIO(data)) as image:
    image.draft("RGB", (image_size, image_size))
    image = image.convert("RGB").resize((image_size, image_size),
                                        Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
  return preprocessing.to_grayscale_uint8(array) if grayscale else array


def load_split(source, image_size: int, grayscale: bool) -> ArraySplit:
  """Decodes every record of a random-access source into memory."""
  decoded = (grain.MapDataset.source(source)
             .map(lambda record: (decode_image(record["image"], image_size, grayscale),
                                  record["label"])))
  channels = 1 if grayscale else 3
  images = np.empty((len(source), image_size, image_size, channels), np.uint8)
  labels = np.empty((len(source),), np.int32)
  for i, (image, label) in enumerate(decoded):
    images[i], labels[i] = image, label
  return ArraySplit(images, labels)


def _process_slice(global_batch: int, process_index: int, process_count: int) -> slice:
  per_process = global_batch // process_count
  return slice(process_index * per_process, (process_index + 1) * per_process)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Training drops the final partial batch, so every step has the same shape."""
  return num_examples // batch_size


def train_batches(data: ArraySplit, batch_size: int, *, seed: int, epoch: int,
                  start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """This process's part of each global training batch of one epoch, from `start_step`."""
  order = np.random.default_rng([seed, epoch]).permutation(len(data))
  local = _process_slice(batch_size, process_index, process_count)
  for step in range(start_step, steps_per_epoch(len(data), batch_size)):
    indices = np.sort(order[step * batch_size:(step + 1) * batch_size][local])
    yield {"image": data.images[indices], "label": data.labels[indices]}


def eval_batches(data: ArraySplit, batch_size: int, *, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Every example once, in order; the last batch is padded and masked, not dropped."""
  local = _process_slice(batch_size, process_index, process_count)
  for start in range(0, len(data), batch_size):
    indices = np.arange(start, start + batch_size)[local]
    mask = indices < len(data)
    indices = np.where(mask, indices, 0)
    yield {"image": data.images[indices], "label": data.labels[indices],
           "mask": mask.astype(np.float32)}


def load_data(config: Any) -> dict[str, ArraySplit]:
  """Prepares the dataset and decodes each available split into memory."""
  builder = datasets.prepare(config.data)
  splits = datasets.role_splits(builder)
  if "train" not in splits:
    raise config_checks.ConfigError(
        f"dataset {config.data.name!r} has no training split (found: "
        f"{', '.join(builder.info.splits.keys()) or 'none'})")
  data = {}
  for role, split in splits.items():
    start = time.perf_counter()
    data[role] = load_split(datasets.data_source(builder, split), config.data.image_size,
                            config.data.grayscale)
    logging.info("Loaded %s split %r: %d images %s in %.1fs.", role, split, len(data[role]),
                 data[role].images.shape[1:], time.perf_counter() - start)
  # A dataset without a validation split is validated on its test split, and vice versa.
  data.setdefault("validation", data.get("test", data["train"]))
  data.setdefault("test", data["validation"])
  return data
