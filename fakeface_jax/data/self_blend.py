"""Self-blended pseudo-fakes: real faces blended with a perturbed copy of themselves.

Self-Blended Images (SBI; Shiohara & Yamasaki, CVPR 2022), after Face X-ray (Li et al.,
CVPR 2020): a detector trained on one generator's fakes learns that generator's
artefacts and fails on the next one. What face manipulations share is that a region
was pasted in from somewhere else: a blending boundary, and inside it colour, sharpness,
compression and geometry that disagree slightly with the rest of the image. Blending an
image with a slightly altered copy of itself through a soft mask produces exactly those
cues and nothing else, since source and target are the same face; a detector trained on
such pseudo-fakes has nothing but the generic cues to learn, and needs no fakes at all.

SBI places its masks with facial landmarks. The faces in this project's datasets are
already centred and aligned (FFHQ/StyleGAN crops, ciplab's real-and-fake faces), so the
masks here are landmark-free priors at the usual positions of a face and its parts (the
parts ciplab's Photoshop composites replace), plus random convex shapes for boundaries
that follow no part.

The copy differs in colour (contrast, per-channel gain and offset), sharpness (blur or
unsharp masking), geometry (a few percent of scale and shift) and, for half the images,
JPEG quantisation at another quality (each channel with the luminance table); see
`perturb`. Mask kinds: "face" (an ellipse about the centre), "eyes" (one or both),
"nose", "mouth" (ellipses where those parts sit in an aligned crop) and "convex" (a
random polygon); see `random_masks`. Their edges are feathered with a compact-support
blur, so that outside it the output is the input bit for bit.

Everything is pure and jit-able with static shapes: randomness comes only from explicit
PRNG keys, and the mask kinds are a static tuple of names (pass `kinds` as a static
argument under `jax.jit`). Images are float32 NHWC in [0, 1], with 1 or 3 channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fakeface_jax import classes
from fakeface_jax.data import jpeg_tables
from fakeface_jax.models import jpeg_domain

MASK_KINDS = ("face", "eyes", "nose", "mouth", "convex")
# (row, column) centres as fractions of the height and width of an aligned face crop.
# ciplab's faces fill more of the frame than FFHQ's: eyes near row 0.39 there, 0.47 in
# FFHQ (columns 0.38 and 0.62, from its alignment's geometry); the jitter spans both.
PART_CENTRES = {"face": (0.52, 0.5), "left_eye": (0.43, 0.35), "right_eye": (0.43, 0.65),
                "nose": (0.56, 0.5), "mouth": (0.72, 0.5)}
# Feather width of the mask edge, as a fraction of the image's shorter side.
FEATHER_RANGE = (0.02, 0.08)
JPEG_QUALITY_RANGE = (30, 95)
JPEG_PROB = 0.5
CONVEX_SIDES = 6
_HIGHEST = jax.lax.Precision.HIGHEST


def _draw(key: jax.Array, low, high) -> jax.Array:
  """Uniform numbers in [low, high), elementwise, from a single draw: every `jax.random`
  call inlines a whole Threefry hash, and one per number made compiling take seconds."""
  low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
  return jax.random.uniform(key, low.shape, minval=low, maxval=high)


def _nonempty(field: jax.Array, level: float) -> jax.Array:
  """`field <= level` as a float mask, widened to the field's minimum if that is above
  `level`: a region smaller than a pixel still covers its nearest pixel, so no mask
  comes out empty."""
  return (field <= jnp.maximum(level, field.min())).astype(jnp.float32)


def _ellipse(key, rows, cols, centre, jitter, axes_low, axes_high, max_tilt=0.0):
  """A filled ellipse with jittered centre, random (row, column) semi-axes and tilt;
  `jitter` is one bound or a (row, column) pair."""
  jitter = np.broadcast_to(jitter, (2,))
  low = [*(np.asarray(centre) - jitter), *axes_low, -max_tilt]
  high = [*(np.asarray(centre) + jitter), *axes_high, max_tilt]
  cy, cx, ay, ax, tilt = _draw(key, low, high)
  dy, dx = rows - cy, cols - cx
  u = jnp.cos(tilt) * dy - jnp.sin(tilt) * dx
  v = jnp.sin(tilt) * dy + jnp.cos(tilt) * dx
  return _nonempty((u / ay) ** 2 + (v / ax) ** 2, 1.0)


def _face(key, rows, cols):
  return _ellipse(key, rows, cols, PART_CENTRES["face"], 0.04, (0.28, 0.22), (0.40, 0.32),
                  max_tilt=0.15)


def _eyes(key, rows, cols):
  """One eye or both: ciplab's file names flag the left and right eye separately."""
  left_key, right_key, which_key = jax.random.split(key, 3)
  jitter = (0.04, 0.03)
  left = _ellipse(left_key, rows, cols, PART_CENTRES["left_eye"], jitter, (0.04, 0.07),
                  (0.07, 0.11))
  right = _ellipse(right_key, rows, cols, PART_CENTRES["right_eye"], jitter, (0.04, 0.07),
                   (0.07, 0.11))
  which = jax.random.randint(which_key, (), 0, 4)  # 0: left, 1: right, 2 and 3: both.
  return jnp.maximum(left * (which != 1), right * (which != 0))


