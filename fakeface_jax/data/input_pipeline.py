"""Host-side input: decode encoded images, cache them as uint8 arrays, batch per process.

Records come from a TFDS data source with the image left as encoded bytes; grain maps
the decoder over them. Decoded splits are held in memory as uint8 arrays, so an epoch
is a permutation of indices; float conversion and augmentation happen on the device.

Batches are deterministic functions of (seed, epoch, step): a run resumed from any
step sees exactly the batches an uninterrupted run would have seen. With several
processes, each process yields its own contiguous slice of every global batch.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import grain
import numpy as np
from absl import logging

from fakeface_jax import classes
from fakeface_jax.data import datasets
from fakeface_jax.data import degradations
from fakeface_jax.data import face_crop
from fakeface_jax.data import face_files
from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables
from fakeface_jax.data import mixture
from fakeface_jax.data import pseudo_fake_files
from fakeface_jax.data import selection
from fakeface_jax import errors

CACHE_MODES = ("auto", "memory", "stream")


class FileTransform(Protocol):
  """A source's files changed before decoding, each by its path alike in every run
  (`degradations.FileResave`, `face_files.FaceCropFiles`)."""

  def __call__(self, data: bytes, path: str) -> bytes: ...

  def copy_format(self, data: bytes, path: str) -> image_decoding.ImageFormat:
    """What the changed file is, for the training-domain description."""


@dataclasses.dataclass(frozen=True)
class ArraySplit:
  """A split decoded into memory: uint8 images (N, S, S, C), int32 labels (N,) with
  0 = fake and 1 = real, each image's path and its difficulty group ("none" if none),
  and what each file was (`image_decoding.ImageFormat`; None for arrays made in
  memory, whose models then fall back to their configured JPEG quality), and whether
  they were decoded with `image_decoding.decode_with_format`'s native `crop` (the
  files through the source's `FileTransform`, where a run asks for one)."""
  images: np.ndarray
  labels: np.ndarray
  paths: np.ndarray | None = None
  difficulty: np.ndarray | None = None
  formats: Sequence[image_decoding.ImageFormat] | None = None
  crop: bool = False

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def image_shape(self) -> tuple[int, ...]:
    return self.images.shape[1:]

  def take(self, positions: np.ndarray) -> np.ndarray:
    return self.images[positions]

  def take_tables(self, positions: np.ndarray) -> np.ndarray | None:
    """The images' JPEG tables whose grid lines up with their pixels (N, 2, 8, 8)."""
    if self.formats is None:
      return None
    return np.stack([self.formats[p].grid_tables(self.images.shape[1], self.crop)
                     for p in positions])

  def take_formats(self, positions: np.ndarray) -> list[image_decoding.ImageFormat] | None:
    return None if self.formats is None else [self.formats[p] for p in positions]

  def take_batch(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The images and their JPEG tables (what a batch holds)."""
    return self.take(positions), self.take_tables(positions)


@dataclasses.dataclass(frozen=True)
class StreamedSplit:
  """A split decoded on demand from its records, for data too large for memory.

  Same interface as ArraySplit for batching; labels, paths and difficulties are read
  up front (no decoding), images at each `take`.
  """
  source: Any
  indices: np.ndarray  # Record index of each position.
  labels: np.ndarray
  paths: np.ndarray
  difficulty: np.ndarray
  image_size: int
  grayscale: bool
  crop: bool = False
  transform: FileTransform | None = None

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def image_shape(self) -> tuple[int, ...]:
    return (self.image_size, self.image_size, 1 if self.grayscale else 3)

  def take(self, positions: np.ndarray) -> np.ndarray:
    return self.take_batch(positions)[0]

  def take_batch(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images and their JPEG tables (what a batch holds), each record read once."""
    images = np.empty((len(positions), *self.image_shape), np.uint8)
    tables = np.empty((len(positions), *jpeg_tables.NO_TABLES.shape),
                      jpeg_tables.TABLES_DTYPE)
    for i, position in enumerate(positions):
      images[i], image_format = image_decoding.decode_with_format(
          _file_bytes(self.source[int(self.indices[position])], self.transform),
          self.image_size, self.grayscale, self.crop)
      tables[i] = image_format.grid_tables(self.image_size, self.crop)
    return images, tables

  def take_formats(self, positions: np.ndarray) -> list[image_decoding.ImageFormat]:
    """What the files were (re-saved, where they are), from their headers: nothing
    decoded or encoded."""
    return [_file_format(self.source[int(self.indices[p])], self.transform)
            for p in positions]


Split = ArraySplit | StreamedSplit | mixture.MixedSplit


def file_transform(data_config: Any, builder) -> FileTransform | None:
  """What a source's files go through before decoding: fakes replaced by pseudo-fakes
  (config.data.pseudo_fakes), re-saved (config.data.resave), then cut to their face
  (config.data.face_crop; config_checks refuses it with pseudo-fakes), or None for the
  files as they are."""
  resave = degradations.FileResave.from_config(data_config.resave)
  pseudo_fakes = pseudo_fake_files.settings_of(data_config)
  if pseudo_fakes is not None:
    return pseudo_fake_files.PseudoFakeFiles(builder, pseudo_fakes, resave)
  settings = face_crop.settings_of(data_config)
  if settings is None:
    return resave
  return face_files.FaceCropFiles(face_files.landmarks(builder), settings, resave)


def _file_bytes(record, transform: FileTransform | None) -> bytes:
  """A record's encoded image, through `transform` where there is one."""
  if transform is None:
    return record["image"]
  return transform(record["image"], selection.record_fields(record)[1])


def _file_format(record, transform: FileTransform | None) -> image_decoding.ImageFormat:
  """The `ImageFormat` of `_file_bytes(record, transform)`, from headers alone."""
  if transform is None:
    return image_decoding.read_header(record["image"])
  return transform.copy_format(record["image"], selection.record_fields(record)[1])


def load_split(source, image_size: int, grayscale: bool,
               indices: Sequence[int] | None = None, crop: bool = False,
               transform: FileTransform | None = None) -> ArraySplit:
  """Decodes the records at `indices` (default: all) of a random-access source
  (`crop`: `image_decoding.decode_with_format`'s), through `transform` first if given.

  Grain reads and decodes in a thread pool: PIL releases the GIL while decoding, and
  threads start instantly where worker processes would cost seconds each.
  """
  indices = np.arange(len(source)) if indices is None else np.asarray(indices, np.int64)

  def decode(i):
    record = source[int(indices[i])]
    image, image_format = image_decoding.decode_with_format(
        _file_bytes(record, transform), image_size, grayscale, crop)
    if transform is not None:
      # What the file was, as its transform describes it: a face crop is decoded from a
      # PNG, but was a face of the file's format, at the face's size.
      image_format = _file_format(record, transform)
    return image, image_format, record

  decoded = (grain.MapDataset.range(len(indices)).map(decode)
             .to_iter_dataset(grain.ReadOptions(num_threads=os.cpu_count() or 1)))
  channels = 1 if grayscale else 3
  images = np.empty((len(indices), image_size, image_size, channels), np.uint8)
  fields, formats = [], []
  for i, (image, image_format, record) in enumerate(decoded):
    images[i] = image
    formats.append(image_format)
    fields.append(selection.record_fields(record))
  meta = selection.metadata_arrays(fields)
  return ArraySplit(images, meta["label"], meta["path"], meta["difficulty"], formats, crop)


def _process_slice(global_batch: int, process_index: int, process_count: int) -> slice:
  per_process = global_batch // process_count
  return slice(process_index * per_process, (process_index + 1) * per_process)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Training drops the final partial batch, so every step has the same shape."""
  return num_examples // batch_size


def _prefetched(make_batch, steps: range) -> Iterator[dict[str, np.ndarray]]:
  """make_batch(step) for each step, in order, built ahead in a grain thread pool.

  Decoding a streamed batch (PIL releases the GIL) and gathering a cached one overlap
  with the device step this way.
  """
  threads = os.cpu_count() or 1
  return iter(grain.MapDataset.source(steps).map(make_batch).to_iter_dataset(
      grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)))


def _degrade_some(images: np.ndarray, tables: np.ndarray | None, local: slice,
                  rng: np.random.Generator, batch_size: int, prob: float, draw_settings,
                  degrade, tables_after) -> None:
  """Degrades, in place, this process's images that a draw with probability `prob` picks,
  and sets their JPEG tables to `tables_after(setting)` (None: each keeps its own).

  Both draws (which positions, then `draw_settings(rng, batch_size)`: one setting, or
  one row of settings, each) cover the whole global batch, so any process count
  degrades each global position alike; `degrade(batch, setting)` applies one of
  `degradations`' functions.
  """
  apply = rng.random(batch_size) < prob
  settings = draw_settings(rng, batch_size)
  for i in np.flatnonzero(apply[local]):
    setting = settings[local][i].tolist()
    images[i] = degrade(images[i:i + 1], setting)[0]
    if tables is not None and tables_after is not None:
      tables[i] = tables_after(setting)


class HostDegradation(NamedTuple):
  """One host degradation of `train_batches`, drawn from [seed, epoch, step, *stream]."""
  stream: tuple[int, ...]
  prob: float
  draw_settings: Callable[[np.random.Generator, int], np.ndarray]
  degrade: Callable[[np.ndarray, Any], np.ndarray]
  tables_after: Callable[[Any], np.ndarray] | None


def host_degradations(*, jpeg_prob: float = 0.0, jpeg_min_quality: int = 30,
                      jpeg_max_quality: int = 95, downscale_prob: float = 0.0,
                      downscale_min_factor: float = 0.5, blur_prob: float = 0.0,
                      blur_max_sigma: float = 1.5, noise_prob: float = 0.0,
                      noise_max_sigma: float = 5.0) -> list[HostDegradation]:
  """The host degradations that are on (probability > 0), in the order images meet them
  online: downscale, blur, noise, then JPEG re-encoding.

  Each draws from a random stream of its own, so turning one on leaves the draws of the
  others, and of existing configs, unchanged (JPEG's, the oldest, has no suffix).
  Tables: resampling moves the pixels off the JPEG grid (none); blur and noise change
  values, not positions, so an image keeps the grid and tables it had, unless a
  re-encode, which comes after them, gives it the standard tables of its quality.
  """
  def noise_settings(rng, n):  # Each image's sigma and the seed of its noise.
    return np.stack([rng.uniform(0.0, noise_max_sigma, n), rng.integers(0, 2**31, n)],
                    axis=1)

  def noise(batch, setting):
    return degradations.gaussian_noise(batch, setting[0], int(setting[1]))

  steps = [
      HostDegradation((1,), downscale_prob,
                      lambda rng, n: rng.uniform(downscale_min_factor, 1.0, n),
                      degradations.downscale, lambda _: jpeg_tables.NO_TABLES),
      HostDegradation((2,), blur_prob, lambda rng, n: rng.uniform(0.1, blur_max_sigma, n),
                      degradations.gaussian_blur, None),
      HostDegradation((3,), noise_prob, noise_settings, noise, None),
      HostDegradation((), jpeg_prob,
                      lambda rng, n: rng.integers(jpeg_min_quality, jpeg_max_quality + 1, n),
                      degradations.jpeg, jpeg_tables.standard_tables),
  ]
  return [step for step in steps if step.prob > 0]


def batch_of(images: np.ndarray, tables: np.ndarray | None,
             **fields: np.ndarray) -> dict[str, np.ndarray]:
  """A batch's arrays: "image", "jpeg_tables" where the split has them, and `fields`."""
  tables = {} if tables is None else {"jpeg_tables": tables}
  return {"image": images, **tables, **fields}


def _sources_of(data: Split, positions: np.ndarray) -> dict[str, np.ndarray]:
  """A mixture's batch field "source": each image's source index (for models whose
  training logits are (source, class) pairs); nothing for a single dataset."""
  if isinstance(data, mixture.MixedSplit):
    return {"source": data.source_indices[positions]}
  return {}


def epoch_order(data: Split, seed: int, epoch: int) -> np.ndarray:
  """The positions of one epoch, in training order: a seeded permutation, or for a data
  mixture its weighted draw (`mixture.MixedSplit.epoch_order`)."""
  if isinstance(data, mixture.MixedSplit):
    return data.epoch_order(seed, epoch)
  return np.random.default_rng([seed, epoch]).permutation(len(data))


def train_batches(data: Split, batch_size: int, *, seed: int, epoch: int,
                  start_step: int = 0, end_step: int | None = None,
                  process_index: int = 0, process_count: int = 1,
                  **host: float) -> Iterator[dict[str, np.ndarray]]:
  """This process's part of each global training batch of one epoch, from `start_step`
  up to `end_step` (by default the epoch's end).

  Batch contents are a function of (seed, epoch, step) only: the global batch is fixed
  first and each process takes its contiguous slice, so any process count and any
  resume point see the same batches. `host` (config.augment.host, see
  `host_degradations`) turns on host-side degradations, each drawn per global position
  from the same (seed, epoch, step), in the order images meet them online:
  `downscale_prob` > 0 shrinks an image by a factor in [downscale_min_factor, 1) and
  brings it back to size (`degradations.downscale`); `blur_prob` > 0 blurs it with a
  sigma in [0.1, blur_max_sigma]; `noise_prob` > 0 adds Gaussian noise of a sigma in
  [0, noise_max_sigma]; `jpeg_prob` > 0 re-encodes it as JPEG at a quality in
  [jpeg_min_quality, jpeg_max_quality].
  """
  order = epoch_order(data, seed, epoch)
  local = _process_slice(batch_size, process_index, process_count)
  steps = host_degradations(**host)

  def make_batch(step):
    positions = np.sort(order[step * batch_size:(step + 1) * batch_size])
    images, tables = data.take_batch(positions[local])
    for degradation in steps:
      rng = np.random.default_rng([seed, epoch, step, *degradation.stream])
      _degrade_some(images, tables, local, rng, batch_size, degradation.prob,
                    degradation.draw_settings, degradation.degrade,
                    degradation.tables_after)
    return batch_of(images, tables, label=data.labels[positions[local]],
                    **_sources_of(data, positions[local]))

  if end_step is None:
    end_step = steps_per_epoch(len(data), batch_size)
  return _prefetched(make_batch, range(start_step, end_step))


def eval_batches(data: Split, batch_size: int, *, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Every example once, in order; the last batch is padded and masked, not dropped."""
  local = _process_slice(batch_size, process_index, process_count)

  def make_batch(start):
    positions = np.arange(start, start + batch_size)[local]
    mask = positions < len(data)
    positions = np.where(mask, positions, 0)
    return batch_of(*data.take_batch(positions), label=data.labels[positions],
                    mask=mask.astype(np.float32))

  return _prefetched(make_batch, range(0, len(data), batch_size))


def _fits_in_memory(num_images: int, image_shape: tuple[int, ...]) -> bool:
  """Whether decoded uint8 images would take under half of the memory available now."""
  needed = num_images * int(np.prod(image_shape))
  try:
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError):  # Not on this platform: assume it fits.
    return True
  return needed < available // 2


def load_data(config: Any, cache: str | None = None) -> dict[str, Split]:
  """Prepares the dataset and returns each role's selected examples.

  `cache` (default `config.data.cache`): "memory" decodes every image once into RAM;
  "stream" decodes each batch when it is needed; "auto" picks memory when the decoded
  images take less than half of the free memory.
  """
  cache = cache or config.data.cache
  if cache not in CACHE_MODES:
    raise errors.ConfigError(
        f"config.data.cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
  names = mixture.source_names(config.data)
  if names:
    return _load_mixture(config, names, cache)
  builder = datasets.prepare(config.data)
  selected = selection.select_examples(config, builder)
  size, gray, crop = config.data.image_size, config.data.grayscale, config.data.native_crop
  transform = file_transform(config.data, builder)
  shape = (size, size, 1 if gray else 3)
  if cache == "auto":
    total = sum(len(indices) for _, indices in selected.values())
    cache = "memory" if _fits_in_memory(total, shape) else "stream"
    logging.info("config.data.cache=auto: %s (%d images of %s).", cache, total, shape)
  data = {}
  for role, (split, indices) in selected.items():
    same = [r for r, (s, i) in selected.items()
            if r in data and s == split and np.array_equal(i, indices)]
    if same:  # Validation and test are often the same examples: decode them once.
      data[role] = data[same[0]]
      continue
    start = time.perf_counter()
    source = datasets.data_source(builder, split)
    if cache == "memory":
      data[role] = load_split(source, size, gray, indices, crop, transform)
    else:
      meta = selection.read_metadata(source, indices)
      data[role] = StreamedSplit(source, np.asarray(indices), meta["label"], meta["path"],
                                 meta["difficulty"], size, gray, crop, transform)
    logging.info("%s %s: %d images %s from split %r in %.1fs.",
                 "Loaded" if cache == "memory" else "Streaming", role, len(data[role]),
                 shape, split, time.perf_counter() - start)
  return data


def _load_mixture(config: Any, names: list[str], cache: str) -> dict[str, Split]:
  """Each role's images of every source of `config.data.mixture`, end to end."""
  per_source = [load_data(mixture.source_config(config, name), cache) for name in names]
  weights = mixture.weights(config.data)
  for name, data, weight in zip(names, per_source, weights):
    logging.info("Mixture source %s (weight %.3f): %s.", name, weight,
                 ", ".join(f"{len(split)} {role}" for role, split in data.items()))
  return {role: mixture.MixedSplit([data[role] for data in per_source], names, weights)
          for role in per_source[0]}


def write_manifest(data: dict[str, Split], path: str) -> None:
  """CSV of exactly which files went into each role: role,path,label,difficulty."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["role", "path", "label", "difficulty"])
    for role, split in data.items():
      for row in zip(split.paths, split.labels, split.difficulty):
        writer.writerow([role, row[0], classes.NAMES[row[1]], row[2]])
