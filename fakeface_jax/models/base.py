"""What every model states about itself, so that config checks and the train loop ask it."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn

NUM_CLASSES = 2  # Logits for 0 = fake and 1 = real.


class Detector(nn.Module):
  """A model of this project: (N, H, W, C) floats in [0, 1] -> (N, 2) logits.

  Subclasses override the limits that apply to them and check their own fields in
  `__post_init__` (raising ValueError with a one-line reason), so that a bad config is
  refused when the model is built, before any data is read.
  """
  # Its initial parameters are fitted on training images (train.initialisation_images).
  initialises_from_data: ClassVar[bool] = False
  # It pools globally, so it can train on crops smaller than its evaluation images.
  size_agnostic: ClassVar[bool] = False

  def check_image_size(self, image_size: int) -> None:
    """Raises ValueError saying why `image_size` pixels square is too small, if it is."""
    if image_size < 1:
      raise ValueError("must be positive")
