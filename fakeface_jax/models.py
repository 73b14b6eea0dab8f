"""Flax linen models: the studies' MLP and ConvNet, spectral and texture baselines, a detector.

Models take float images in [0, 1] (the input pipeline's `preprocessing.rescale` is the
studies' `Rescaling(1/255)` layer) of shape (N, H, W, C) and return logits for the two
classes, 0 = fake and 1 = real.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from fakeface_jax import conv
from fakeface_jax import jpeg_domain
from fakeface_jax import preprocessing
from fakeface_jax import spectral
from fakeface_jax import texture

NUM_CLASSES = 2

# Hidden layer widths of study 1's node structures, relative to the first layer's width.
NODE_STRUCTURES = {
    "same": (1, 1),
    "taper": (1, 0.5),
    "double": (1, 2),
}


class TaperingMLP(nn.Module):
  """Study 1: Flatten -> Dense -> Dense -> Dense(2), ReLU between.

  With `node_structure="taper"` and `width=128` on 100x100 gray input this is the study's
  128 -> 64 -> 2 network with 1,288,514 parameters.
  """
  node_structure: str = "taper"
  width: int = 128
  num_classes: int = NUM_CLASSES

  @property
  def hidden_sizes(self) -> tuple[int, ...]:
    return tuple(int(self.width * r) for r in NODE_STRUCTURES[self.node_structure])

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = images.reshape((images.shape[0], -1))
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(self.num_classes)(x)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pooling with stride 2 (an odd last row/column dropped, as VALID pooling does).

  Same values as `nn.max_pool(x, (2, 2), strides=(2, 2))`, written as a reshape and a
  max: its gradient is an elementwise comparison instead of XLA's select-and-scatter,
  4x faster forward+backward on CPU (28 ms against 120 ms on a 32x124x124x32 batch).
  Where several inputs tie for the maximum the gradient is shared among them.
  """
  n, h, w, c = x.shape
  blocks = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
  return blocks.max(axis=(2, 4))


class ConvNet(nn.Module):
  """Study 2: pairs of 3x3 VALID ReLU convolutions, each pair followed by 2x2 max-pooling,
  then flatten and dense layers to two logits.

  The default `features=(32, 32, 64, 64)` is the study's four-conv, two-pool network.
  """
  features: Sequence[int] = (32, 32, 64, 64)
  dense_features: Sequence[int] = ()
  conv_impl: str = "auto"
  num_classes: int = NUM_CLASSES

  def feature_map_size(self, image_size: int) -> int:
    """Spatial size after the conv stack; must be >= 1 for an image to fit."""
    size = image_size
    for i, _ in enumerate(self.features):
      size -= 2
      if i % 2 == 1:
        size //= 2
    return size

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = images
    for i, width in enumerate(self.features):
      x = nn.relu(conv.Conv2D(width, (3, 3), padding="VALID", impl=self.conv_impl)(x))
      if i % 2 == 1:
        x = max_pool_2x2(x)
    x = x.reshape((x.shape[0], -1))
    for width in self.dense_features:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


def spectrum_features(images: jax.Array, num_bins: int) -> jax.Array:
  """Ring-averaged log power spectrum of the gray image, per image (N, num_bins)."""
  return spectral.radial_log_power(preprocessing.gray_plane(images), num_bins)


class SpectralClassifier(nn.Module):
  """Durall et al. (2020): azimuthally averaged log power spectrum -> a small classifier.

  The spectrum goes through LayerNorm so that the head sees its shape rather than the
  overall image energy; `hidden=()` makes the head logistic regression.
  """
  num_bins: int = 64
  hidden: Sequence[int] = ()
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = nn.LayerNorm()(spectrum_features(images * 255.0, self.num_bins))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


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


