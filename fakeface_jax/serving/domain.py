"""What a run was trained on, and the images it has no basis for: prediction warnings.

At the end of training, `describe` records what the training images were (file formats,
color modes, widths and heights, JPEG qualities, whether the model read them on their
own JPEG grid) and how the model itself sees them: the mean and spread of its embedding
(the input of its final dense layer) per dimension, and a cut-off on an image's distance
from them, calibrated so that `CUTOFF_QUANTILE` of the validation images fall within it.
`image_warnings` compares one image with that description.

Warnings say that a prediction has no basis in the training data: the image is of a
kind the model never saw (most often another format, size or JPEG quality, which the
traces these detectors read depend on), not that it is hard. They are written to
`WORKDIR/training_domain.json` (`rundir.DOMAIN_JSON`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from PIL import JpegImagePlugin

from fakeface_jax.data import degradations
from fakeface_jax.data import image_decoding
from fakeface_jax import rundir

# Each warning's name (as `predict` writes it) and what it means.
WARNINGS = {
    "upscaled": "smaller than the model's input, so upscaled to it",
    "size": "width or height outside the training images' range",
    "format": "a file format no training image had",
    "mode": "a color mode (gray, palette, alpha, CMYK) no training image had",
    "jpeg_quality": "JPEG quality outside the training images' range",
    "jpeg_grid": "no JPEG grid aligned with the model's input (resized, or not a JPEG), "
                 "where the model reads the grid and every training image had one",
    "features": "the model's embedding of it is farther from the training images' than "
                "that of all but 1% of the validation images",
    # Of predict's faces (`Predictor.face_warnings`), where `size` is the face's too.
    "small_face": "the face's aligned square is smaller than the model's input, so "
                  "upscaled to it",
    "no_face": "no face was found in the photo, so nothing was scored",
}
CUTOFF_QUANTILE = 0.99
# Training images whose embeddings describe the training set: enough for a mean and
# spread per dimension, and a bounded cost at the end of a run on 100k images.
MAX_DESCRIBED_IMAGES = 2048
# Floor of each dimension's spread, as a share of the median spread: a dimension (nearly)
# constant on the training images would otherwise make any change to it infinitely far.
SCALE_FLOOR = 0.1


@dataclasses.dataclass(frozen=True)
class TrainingDomain:
  """What the training images were, and how far the model's embeddings of them spread."""
  formats: list[str]
  modes: list[str]
  min_side: int
  max_side: int
  jpeg_qualities: list[int] | None  # [lowest, highest], None without JPEGs.
  grid_share: float  # Share of training images read on their own JPEG grid.
  embedding_mean: np.ndarray
  embedding_scale: np.ndarray
  distance_cutoff: float
  validation_distances: dict[str, float]  # Quantiles, for the record.

  def holds_size(self, image_format: image_decoding.ImageFormat) -> bool:
    """Whether the image's width and height both lie in the training images' range."""
    return all(self.min_side <= side <= self.max_side
               for side in (image_format.width, image_format.height))

  def resave_fits(self, image_format: image_decoding.ImageFormat) -> bool:
    """Whether the image is larger than the training images, and `as_training_file`
    brings it within their range of sizes."""
    longer, shorter = sorted((image_format.width, image_format.height), reverse=True)
    return (longer > self.max_side
            and round(shorter * self.max_side / longer) >= self.min_side)

  def as_training_file(self, data: bytes) -> bytes:
    """A file larger than the training images (`holds_size`), made as the shared
    datasets made theirs from their originals: its longer side scaled to `max_side`
    (Lanczos) and saved as a JPEG at its own quality, held within the training images',
    and its own chroma subsampling; a file that is no JPEG at their highest quality,
    every colour sample kept. So a 600 px ciplab original becomes ciplab_256's file."""
    with Image.open(io.BytesIO(data)) as image:
      image_format = image_decoding.read_format(image)
      sampling = JpegImagePlugin.get_sampling(image) if image.format == "JPEG" else -1
    lowest, highest = self.jpeg_qualities or (degradations.MAX_QUALITY,) * 2
    quality = min(max(image_format.jpeg_quality or highest, lowest), highest)
    subsampling = {v: k for k, v in degradations.SUBSAMPLINGS.items()}.get(sampling,
                                                                           "4:4:4")
    scale = self.max_side / max(image_format.width, image_format.height)
    return degradations.resave(data, quality, scale, subsampling)

  def to_json(self) -> dict[str, Any]:
    return {f.name: (v.tolist() if isinstance(v := getattr(self, f.name), np.ndarray) else v)
            for f in dataclasses.fields(self)}

  @classmethod
  def from_json(cls, saved: dict[str, Any]) -> TrainingDomain:
    return cls(**{**saved, "embedding_mean": np.asarray(saved["embedding_mean"], np.float32),
                  "embedding_scale": np.asarray(saved["embedding_scale"], np.float32)})


