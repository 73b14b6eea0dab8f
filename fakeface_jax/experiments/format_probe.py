"""Format-only probe: can the label be told from file format alone, in the training batches?

A detector should learn what generated a face, not how its file was stored. When fakes
and reals come from different sources they often differ in format as well (PNG against
JPEG, one JPEG quality against another, one resolution against another), and a model
can then reach high accuracy by reading the format. This probe measures how much of the
label the format carries in the images the train step sees (`input_pipeline.train_batches`
with the run's host augmentations, config.augment.host): per image a few statistics that
describe only its format, never its content, and a small classifier on those statistics
alone, scored by cross-validated balanced accuracy. Near 0.5, format tells nothing;
near 1, a model could detect fakes by their format.

The statistics (`STATISTICS`): the JPEG quality of the image's tables (0 with none),
whether it has an aligned JPEG grid at all, blockiness (differences across 8-pixel block
boundaries against those within blocks), high-frequency energy and a robust noise level
(of the Laplacian: resolution, upscaling, blur and noise leave traces there), and
compressibility (bytes per pixel of the image saved as PNG, a stand-in for file size).
The classifier is a logistic regression on the standardised statistics and their
squares, with balanced class weights and a small L2 penalty, in NumPy.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from fakeface_jax.data import input_pipeline
from fakeface_jax.data import jpeg_tables
from fakeface_jax.data import preprocessing

STATISTICS = ("jpeg_quality", "has_grid", "blockiness", "laplacian_energy",
              "laplacian_median", "png_bytes_per_pixel")
BLOCK = 8  # JPEG's block size in pixels.
# Added to both sides of the blockiness ratio (0-255 units), so flat images give 0.
BLOCKINESS_EPSILON = 0.1
L2_PENALTY = 1.0
NEWTON_STEPS = 25


def _qualities(tables: np.ndarray) -> np.ndarray:
  """(N, 2, 8, 8) tables -> (N,) estimated JPEG quality, 0 where an image has none."""
  return np.array([jpeg_tables.estimate_quality(t[0]) if t.any() else 0 for t in tables],
                  np.float64)


def blockiness(gray: np.ndarray) -> np.ndarray:
  """(N, H, W) gray -> (N,) log ratio of the mean absolute difference across 8-pixel
  block boundaries to that within blocks, over rows and columns: > 0 where a JPEG grid
  shows at the pixels' own 8x8 alignment, about 0 without one."""
  ratios = []
  for axis in (1, 2):
    diffs = np.abs(np.diff(gray, axis=axis))
    boundary = np.arange(diffs.shape[axis]) % BLOCK == BLOCK - 1
    across = np.compress(boundary, diffs, axis=axis).mean(axis=(1, 2))
    within = np.compress(~boundary, diffs, axis=axis).mean(axis=(1, 2))
    ratios.append(np.log((across + BLOCKINESS_EPSILON) / (within + BLOCKINESS_EPSILON)))
  return np.mean(ratios, axis=0)


def _laplacian(gray: np.ndarray) -> np.ndarray:
  """(N, H, W) -> (N, H - 2, W - 2) four-neighbour Laplacian of the interior."""
  return (4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1]
          - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:])


def png_bytes_per_pixel(images: np.ndarray) -> np.ndarray:
  """uint8 (N, H, W, C) -> (N,) bytes per pixel of each image saved losslessly as PNG."""
  sizes = []
  for image in images:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
    sizes.append(buffer.tell())
  return np.asarray(sizes, np.float64) / (images.shape[1] * images.shape[2])


def probe_statistics(batch: dict[str, np.ndarray]) -> np.ndarray:
  """A batch of `train_batches` -> float64 (N, len(STATISTICS)): each image's format
  statistics, from its uint8 pixels and its "jpeg_tables" (none where the batch has no
  tables)."""
  images = np.asarray(batch["image"])
  tables = batch.get("jpeg_tables")
  if tables is None:
    tables = np.zeros((len(images), *jpeg_tables.NO_TABLES.shape), jpeg_tables.TABLES_DTYPE)
  gray = preprocessing.gray_plane(images).astype(np.float64)
  laplacian = np.abs(_laplacian(gray)).reshape(len(images), -1)
  return np.stack([
      _qualities(np.asarray(tables)),
      np.asarray(tables).reshape(len(images), -1).any(axis=1).astype(np.float64),
      blockiness(gray),
      np.log1p(np.mean(laplacian ** 2, axis=1)),
      np.log1p(np.median(laplacian, axis=1)),
      png_bytes_per_pixel(images),
  ], axis=1)


