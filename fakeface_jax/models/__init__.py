"""Flax linen models, one module per family, and the registry `config.model.name` picks from.

Models take float images in [0, 1] (the input pipeline's `preprocessing.rescale` is the
studies' `Rescaling(1/255)` layer) of shape (N, H, W, C) and return logits for the two
classes, 0 = fake and 1 = real. Each is a `base.Detector` and states its own limits
(smallest image, whether it trains on crops of any size, whether its initial parameters
depend on the data) and checks its own settings on construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fakeface_jax.models import base
from fakeface_jax.models.cnn import ConvNet
from fakeface_jax.models.cooccurrence import CooccurrenceClassifier
from fakeface_jax.models.mlp import TaperingMLP
from fakeface_jax.models.residual_cnn import ResidualCNN
from fakeface_jax.models.spectral import SpectralClassifier

NUM_CLASSES = base.NUM_CLASSES

MODELS: dict[str, Callable[..., base.Detector]] = {
    "mlp": TaperingMLP,
    "cnn": ConvNet,
    "spectral": SpectralClassifier,
    "cooccurrence": CooccurrenceClassifier,
    "residual_cnn": ResidualCNN,
}


def create_model(model_config: Any) -> base.Detector:
  """Builds the model named by `model_config.name`, passing its other keys as fields."""
  kwargs = {k: v for k, v in model_config.items() if k != "name"}
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  return MODELS[model_config.name](**kwargs)
