"""The recommended detector: residual co-occurrences and JPEG-domain features, standardised,
then a small (by default linear) head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from fakeface_jax.data import image_decoding
from fakeface_jax.models import base
from fakeface_jax.models import jpeg_domain
from fakeface_jax.models import texture

# Feature standardisation (CooccurrenceClassifier): the floor added to each feature's
# standard deviation, in log-frequency units, and the bound on a standardised value. Bins
# (almost) empty in the initialisation sample have a tiny spread there, and one image
# that fills them would otherwise outvote all other features: measured on the 140k
# subset with a 256-image sample, validation accuracy 0.72 without either, 0.84 with.
FEATURE_STD_FLOOR = 0.03
FEATURE_CLIP = 3.0
# JPEG-aware feature sets, by name (they need the images' encoder quality).
JPEG_FEATURES = ("coefficients", "dctr")
# Images whose features are computed at once. DCTR holds 64 floats a pixel: at 256 px a
# chunk of 16 needs about 0.5 GB whatever the batch, where the 256-image initialisation
# batch in one piece peaked at 8 GB.
FEATURE_CHUNK = 16


def centred(images: jnp.ndarray, fraction: float) -> jnp.ndarray:
  """The centred square of `fraction` of each side of (N, H, W, C) `images`, at offsets
  on the JPEG grid (`image_decoding.grid_offset`), so JPEG-domain features still find
  each block where the file put it."""
  if fraction == 1.0:
    return images
  height, width = images.shape[1:3]
  size = max(round(min(height, width) * fraction), 1)
  top, left = (image_decoding.grid_offset(side, size) for side in (height, width))
  return images[:, top:top + size, left:left + size]


class CooccurrenceClassifier(base.Detector):
  """Histograms of high-pass residuals -> a small classifier: a rich model in the
  steganalysis sense (Fridrich & Kodovsky 2012; Nataraj et al. 2019 for GAN images).

  Features, none with parameters: co-occurrences of pixel residuals in each plane of
  `color_spaces` (`texture.cooccurrence_features`), optionally across R, G and B at the
  same pixel (`cross_band`), and any of `JPEG_FEATURES`: histograms and co-occurrences of
  the quantized coefficients (`jpeg_domain.jpeg_features`) or DCT residuals by position
  on the 8x8 grid (`jpeg_domain.dctr_features`). These read each image's own
  quantization tables (`jpeg_tables`, from its file; `reads_jpeg_tables`); an image
  without them is quantized at `jpeg_quality` and, for DCTR, taken as having no grid.

  Each feature is standardised with its mean and standard deviation over the batch the
  model is initialised on (`train.initialisation_images`: training images as the train
  step sees them, augmentations included): a data-dependent initialisation of two
  parameters that no gradient reaches, so they stay what the data made them and travel
  with the checkpoint. On the 140k subset this beats LayerNorm per image by 9 points
  of validation accuracy. `hidden=()` makes the head logistic regression.

  `regions` are centred squares, as fractions of the image's side, whose features are
  concatenated: (1.0, 0.5) adds the central half, where the face of a centred, aligned
  face photo is, to the whole image. What differs between a face and its surroundings
  (a swapped face pasted into a real photo) is then within reach of a linear head: on
  lfw_faceswap's validation tenth it lifts `configs/general.py` from 0.88 to 0.96
  (docs/results.md, "The general detector").

  With `num_sources` > 1 (a data mixture of that many sources) the head has logits for
  each (source, class) pair, as if each source's real and fake images were classes of
  their own: in training it returns all of them and learns each image's pair
  (`base.pair_labels`), otherwise it returns p(class) summed over the sources
  (`base.merge_sources`). One linear direction must otherwise separate real from fake in
  every source at once: on the shared sets' validation tenths the pairs gain 3-8 points
  (docs/results.md, "The general detector").
  """
  initialises_from_data: ClassVar[bool] = True
  fixed_features: ClassVar[bool] = True
  truncation: int = 2
  color_spaces: Sequence[str] = ("rgb",)
  cross_band: bool = False
  jpeg_quality: int = 0
  jpeg_features: Sequence[str] = ()
  regions: Sequence[float] = (1.0,)
  hidden: Sequence[int] = ()
  num_classes: int = base.NUM_CLASSES
  num_sources: int = 1

  def __post_init__(self):
    # Checked on construction, so config_checks refuses a bad setting before any data
    # is read.
    unknown = set(self.jpeg_features) - set(JPEG_FEATURES)
    if unknown:
      raise ValueError(f"unknown jpeg_features {sorted(unknown)}; choose from {JPEG_FEATURES}")
    if self.jpeg_features and not self.jpeg_quality:
      raise ValueError("jpeg_features need jpeg_quality: the quality the images were "
                       "JPEG-encoded at (75 for the 140k subset)")
    if not self.regions or not all(0 < fraction <= 1 for fraction in self.regions):
      raise ValueError(f"regions must be fractions of the image side in (0, 1], got "
                       f"{tuple(self.regions)}")
    if self.num_sources < 1:
      raise ValueError(f"num_sources must be at least 1, got {self.num_sources}")
    unknown = set(self.color_spaces) - set(texture.COLOR_SPACES)
    if unknown:
      raise ValueError(f"unknown color_spaces {sorted(unknown)}; choose from "
                       f"{texture.COLOR_SPACES}")
    super().__post_init__()

  @property
  def reads_jpeg_tables(self) -> bool:
    return bool(self.jpeg_features)

  def features(self, images: jnp.ndarray, jpeg_tables: jnp.ndarray | None = None
               ) -> jnp.ndarray:
    """The parameter-free part: float images in [0, 1] and their (N, 2, 8, 8) JPEG
    tables (`base.Detector.features`) -> (N, F) log-frequencies, computed FEATURE_CHUNK
    images at a time."""
    n = images.shape[0]
    # Without jpeg_features (which require a quality) the tables go unused.
    tables, has_grid = jpeg_domain.image_tables(jpeg_tables, n, self.jpeg_quality or 75)
    if n <= FEATURE_CHUNK:
      return self.chunk_features((images, tables, has_grid))
    chunks = jax.tree.map(
        lambda x: jnp.pad(x, ((0, -n % FEATURE_CHUNK),) + ((0, 0),) * (x.ndim - 1))
        .reshape(-1, FEATURE_CHUNK, *x.shape[1:]), (images, tables, has_grid))
    features = jax.lax.map(self.chunk_features, chunks)
    return features.reshape(-1, features.shape[-1])[:n]

  def chunk_features(self, chunk: tuple[jnp.ndarray, ...]) -> jnp.ndarray:
    """`features` of one chunk (images, tables, has_grid), in one piece."""
    images, tables, has_grid = chunk
    # The pipeline's uint8 -> [0, 1] rescaling is undone exactly: residuals of whole
    # pixel values round to whole numbers.
    pixels = images * 255.0
    return jnp.concatenate([self.region_features(centred(pixels, fraction), tables, has_grid)
                            for fraction in self.regions], axis=-1)

  def region_features(self, pixels: jnp.ndarray, tables: jnp.ndarray,
                      has_grid: jnp.ndarray) -> jnp.ndarray:
    """The features of one region's pixels (whole numbers in [0, 255])."""
    features = [texture.cooccurrence_features(pixels, self.truncation,
                                              tuple(self.color_spaces), self.cross_band)]
    if "coefficients" in self.jpeg_features:
      features.append(jpeg_domain.jpeg_features(pixels, tables))
    if "dctr" in self.jpeg_features:
      features.append(jpeg_domain.dctr_features(pixels, tables, has_grid))
    return jnp.concatenate(features, axis=-1)

  def __call__(self, images: jnp.ndarray, train: bool = False,
               jpeg_tables: jnp.ndarray | None = None) -> jnp.ndarray:
    return self.head(self.features(images, jpeg_tables), train)

  @nn.compact
  def head(self, features: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """(N, F) `features` -> (N, 2) logits: every parameter of the model. In training
    with `num_sources` > 1, (N, 2 * num_sources) logits of (source, class) pairs."""
    mean = self.param("feature_mean", lambda _: features.mean(0))
    scale = self.param("feature_scale",
                       lambda _: 1.0 / (features.std(0) + FEATURE_STD_FLOOR))
    x = (features - jax.lax.stop_gradient(mean)) * jax.lax.stop_gradient(scale)
    x = jnp.clip(x, -FEATURE_CLIP, FEATURE_CLIP)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    logits = nn.Dense(self.num_classes * self.num_sources)(x)
    return logits if train else base.merge_sources(logits)