class CooccurrenceClassifier(nn.Module):
  """Histograms of high-pass residuals -> a small classifier: a rich model in the
  steganalysis sense (Fridrich & Kodovsky 2012; Nataraj et al. 2019 for GAN images).

  Features, none with parameters: co-occurrences of pixel residuals in each plane of
  `colour_spaces` (`texture.cooccurrence_features`), optionally across R, G and B at the
  same pixel (`cross_band`), and, for images JPEG-encoded at `jpeg_quality`, any of
  `JPEG_FEATURES`: histograms and co-occurrences of the quantized coefficients
  (`jpeg_domain.jpeg_features`) or DCT residuals by position on the 8x8 grid
  (`jpeg_domain.dctr_features`).

  Each feature is standardised with its mean and standard deviation over the batch the
  model is initialised on (`train.initialisation_images`: training images as the train
  step sees them, augmentations included): a data-dependent initialisation of two
  parameters that no gradient reaches, so they stay what the data made them and travel
  with the checkpoint. On the 140k subset this beats LayerNorm per image by 9 points
  of validation accuracy. `hidden=()` makes the head logistic regression.
  """
  # Tells train.create_train_state to initialise on training images, not zeros.
  initialises_from_data: ClassVar[bool] = True
  truncation: int = 2
  colour_spaces: Sequence[str] = ("rgb",)
  cross_band: bool = False
  jpeg_quality: int = 0
  jpeg_features: Sequence[str] = ()
  hidden: Sequence[int] = ()
  num_classes: int = NUM_CLASSES

  def __post_init__(self):
    # Checked on construction, so config_checks refuses a bad setting before any data
    # is read.
    unknown = set(self.jpeg_features) - set(JPEG_FEATURES)
    if unknown:
      raise ValueError(f"unknown jpeg_features {sorted(unknown)}; choose from {JPEG_FEATURES}")
    if self.jpeg_features and not self.jpeg_quality:
      raise ValueError("jpeg_features need jpeg_quality: the quality the images were "
                       "JPEG-encoded at (75 for the 140k subset)")
    unknown = set(self.colour_spaces) - set(texture.COLOUR_SPACES)
    if unknown:
      raise ValueError(f"unknown colour_spaces {sorted(unknown)}; choose from "
                       f"{texture.COLOUR_SPACES}")
    super().__post_init__()

  def features(self, images: jnp.ndarray) -> jnp.ndarray:
    """The parameter-free part: float images in [0, 1] -> (N, F) log-frequencies,
    computed FEATURE_CHUNK images at a time."""
    n = images.shape[0]
    if n <= FEATURE_CHUNK:
      return self.chunk_features(images)
    padding = ((0, -n % FEATURE_CHUNK),) + ((0, 0),) * (images.ndim - 1)
    chunks = jnp.pad(images, padding).reshape(-1, FEATURE_CHUNK, *images.shape[1:])
    features = jax.lax.map(self.chunk_features, chunks)
    return features.reshape(-1, features.shape[-1])[:n]

  def chunk_features(self, images: jnp.ndarray) -> jnp.ndarray:
    """`features` of one chunk, in one piece."""
    # The pipeline's uint8 -> [0, 1] rescaling is undone exactly: residuals of whole
    # pixel values round to whole numbers.
    pixels = images * 255.0
    features = [texture.cooccurrence_features(pixels, self.truncation,
                                              tuple(self.colour_spaces), self.cross_band)]
    if "coefficients" in self.jpeg_features:
      features.append(jpeg_domain.jpeg_features(pixels, self.jpeg_quality))
    if "dctr" in self.jpeg_features:
      features.append(jpeg_domain.dctr_features(pixels, self.jpeg_quality))
    return jnp.concatenate(features, axis=-1)

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    features = self.features(images)
    mean = self.param("feature_mean", lambda _: features.mean(0))
    scale = self.param("feature_scale",
                       lambda _: 1.0 / (features.std(0) + FEATURE_STD_FLOOR))
    x = (features - jax.lax.stop_gradient(mean)) * jax.lax.stop_gradient(scale)
    x = jnp.clip(x, -FEATURE_CLIP, FEATURE_CLIP)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


def upsampling_residual(images: jax.Array) -> jax.Array:
  """NPR (Tan et al. 2024): x - up(down(x)) with 2x nearest-neighbour resampling.

  Generator upsampling correlates neighbouring pixels; the residual keeps exactly the
  part of the image that a 2x2 block average cannot explain.
  """
  n, h, w, c = images.shape
  blocks = images[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
  means = blocks.mean(axis=(2, 4), keepdims=True)
  residual = (blocks - means).reshape(n, h // 2 * 2, w // 2 * 2, c)
  return jnp.pad(residual, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))


class ResidualBlock(nn.Module):
  """Two 3x3 SAME convolutions with GroupNorm and a skip connection."""
  features: int
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    skip = x
    if x.shape[-1] != self.features:
      skip = conv.Conv2D(self.features, (1, 1), use_bias=False, impl=self.conv_impl)(x)
    y = conv.Conv2D(self.features, (3, 3), padding="SAME", use_bias=False,
                    impl=self.conv_impl)(x)
    y = nn.relu(nn.GroupNorm(num_groups=min(8, self.features))(y))
    y = conv.Conv2D(self.features, (3, 3), padding="SAME", use_bias=False,
                    impl=self.conv_impl)(y)
    y = nn.GroupNorm(num_groups=min(8, self.features))(y)
    return nn.relu(y + skip)


class ResidualCNN(nn.Module):
  """A small residual CNN with global average pooling (Wang et al. 2020, NPR options).

  Each stage is one residual block followed by 2x2 average pooling (the first stage
  keeps full resolution, where generator traces live). Options: `npr_input` feeds
  the upsampling residual instead of (or, with "both", beside) the image;
  `spectral_bins` > 0 concatenates the log spectrum to the pooled features.
  GroupNorm rather than BatchNorm keeps the train state free of batch statistics, so
  the shared train step and checkpoints work unchanged.
  """
  features: Sequence[int] = (16, 32, 64, 128)
  npr_input: str = "none"  # "none", "only" or "both".
  spectral_bins: int = 0
  conv_impl: str = "auto"
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    if self.npr_input not in ("none", "only", "both"):
      raise ValueError(f"npr_input must be none, only or both, got {self.npr_input!r}")
    x = images - 0.5
    if self.npr_input != "none":
      # The residual is small: scale it to the image's range.
      residual = upsampling_residual(images) * 4.0
      x = residual if self.npr_input == "only" else jnp.concatenate([x, residual], -1)
    for i, width in enumerate(self.features):
      x = ResidualBlock(width, self.conv_impl)(x)
      if i < len(self.features) - 1:
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.mean(axis=(1, 2))
    if self.spectral_bins:
      x = jnp.concatenate(
          [x, nn.LayerNorm()(spectrum_features(images * 255.0, self.spectral_bins))], -1)
    return nn.Dense(self.num_classes)(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": TaperingMLP,
    "cnn": ConvNet,
    "spectral": SpectralClassifier,
    "cooccurrence": CooccurrenceClassifier,
    "residual_cnn": ResidualCNN,
}


def create_model(model_config: Any) -> nn.Module:
  """Builds the model named by `model_config.name`, passing its other keys as fields."""
  kwargs = {k: v for k, v in model_config.items() if k != "name"}
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  return MODELS[model_config.name](**kwargs)