def with_embedding(apply: Callable[[], jax.Array]) -> tuple[jax.Array, jax.Array]:
  """Runs `apply` (a call of a model's `apply`) and returns its output and the input of
  the model's last dense layer, flattened per example: the model's own embedding."""
  captured = []

  def capture(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
      captured.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(capture):
    outputs = apply()
  if not captured:
    raise ValueError("the model has no dense layer whose input could serve as embedding")
  return outputs, captured[-1].reshape(captured[-1].shape[0], -1)


def distances(embeddings: jax.Array, mean: jax.Array, scale: jax.Array) -> jax.Array:
  """(N, D) embeddings -> (N,) mean squared standardised distance from the training
  images' (about 1 for a typical training image)."""
  return jnp.mean(jnp.square((embeddings - mean) / scale), axis=-1)


def describe(formats: Sequence[image_decoding.ImageFormat], image_size: int, crop: bool,
             train_embeddings: np.ndarray,
             validation_embeddings: np.ndarray) -> TrainingDomain:
  """The `TrainingDomain` of training images' `formats` (decoded at `image_size`, with
  `crop` or not) and embeddings (a sample is enough), with the distance cut-off
  calibrated on the validation embeddings."""
  sides = [side for f in formats for side in (f.width, f.height)]
  qualities = [f.jpeg_quality for f in formats if f.jpeg_quality is not None]
  spread = train_embeddings.std(axis=0)
  mean = train_embeddings.mean(axis=0)
  scale = spread + SCALE_FLOOR * max(float(np.median(spread)), 1e-6)
  validation = np.asarray(distances(validation_embeddings, mean, scale))
  quantiles = (0.5, 0.9, 0.95, CUTOFF_QUANTILE, 1.0)
  return TrainingDomain(
      formats=sorted({f.format for f in formats}), modes=sorted({f.mode for f in formats}),
      min_side=min(sides), max_side=max(sides),
      jpeg_qualities=[min(qualities), max(qualities)] if qualities else None,
      grid_share=float(np.mean([f.grid_tables(image_size, crop).any() for f in formats])),
      embedding_mean=mean.astype(np.float32), embedding_scale=scale.astype(np.float32),
      distance_cutoff=float(np.quantile(validation, CUTOFF_QUANTILE)),
      validation_distances={str(q): float(np.quantile(validation, q)) for q in quantiles})


def image_warnings(domain: TrainingDomain | None, image_format: image_decoding.ImageFormat,
                   distance: float | None, image_size: int,
                   reads_jpeg_tables: bool, crop: bool = False) -> list[str]:
  """The names of `WARNINGS` that apply to one image (without a domain: only its size)."""
  warned = []
  if min(image_format.width, image_format.height) < image_size:
    warned.append("upscaled")
  if domain is None:
    return warned
  if not domain.holds_size(image_format):
    warned.append("size")
  if image_format.format not in domain.formats:
    warned.append("format")
  if image_format.mode not in domain.modes:
    warned.append("mode")
  quality = image_format.jpeg_quality
  if (quality is not None and domain.jpeg_qualities
      and not domain.jpeg_qualities[0] <= quality <= domain.jpeg_qualities[1]):
    warned.append("jpeg_quality")
  if (reads_jpeg_tables and domain.grid_share == 1.0
      and not image_format.grid_tables(image_size, crop).any()):
    warned.append("jpeg_grid")
  if distance is not None and distance > domain.distance_cutoff:
    warned.append("features")
  return warned


def write(workdir: str, domain: TrainingDomain) -> None:
  with open(rundir.path(workdir, rundir.DOMAIN_JSON), "w", encoding="utf-8") as f:
    json.dump(domain.to_json(), f)


def read(workdir: str) -> TrainingDomain | None:
  """The run's `TrainingDomain`, or None for a run trained before it was recorded (or
  whose file is damaged)."""
  path = rundir.path(workdir, rundir.DOMAIN_JSON)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      return TrainingDomain.from_json(json.load(f))
  except (OSError, ValueError, TypeError, KeyError):
    return None
