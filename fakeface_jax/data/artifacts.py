"""Generator-artifact pseudo-fakes: real faces passed through the up-sampling layers that
generators and diffusion decoders end with.

A generator builds its image at a fraction of the output size and up-samples it, and
every up-sampling layer leaves a trace tied to its grid: nearest neighbour repeats
pixels in blocks, bilinear interpolation removes the top octave, a transposed
convolution whose kernel does not sum to the same value on every output phase prints a
checkerboard (Odena et al., Distill 2016), and a convolution followed by pixel shuffle
(Shi et al., CVPR 2016) does the same unless its sub-pixel filters agree. AutoGAN
(Zhang, Karaman & Chang, WIFS 2019) showed that a detector trained on images sent
through a generator's up-sampling path alone, with no generator trained, catches that
generator's fakes; NPR (Tan et al., CVPR 2024) detects what up-sampling does to
neighbouring pixels. These functions simulate that path on real images, so that a
detector can learn up-sampling traces without any generator's fakes.

Every kind runs the same frame: the image is box-averaged down by a factor f drawn
uniformly from `factors` (2, 4 or 8; those that would leave fewer than MIN_LOW_SIZE
pixels a side are left out, see `usable_factors`), up-sampled back by the kind's
layer, then mixed as

  output = smooth + strength * (up - smooth) + detail * (image - smooth),

where `smooth` is the bilinear up-sampling of the same low-resolution image, `strength`
(ARTIFACT_RANGE) scales the layer's own trace and `detail` (DETAIL_RANGE) puts back part
of the fine detail the down-sampling removed, so that the face stays the same face.
Kinds (`ARTIFACT_KINDS`):

  "nearest": pixels repeated in f x f blocks.
  "bilinear": bilinear interpolation; its trace is the missing top octave only.
  "transposed": a transposed convolution of stride f starting from bilinear
    interpolation's taps, with random tap noise and a random gain on each of the f x f
    output phases: a checkerboard of period f.
  "pixel_shuffle": a 3x3 convolution to C * f * f channels and depth-to-space, started
    near the nearest-neighbour solution (ICNR) plus noise and per-phase gains.
  "decoder": bilinear up-sampling plus the high-pass output, normalised and scaled
    small (DECODER_STRENGTH_RANGE), of a random-weight convolutional decoder on the
    low-resolution image: a 3x3 convolution, one stride-2 transposed convolution per
    octave of f, each with ReLU, and a 3x3 output convolution (AutoGAN's simulator,
    untrained).

A transposed convolution of stride f whose kernel spans up to 3f pixels and a 3x3
convolution followed by pixel shuffle compute the same thing (Shi et al., 2016, "Is
the deconvolution layer the same as a convolutional layer?"), so both run as one
sub-pixel convolution (`_subpixel`): each output phase is its own 3x3 filter on the
low-resolution image. Only their initialisations differ.

Sizes that f does not divide are padded (edge values) up to whole f x f blocks before
down-sampling and cropped back after up-sampling, as `self_blend.jpeg_requantize` does
with its 8x8 blocks: the grid starts at the top-left pixel, no content is resampled
off-grid, and the shape is unchanged.

`pseudo_fake` draws one kind per image from a configurable mixture, which may include
the self-blend of `self_blend` ("self_blend", see `PSEUDO_FAKE_KINDS`);
`artifact_batch` turns a share of a batch's real images into pseudo-fakes labelled
fake, as `self_blend.pseudo_fake_batch` does.

Everything is pure and jit-able with static shapes: randomness comes only from explicit
PRNG keys, and kinds, weights and factors are static tuples (pass them as static
arguments under `jax.jit`). Every factor is computed and one selected by `lax.switch`
(under `vmap`, a select), so the cost does not depend on the draw. Images are float32
HWC (NHWC for batches) in [0, 1], with 1 or 3 channels; outputs are clipped to [0, 1].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fakeface_jax import classes
from fakeface_jax.data import self_blend

ARTIFACT_KINDS = ("nearest", "bilinear", "transposed", "pixel_shuffle", "decoder")
SELF_BLEND = "self_blend"
PSEUDO_FAKE_KINDS = ARTIFACT_KINDS + (SELF_BLEND,)
FACTORS = (2, 4, 8)
# Factors that would leave fewer low-resolution pixels a side than this are not drawn
# (unless none is left, then the smallest is): no generator builds a face from 4x4.
MIN_LOW_SIZE = 8
# Share of the layer's trace (up - smooth) kept, and of the removed detail put back.
ARTIFACT_RANGE = (0.5, 1.0)
DETAIL_RANGE = (0.4, 0.8)
# Standard deviation of the per-phase gains about 1, drawn per image from this range.
TRANSPOSED_GAIN_STD = (0.01, 0.05)
PIXEL_SHUFFLE_GAIN_STD = (0.005, 0.025)
# Standard deviation of the noise on a kernel's taps (relative to weights summing to 1),
# and its ratio for taps that mix channels.
TRANSPOSED_TAP_NOISE = 0.1
PIXEL_SHUFFLE_TAP_NOISE = 0.05
CHANNEL_NOISE_RATIO = 0.2
DECODER_WIDTH = 8
# Root-mean-square of the decoder's high-pass residual added to the image.
DECODER_STRENGTH_RANGE = (0.01, 0.04)
_HIGHEST = jax.lax.Precision.HIGHEST


def _draw(key: jax.Array, low, high) -> jax.Array:
  """Uniform numbers in [low, high), elementwise, from one draw: every `jax.random` call
  inlines a whole Threefry hash, and compiling time grows with their number."""
  low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
  return jax.random.uniform(key, low.shape, minval=low, maxval=high)


def _pick(u: jax.Array, cumulative: np.ndarray) -> jax.Array:
  """The index i with cumulative[i-1] <= u < cumulative[i], for u in [0, 1)."""
  index = jnp.sum(u >= jnp.asarray(cumulative[:-1], jnp.float32))
  return jnp.minimum(index, len(cumulative) - 1).astype(jnp.int32)


def _check_factors(factors: tuple[int, ...]) -> None:
  if not factors or any(not isinstance(f, (int, np.integer)) or f < 2 or f & (f - 1)
                        for f in factors):
    raise ValueError(f"factors must be a non-empty tuple of powers of two >= 2, "
                     f"got {factors}")


def usable_factors(factors: tuple[int, ...], height: int, width: int) -> tuple[int, ...]:
  """The `factors` that leave at least MIN_LOW_SIZE low-resolution pixels a side on a
  height x width image, or the smallest factor if none does."""
  _check_factors(factors)
  usable = tuple(f for f in factors if min(height, width) // f >= MIN_LOW_SIZE)
  return usable or (min(factors),)


def _pad_to_blocks(image: jax.Array, factor: int) -> jax.Array:
  height, width, _ = image.shape
  return jnp.pad(image, ((0, -height % factor), (0, -width % factor), (0, 0)),
                 mode="edge")


def _box_down(image: jax.Array, factor: int) -> jax.Array:
  """Mean of each factor x factor block; the size must be a multiple of `factor`."""
  height, width, channels = image.shape
  blocks = image.reshape(height // factor, factor, width // factor, factor, channels)
  return blocks.mean((1, 3))


def _taps(low: jax.Array) -> jax.Array:
  """(3, 3, h, w, C): the 3x3 neighbourhood of every low-resolution pixel, edges
  repeated."""
  height, width, _ = low.shape
  padded = jnp.pad(low, ((1, 1), (1, 1), (0, 0)), mode="edge")
  return jnp.stack([jnp.stack([padded[a:a + height, b:b + width] for b in range(3)])
                    for a in range(3)])


def _subpixel(low: jax.Array, kernel: jax.Array) -> jax.Array:
  """Sub-pixel convolution: (h, w, Cin) to (h * f, w * f, Cout) with a kernel
  (3, 3, f, f, Cin, Cout), one 3x3 filter per output phase (p, q). The same as a
  transposed convolution of stride f, and as a 3x3 convolution then pixel shuffle."""
  height, width, _ = low.shape
  factor, channels = kernel.shape[2], kernel.shape[-1]
  out = jnp.einsum("abhwc,abpqco->hpwqo", _taps(low), kernel, precision=_HIGHEST)
  return out.reshape(height * factor, width * factor, channels)


def _conv3x3(image: jax.Array, kernel: jax.Array) -> jax.Array:
  """'Same' 3x3 convolution, edges repeated, kernel (3, 3, Cin, Cout)."""
  return jnp.einsum("abhwc,abco->hwo", _taps(image), kernel, precision=_HIGHEST)


def _interpolation_taps(factor: int, method: str) -> np.ndarray:
  """(3, f): weights of the low-resolution pixels i - 1, i, i + 1 for each of the f
  output pixels of pixel i, along one axis (half-pixel centres, as in image resizing)."""
  if method == "nearest":
    taps = np.zeros((3, factor))
    taps[1] = 1.0
    return taps
  position = (np.arange(factor) + 0.5) / factor - 0.5  # In low-resolution pixels.
  return np.maximum(1 - np.abs(position[None, :] - np.arange(-1, 2)[:, None]), 0.0)


def _interpolation_kernel(factor: int, channels: int, method: str) -> np.ndarray:
  """(3, 3, f, f, C, C): `_subpixel`'s kernel for separable interpolation."""
  taps = _interpolation_taps(factor, method)
  spatial = np.einsum("ap,bq->abpq", taps, taps)
  return np.einsum("abpq,co->abpqco", spatial, np.eye(channels)).astype(np.float32)