def _nose(key, rows, cols):
  return _ellipse(key, rows, cols, PART_CENTRES["nose"], 0.03, (0.08, 0.05), (0.13, 0.08))


def _mouth(key, rows, cols):
  return _ellipse(key, rows, cols, PART_CENTRES["mouth"], 0.03, (0.045, 0.11),
                  (0.075, 0.17), max_tilt=0.1)


def _convex(key, rows, cols):
  """An intersection of half-planes around a point near the centre: a random convex
  polygon without a hull algorithm. Normals stay within 96 degrees of their neighbours,
  so the polygon is bounded."""
  sides = CONVEX_SIDES
  draws = _draw(key, [0.4, 0.4] + [-0.3] * sides + [0.08] * sides,
                [0.6, 0.6] + [0.3] * sides + [0.3] * sides)
  cy, cx = draws[0], draws[1]
  angles = (2 * jnp.pi / sides * (jnp.arange(sides) + draws[2:2 + sides]))[:, None, None]
  reach = draws[2 + sides:, None, None]
  outside = (jnp.cos(angles) * (rows - cy) + jnp.sin(angles) * (cols - cx) - reach).max(0)
  return _nonempty(outside, 0.0)


MASK_SHAPES = {"face": _face, "eyes": _eyes, "nose": _nose, "mouth": _mouth,
               "convex": _convex}


def _check_kinds(kinds: tuple[str, ...]) -> None:
  unknown = [kind for kind in kinds if kind not in MASK_SHAPES]
  if not kinds or unknown:
    raise ValueError(f"mask kinds must be a non-empty subset of {MASK_KINDS}, got {kinds}")


def _blur(plane: jax.Array, profile) -> jax.Array:
  """Separable blur of an (H, W, ...) array by the kernel `profile(|pixel offset|)`,
  normalised per output pixel so that edges keep their level.

  Two matrix products rather than shifted sums: a handful of operations whatever the
  kernel's width, which keeps compiling (and running without jit) fast.
  """
  def matrix(size):
    offsets = jnp.arange(size, dtype=jnp.float32)
    taps = profile(jnp.abs(offsets[:, None] - offsets[None, :]))
    return taps / taps.sum(1, keepdims=True)
  height, width = plane.shape[:2]
  return jnp.einsum("ij,jk...,lk->il...", matrix(height), plane, matrix(width),
                    precision=_HIGHEST)


def _soften(hard: jax.Array, feather: jax.Array, ratio: jax.Array) -> jax.Array:
  """Feathers a hard (H, W) mask with a tent blur `feather` (a fraction of the shorter
  side) wide, normalised to a peak of 1, then scaled by the blend `ratio`."""
  height, width = hard.shape
  # A radius of 1 pixel or less would leave the edge hard.
  radius = jnp.maximum(feather * min(height, width), 1.5)
  # A tent, unlike a Gaussian, has compact support: beyond the feather the mask stays
  # exactly 0, which is what keeps the pixels there exactly as they were.
  soft = _blur(hard, lambda offset: jnp.maximum(1 - offset / radius, 0.0))
  return soft / jnp.maximum(soft.max(), 1e-6) * ratio