def _design(statistics: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """Standardised statistics, their squares and a constant: the classifier's inputs."""
  z = (statistics - mean) / std
  return np.hstack([z, z ** 2, np.ones((len(z), 1))])


def _fit_logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Weights of an L2-penalised logistic regression (the constant, last, unpenalised)
  with balanced class weights, by Newton's method."""
  counts = np.bincount(y, minlength=2)
  sample_weights = (len(y) / (2.0 * counts))[y]
  penalty = np.full(x.shape[1], L2_PENALTY)
  penalty[-1] = 1e-6
  w = np.zeros(x.shape[1])
  for _ in range(NEWTON_STEPS):
    p = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
    gradient = x.T @ (sample_weights * (p - y)) + penalty * w
    hessian = (x.T * (sample_weights * p * (1 - p))) @ x + np.diag(penalty)
    w -= np.linalg.solve(hessian, gradient)
  return w


def balanced_accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  """The mean of the two classes' recalls: 0.5 for any constant or random guess."""
  return float(np.mean([np.mean(predictions[labels == c] == c) for c in (0, 1)]))


def _folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
  """(N,) fold of each example: each class shuffled and dealt round the folds."""
  rng = np.random.default_rng(seed)
  fold = np.empty(len(labels), np.int64)
  for c in (0, 1):
    members = rng.permutation(np.flatnonzero(labels == c))
    fold[members] = np.arange(len(members)) % folds
  return fold


def probe_accuracy(statistics: np.ndarray, labels: np.ndarray, folds: int = 5,
                   seed: int = 0) -> float:
  """Balanced accuracy of the probe's predictions, each made by a classifier fitted on
  the other folds (stratified k-fold cross-validation, seeded by `seed`)."""
  statistics = np.asarray(statistics, np.float64)
  labels = np.asarray(labels).astype(np.int64)
  if np.bincount(labels, minlength=2).min() < folds:
    raise ValueError(f"{folds}-fold cross-validation needs at least {folds} images of "
                     f"each class, got {np.bincount(labels, minlength=2).tolist()}")
  fold = _folds(labels, folds, seed)
  predictions = np.empty(len(labels), np.int64)
  for k in range(folds):
    train, test = fold != k, fold == k
    mean, std = statistics[train].mean(axis=0), statistics[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    w = _fit_logistic(_design(statistics[train], mean, std), labels[train])
    predictions[test] = _design(statistics[test], mean, std) @ w > 0
  return balanced_accuracy(predictions, labels)


def stream_statistics(split: input_pipeline.Split, config: Any,
                      num_batches: int) -> tuple[np.ndarray, np.ndarray]:
  """Format statistics (N, F) and labels (N,) of the first `num_batches` training
  batches of a run with `config` (its seed, batch size and config.augment.host), from
  epoch 1 on, into later epochs where one epoch has fewer batches."""
  per_epoch = input_pipeline.steps_per_epoch(len(split), config.batch_size)
  if per_epoch < 1:
    raise ValueError(f"batch size {config.batch_size} is larger than the split's "
                     f"{len(split)} images")
  statistics, labels = [], []
  epoch = 1
  while len(statistics) < num_batches:
    for batch in input_pipeline.train_batches(
        split, config.batch_size, seed=config.seed, epoch=epoch,
        end_step=min(per_epoch, num_batches - len(statistics)), **config.augment.host):
      statistics.append(probe_statistics(batch))
      labels.append(batch["label"])
    epoch += 1
  return np.concatenate(statistics), np.concatenate(labels)


def probe_stream(split: input_pipeline.Split, config: Any, num_batches: int,
                 folds: int = 5) -> float:
  """The probe's balanced accuracy on the images of `num_batches` training batches of a
  run with `config` (`stream_statistics`): about 0.5 when the host augmentations leave
  no trace of format that tells the classes apart.

  An image seen in several epochs may fall in several folds; the probe's few statistics
  cannot recognise an image, so this does not inflate its accuracy.
  """
  statistics, labels = stream_statistics(split, config, num_batches)
  return probe_accuracy(statistics, labels, folds=folds, seed=config.seed)