def upsample(low: jax.Array, factor: int, method: str) -> jax.Array:
  """(h, w, C) to (h * factor, w * factor, C) by "nearest" (pixels repeated) or
  "bilinear" interpolation (half-pixel centres, edges repeated)."""
  if method == "nearest":
    return jnp.repeat(jnp.repeat(low, factor, 0), factor, 1)
  if method == "bilinear":
    return _subpixel(low, jnp.asarray(_interpolation_kernel(factor, low.shape[-1],
                                                            method)))
  raise ValueError(f"method must be 'nearest' or 'bilinear', got {method!r}")


def down_up(image: jax.Array, factor: int, method: str = "nearest") -> jax.Array:
  """One HWC image box-averaged down by `factor` and up-sampled back by `method`
  ("nearest" or "bilinear"), without randomness or clipping: the primitive that every
  kind builds on. Sizes that `factor` does not divide are padded to whole blocks and
  cropped back, so the shape is the input's and the blocks start at the top-left."""
  height, width, _ = image.shape
  low = _box_down(_pad_to_blocks(image, factor), factor)
  return upsample(low, factor, method)[:height, :width]


# Each kind up-samples with (noise, extra, low, factor): `noise` is a standard normal
# vector of `_NOISE_SIZES[kind](largest factor, channels)` numbers, drawn once outside
# the choice of factor (each factor uses parts of it), and `extra` a uniform number in
# `_EXTRA_RANGES[kind]`. One normal and one uniform draw per image and kind, whatever
# the number of factors, keep compiling short.