def random_masks(key: jax.Array, num: int, height: int, width: int,
                 kinds: tuple[str, ...] = MASK_KINDS) -> jax.Array:
  """(num, height, width, 1) soft masks in [0, 1], each of a kind drawn from `kinds`.

  Every kind is drawn for every image and one kept, so that shapes stay static;
  the shapes are cheap next to the perturbations.
  """
  _check_kinds(kinds)
  rows = ((jnp.arange(height, dtype=jnp.float32) + 0.5) / height)[:, None]
  cols = ((jnp.arange(width, dtype=jnp.float32) + 0.5) / width)[None, :]
  def one(key):
    *shape_keys, key = jax.random.split(key, len(kinds) + 1)
    hards = jnp.stack([jnp.broadcast_to(MASK_SHAPES[kind](k, rows, cols), (height, width))
                       for kind, k in zip(kinds, shape_keys)])
    # Blend ratio 1 with probability 0.4, as SBI favours full replacement, else
    # uniform in [0.25, 1).
    feather, ratio, pick = _draw(key, [FEATHER_RANGE[0], 0.25, 0],
                                 [FEATHER_RANGE[1], 1.5, len(kinds)])
    hard = hards[jnp.minimum(pick.astype(jnp.int32), len(kinds) - 1)]
    return _soften(hard, feather, jnp.minimum(ratio, 1.0))
  return jax.vmap(one)(jax.random.split(key, num))[..., None]


def jpeg_requantize(image: jax.Array, quality: jax.Array | int) -> jax.Array:
  """One HWC float image in [0, 1] through JPEG's lossy step at `quality` (1-100).

  Each channel is quantised on its own with libjpeg's luminance table: no YCbCr or
  chroma subsampling, since the point is a block grid and a coarseness that differ
  inside the mask from outside, not a faithful codec. Edges are padded to whole 8x8
  blocks and cropped back. Not clipped, so applying it twice changes whole blocks no
  further.
  """
  height, width, _ = image.shape
  block = jpeg_domain.BLOCK
  padded = jnp.pad(image, ((0, -height % block), (0, -width % block), (0, 0)), mode="edge")
  planes = jnp.moveaxis(padded, -1, 0) * 255 - 128
  c, h, w = planes.shape
  blocks = planes.reshape(c, h // block, block, w // block, block)
  d = jnp.asarray(jpeg_domain.dct_matrix())
  # Not `jpeg_domain.block_dct`: its default precision may be TF32 or bf16 on an
  # accelerator, which moves coefficients across rounding boundaries.
  coefficients = jnp.einsum("ki,nbicj,lj->nbckl", d, blocks, d, precision=_HIGHEST)
  table = jnp.asarray(jpeg_tables.STANDARD_LUMINANCE, jnp.float32)[quality - 1]
  coefficients = jnp.round(coefficients / table) * table
  blocks = jnp.einsum("ki,nbckl,lj->nbicj", d, coefficients, d, precision=_HIGHEST)
  planes = (blocks.reshape(c, h, w) + 128) / 255
  return jnp.moveaxis(planes, 0, -1)[:height, :width]


def _colour(key: jax.Array, image: jax.Array) -> jax.Array:
  """Contrast about the mean, then per-channel gain and offset (a hue-like tint in
  colour, brightness in gray): the mismatch of skin tone a pasted face brings."""
  channels = image.shape[-1]
  draws = _draw(key, [0.85] + [0.92] * channels + [-0.06] * channels,
                [1.15] + [1.08] * channels + [0.06] * channels)
  contrast, gain, offset = draws[0], draws[1:1 + channels], draws[1 + channels:]
  mean = image.mean()
  return jnp.clip(((image - mean) * contrast + mean) * gain + offset, 0.0, 1.0)


def _sharpness(key: jax.Array, image: jax.Array) -> jax.Array:
  """Blur (amount < 0) or unsharp-mask sharpen (amount > 0): generators and warps
  rarely match the camera's resolution."""
  amount, sigma = _draw(key, [-1.0, 0.5], [1.0, 1.5])
  blurred = _blur(image, lambda offset: jnp.exp(-0.5 * (offset / sigma) ** 2))
  return jnp.clip(image + amount * (image - blurred), 0.0, 1.0)


def _scale_shift(key: jax.Array, image: jax.Array) -> jax.Array:
  """Scales by up to 5% about the centre and shifts by up to 3% of the size,
  bilinearly: the misalignment of a region warped into place."""
  height, width, _ = image.shape
  size = jnp.array([height, width], jnp.float32)
  draws = _draw(key, [0.95, -0.03, -0.03], [1.05, 0.03, 0.03])
  scale, shift = draws[0], draws[1:] * size
  centre = (size - 1) / 2
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing="ij")
  # Inverse mapping: where in the copy each output pixel comes from.
  src = [(grid - c - s) / scale + c for grid, c, s in zip((rows, cols), centre, shift)]
  def channel(plane):
    return jax.scipy.ndimage.map_coordinates(plane, src, order=1, mode="nearest")
  return jax.vmap(channel, in_axes=-1, out_axes=-1)(image)


