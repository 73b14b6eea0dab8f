"""What every model states about itself, so that config checks and the train loop ask it."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_CLASSES = 2  # Logits for 0 = fake and 1 = real.


class Detector(nn.Module):
  """A model of this project: (N, H, W, C) floats in [0, 1] -> (N, 2) logits (in
  training, a model may return logits of (source, class) pairs instead: `merge_sources`).

  Subclasses override the limits that apply to them and check their own fields in
  `__post_init__` (raising ValueError with a one-line reason), so that a bad config is
  refused when the model is built, before any data is read.
  """
  # Its initial parameters are fitted on training images (train.initialisation_images).
  initialises_from_data: ClassVar[bool] = False
  # It pools globally, so it can train on crops smaller than its evaluation images.
  size_agnostic: ClassVar[bool] = False
  # Its output is `head(features(images))` with `features` free of parameters, so each
  # image's features can be computed once and the head trained on them (feature_cache).
  fixed_features: ClassVar[bool] = False
  # Fields that shape only the head: changing them leaves the features as they were.
  head_fields: ClassVar[tuple[str, ...]] = ("hidden", "num_classes", "num_sources")

  def check_image_size(self, image_size: int) -> None:
    """Raises ValueError saying why `image_size` pixels square is too small, if it is."""
    if image_size < 1:
      raise ValueError("must be positive")

  @property
  def reads_jpeg_tables(self) -> bool:
    """Its features read each image's JPEG tables (`data.jpeg_tables`; (N, 2, 8, 8), all
    zero for an image without a grid): callers pass them as the `jpeg_tables` keyword
    of `__call__` and `features`."""
    return False

  def table_inputs(self, jpeg_tables) -> dict[str, Any]:
    """The keyword arguments that hand `jpeg_tables` to this model, if it reads them."""
    return {"jpeg_tables": jpeg_tables} if self.reads_jpeg_tables else {}

  def features(self, images: jnp.ndarray) -> jnp.ndarray:
    """Images -> (N, F) features, for a model with `fixed_features`."""
    raise NotImplementedError(f"{type(self).__name__} has no fixed features")

  def feature_settings(self) -> dict[str, Any]:
    """The fields its `features` depend on, with the class: what a cache of them is
    keyed by."""
    fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
              if f.name not in self.head_fields + ("parent", "name")}
    return {"model": type(self).__name__, **fields}


def merge_sources(logits: jnp.ndarray) -> jnp.ndarray:
  """(N, S * NUM_CLASSES) logits of (source, class) pairs -> (N, NUM_CLASSES) logits of
  the classes: p(class) is the sum over sources of p(source, class). (N, NUM_CLASSES)
  logits pass through."""
  pairs = logits.reshape(logits.shape[0], -1, NUM_CLASSES)
  return jax.nn.logsumexp(pairs, axis=1)


def pair_labels(labels: jnp.ndarray, sources: jnp.ndarray | None,
                num_logits: int) -> jnp.ndarray:
  """Each example's class in `num_logits` training logits: its label, or with logits of
  (source, class) pairs (`merge_sources`), its pair's index from its source."""
  if num_logits == NUM_CLASSES:
    return labels
  return sources * NUM_CLASSES + labels