def _kernel_noise_size(factor: int, channels: int) -> int:
  return 9 * factor ** 2 * channels ** 2 + factor ** 2 * channels


def _random_kernel(noise: jax.Array, gain_std: jax.Array, factor: int, channels: int,
                   method: str, tap_noise: float, noise_everywhere: bool) -> jax.Array:
  """An interpolation kernel for `_subpixel` with noise on its taps (where the
  interpolation has weight, or on all nine with `noise_everywhere`), centred so that
  each output phase's weights still sum to 1, then a random gain on each phase."""
  # The taps' noise is a prefix of `noise` and the gains' a suffix: sized for the
  # largest factor, they do not overlap for any smaller one.
  taps = noise[:9 * factor ** 2 * channels ** 2].reshape(
      3, 3, factor, factor, channels, channels)
  gains = noise[noise.size - factor ** 2 * channels:].reshape(factor, factor, channels)
  base = _interpolation_kernel(factor, channels, method)
  support = (np.ones(base.shape[:4]) if noise_everywhere
             else base.sum((4, 5)) > 0).astype(np.float32)
  mixing = np.eye(channels) + CHANNEL_NOISE_RATIO * (1 - np.eye(channels))
  taps = taps * (tap_noise * np.einsum("abpq,co->abpqco", support, mixing))
  # base sums to 1 over (a, b, c) for each (p, q, o): this keeps each phase's sum at 1.
  taps = taps - base * taps.sum((0, 1, 4), keepdims=True)
  gains = 1 + gain_std * (gains - gains.mean((0, 1), keepdims=True))
  return (base + taps) * gains[:, :, None, :]


def _nearest_up(noise, extra, low, factor):
  del noise, extra
  return upsample(low, factor, "nearest")


def _bilinear_up(noise, extra, low, factor):
  del noise, extra
  return upsample(low, factor, "bilinear")