def _random_jpeg(key: jax.Array, image: jax.Array) -> jax.Array:
  """JPEG re-quantisation with probability JPEG_PROB: a region compressed at another
  quality than the rest, as when a face is cut from one file into another."""
  low, high = JPEG_QUALITY_RANGE
  apply, quality = _draw(key, [0, low], [1, high + 1])
  apply, quality = apply < JPEG_PROB, quality.astype(jnp.int32)
  return jnp.where(apply, jnp.clip(jpeg_requantize(image, quality), 0.0, 1.0), image)


def perturb(key: jax.Array, image: jax.Array) -> jax.Array:
  """The source of a self-blend: one HWC float image in [0, 1] with random colour,
  sharpness, scale/shift and (half the time) JPEG re-quantisation, in [0, 1]."""
  colour_key, sharp_key, warp_key, jpeg_key = jax.random.split(key, 4)
  image = _colour(colour_key, image)
  image = _sharpness(sharp_key, image)
  image = _scale_shift(warp_key, image)
  return _random_jpeg(jpeg_key, image)


def self_blend(key: jax.Array, images: jax.Array,
               kinds: tuple[str, ...] = MASK_KINDS) -> tuple[jax.Array, jax.Array]:
  """Pseudo-fakes of a float batch (N, H, W, C) in [0, 1]: (blended images, masks).

  Each image is blended with its own `perturb`ed copy through a `random_masks` mask
  (N, H, W, 1) of a kind drawn from `kinds`. Where a mask is exactly 0 the output is
  exactly the input; the masks can serve as Face X-ray-style targets.
  """
  n, height, width, _ = images.shape
  mask_key, perturb_key = jax.random.split(key)
  masks = random_masks(mask_key, n, height, width, kinds)
  sources = jax.vmap(perturb)(jax.random.split(perturb_key, n), images)
  # input + 0 * (anything finite) is the input, bit for bit.
  return jnp.clip(images + masks * (sources - images), 0.0, 1.0), masks


def pseudo_fake_batch(key: jax.Array, images: jax.Array, labels: jax.Array,
                      share: float | jax.Array, kinds: tuple[str, ...] = MASK_KINDS
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Turns each real image of a training batch, with probability `share`, into a
  pseudo-fake labelled fake; fakes pass through. Returns (images, labels, masks),
  masks all 0 for the images left alone.

  With only real images this gives a batch of both classes, so a detector can train
  without any generator's fakes. Every image is blended and the choice made with
  `jnp.where`, so the cost does not depend on `share` and nothing branches on data.
  """
  if isinstance(share, (int, float)) and not 0 <= share <= 1:
    raise ValueError(f"share must be in [0, 1], got {share}")
  choose_key, blend_key = jax.random.split(key)
  chosen = jax.random.bernoulli(choose_key, share, labels.shape) & (labels == classes.REAL)
  blended, masks = self_blend(blend_key, images, kinds)
  pick = chosen[:, None, None, None]
  images = jnp.where(pick, blended, images)
  labels = jnp.where(chosen, classes.FAKE, labels).astype(labels.dtype)
  return images, labels, jnp.where(pick, masks, 0.0)