def _transposed_up(noise, gain_std, low, factor):
  kernel = _random_kernel(noise, gain_std, factor, low.shape[-1], "bilinear",
                          TRANSPOSED_TAP_NOISE, noise_everywhere=False)
  return _subpixel(low, kernel)


def _pixel_shuffle_up(noise, gain_std, low, factor):
  kernel = _random_kernel(noise, gain_std, factor, low.shape[-1], "nearest",
                          PIXEL_SHUFFLE_TAP_NOISE, noise_everywhere=True)
  return _subpixel(low, kernel)


def _decoder_shapes(factor: int, channels: int) -> list[tuple[int, ...]]:
  """The layers' weight shapes, in the order their noise is laid out: input and output
  convolutions first, then one stride-2 block per octave, so a smaller factor's
  layers are a prefix of a larger one's."""
  width = DECODER_WIDTH
  return ([(3, 3, channels, width), (3, 3, width, channels)]
          + [(3, 3, 2, 2, width, width)] * int(math.log2(factor)))


def _decoder_noise_size(factor: int, channels: int) -> int:
  return sum(math.prod(shape) for shape in _decoder_shapes(factor, channels))


def _decoder_up(noise, strength, low, factor):
  """Bilinear up-sampling plus a random decoder's high-pass output, normalised to a
  root-mean-square of `strength`."""
  shapes = _decoder_shapes(factor, low.shape[-1])
  offsets = np.cumsum([0] + [math.prod(shape) for shape in shapes])
  # He initialisation: each output sums 9 taps of every input channel.
  first, last, *blocks = [
      noise[start:stop].reshape(shape) * math.sqrt(2 / (9 * shape[-2]))
      for start, stop, shape in zip(offsets[:-1], offsets[1:], shapes)]
  features = jax.nn.relu(_conv3x3(low, first))
  for kernel in blocks:
    features = jax.nn.relu(_subpixel(features, kernel))
  residual = _conv3x3(features, last)
  # Only what the low-resolution image cannot predict: the decoder's own texture.
  residual = residual - upsample(_box_down(residual, factor), factor, "bilinear")
  rms = jnp.sqrt(jnp.mean(residual ** 2) + 1e-12)
  return upsample(low, factor, "bilinear") + strength * residual / rms


_UPSAMPLERS = {"nearest": _nearest_up, "bilinear": _bilinear_up,
               "transposed": _transposed_up, "pixel_shuffle": _pixel_shuffle_up,
               "decoder": _decoder_up}
_NOISE_SIZES = {"transposed": _kernel_noise_size, "pixel_shuffle": _kernel_noise_size,
                "decoder": _decoder_noise_size}
_EXTRA_RANGES = {"transposed": TRANSPOSED_GAIN_STD,
                 "pixel_shuffle": PIXEL_SHUFFLE_GAIN_STD,
                 "decoder": DECODER_STRENGTH_RANGE}


def _artifact(kind: str, key: jax.Array, image: jax.Array,
              factors: tuple[int, ...] = FACTORS) -> jax.Array:
  """One HWC image in [0, 1] through a random down-up of `kind` at a factor drawn
  uniformly from `usable_factors(factors, ...)`; see the module's docstring."""
  height, width, channels = image.shape
  factors = usable_factors(factors, height, width)
  draw_key, noise_key = jax.random.split(key)
  extra_low, extra_high = _EXTRA_RANGES.get(kind, (0.0, 0.0))
  pick, strength, detail, extra = _draw(
      draw_key, [0, ARTIFACT_RANGE[0], DETAIL_RANGE[0], extra_low],
      [1, ARTIFACT_RANGE[1], DETAIL_RANGE[1], extra_high])
  noise = (jax.random.normal(noise_key, (_NOISE_SIZES[kind](max(factors), channels),))
           if kind in _NOISE_SIZES else jnp.zeros((0,)))
  index = _pick(pick, np.arange(1, len(factors) + 1) / len(factors))

  def branch(factor):
    def run(noise, extra, image):
      low = _box_down(_pad_to_blocks(image, factor), factor)
      up = _UPSAMPLERS[kind](noise, extra, low, factor)[:height, :width]
      return up, upsample(low, factor, "bilinear")[:height, :width]
    return run

  up, smooth = jax.lax.switch(index, [branch(f) for f in factors], noise, extra, image)
  out = smooth + strength * (up - smooth) + detail * (image - smooth)
  return jnp.clip(out, 0.0, 1.0)


def _kind_function(kind: str):
  def fn(key: jax.Array, image: jax.Array, factors: tuple[int, ...] = FACTORS
         ) -> jax.Array:
    return _artifact(kind, key, image, factors)
  fn.__name__ = fn.__qualname__ = kind
  fn.__doc__ = (f"One HWC image in [0, 1] with {kind!r} up-sampling traces at a factor "
                f"drawn from `factors` (static); see the module's docstring.")
  return fn


nearest = _kind_function("nearest")
bilinear = _kind_function("bilinear")
transposed = _kind_function("transposed")
pixel_shuffle = _kind_function("pixel_shuffle")
decoder = _kind_function("decoder")
ARTIFACTS = {"nearest": nearest, "bilinear": bilinear, "transposed": transposed,
             "pixel_shuffle": pixel_shuffle, "decoder": decoder}


def _self_blend_one(key: jax.Array, image: jax.Array) -> jax.Array:
  blended, _ = self_blend.self_blend(key, image[None])
  return blended[0]


def check_mixture(kinds: tuple[str, ...], weights: Sequence[float] | None) -> np.ndarray:
  """The cumulative, normalised weights of `kinds` (uniform without `weights`)."""
  unknown = [kind for kind in kinds if kind not in PSEUDO_FAKE_KINDS]
  if not kinds or unknown or len(set(kinds)) != len(kinds):
    raise ValueError(f"pseudo-fake kinds must be a non-empty tuple of distinct names "
                     f"from {PSEUDO_FAKE_KINDS}, got {kinds}")
  if weights is None:
    weights = (1.0,) * len(kinds)
  weights = np.asarray(weights, np.float64)
  if (weights.shape != (len(kinds),) or not np.all(np.isfinite(weights))
      or np.any(weights < 0) or weights.sum() <= 0):
    raise ValueError(f"weights must be one non-negative number per kind {kinds}, not all "
                     f"0, got {tuple(weights.tolist())}")
  return np.cumsum(weights) / weights.sum()


def pseudo_fake(key: jax.Array, image: jax.Array,
                kinds: tuple[str, ...] = ARTIFACT_KINDS,
                weights: tuple[float, ...] | None = None,
                factors: tuple[int, ...] = FACTORS) -> jax.Array:
  """One HWC image in [0, 1] made a pseudo-fake of one kind drawn from `kinds`
  (`PSEUDO_FAKE_KINDS`: the artifact kinds and "self_blend") with probabilities
  proportional to `weights` (default: equal). All static; every kind is traced and
  `lax.switch` runs the one drawn (under `vmap`, all run and one is selected)."""
  cumulative = check_mixture(kinds, weights)
  _check_factors(factors)
  pick_key, kind_key = jax.random.split(key)
  index = _pick(jax.random.uniform(pick_key), cumulative)
  branches = [_self_blend_one if kind == SELF_BLEND
              else functools.partial(_artifact, kind, factors=factors) for kind in kinds]
  return jax.lax.switch(index, branches, kind_key, image)


def artifact_batch(key: jax.Array, images: jax.Array, labels: jax.Array,
                   share: float | jax.Array,
                   kinds: tuple[str, ...] = ARTIFACT_KINDS,
                   weights: tuple[float, ...] | None = None,
                   factors: tuple[int, ...] = FACTORS) -> tuple[jax.Array, jax.Array]:
  """Turns each real image (label `classes.REAL`) of a batch (N, H, W, C), with
  probability `share`, into a `pseudo_fake` labelled `classes.FAKE`; fakes pass
  through unchanged. Returns (images, labels).

  Every image is processed and the choice made with `jnp.where`, so the cost does not
  depend on `share` and nothing branches on data.
  """
  if isinstance(share, (int, float)) and not 0 <= share <= 1:
    raise ValueError(f"share must be in [0, 1], got {share}")
  check_mixture(kinds, weights)
  choose_key, fake_key = jax.random.split(key)
  chosen = (jax.random.bernoulli(choose_key, share, labels.shape)
            & (labels == classes.REAL))
  one = functools.partial(pseudo_fake, kinds=kinds, weights=weights, factors=factors)
  fakes = jax.vmap(one)(jax.random.split(fake_key, images.shape[0]), images)
  images = jnp.where(chosen[:, None, None, None], fakes, images)
  labels = jnp.where(chosen, classes.FAKE, labels).astype(labels.dtype)
  return images, labels
