"""Faces in a photo: boxes, five landmarks and scores, from MTCNN run in JAX.

MTCNN (Zhang et al. 2016) is three small convolutional networks: P-Net proposes face
windows over an image pyramid, R-Net and O-Net refine them, and O-Net also places five
landmarks (both eyes, the nose, both mouth corners). Its pretrained weights ship inside
the `mtcnn` wheel (MIT licence, 2 MB; assets/weights/*.lz4: lists of numpy arrays in
Keras order), which is why it was chosen: nothing is fetched at run time, and MediaPipe,
whose wheels ship models too, pins protobuf<5 where grain needs >=5.28. This module only
reads those files (the `mtcnn` package itself imports TensorFlow and is never imported);
the networks, the pyramid and the box arithmetic are written here. Nothing else in the
project reads the weights: `detect` is the interface.

A photo is searched on a copy whose longer side is at most `max_side` (antialiased), and
every pyramid level is padded up to a multiple of `LEVEL_BUCKET` pixels, and every batch
of candidate windows to a power of two, so that photos of any size reuse a few compiled
shapes (and JAX's persistent compilation cache, where one is set, across processes).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata

import jax
import jax.numpy as jnp
import joblib
import numpy as np
from PIL import Image

# The wheel whose weight files are read; a change of it is a change of every landmark.
WEIGHTS_PACKAGE, WEIGHTS_VERSION = "mtcnn", "1.0.0"
# Each stage's window size in pixels, and P-Net's stride over its level.
PNET_CELL, PNET_STRIDE, RNET_SIZE, ONET_SIZE = 12, 2, 24, 48
PYRAMID_FACTOR = 0.709
LEVEL_BUCKET = 64
# Overlap above which a box is suppressed: P-Net within a level, then across levels,
# R-Net, O-Net ("min": overlap over the smaller box, so a box inside another goes).
NMS_LEVEL, NMS_PYRAMID, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
DEFAULT_THRESHOLDS = (0.6, 0.7, 0.8)


@dataclasses.dataclass(frozen=True)
class Faces:
  """Faces found in one photo, the largest first (a photo's subject before the people
  behind it), in its pixel coordinates."""
  boxes: np.ndarray      # (n, 4) float32: x0, y0, x1, y1.
  # (n, 5, 2) float32 (x, y): the eye on the image's left, the eye on its right, the
  # nose tip, the mouth corner on the image's left, the one on its right.
  landmarks: np.ndarray
  scores: np.ndarray     # (n,) float32: O-Net's face probability.

  def __len__(self) -> int:
    return len(self.scores)


NO_FACES = Faces(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32),
                 np.zeros(0, np.float32))


def settings_key(min_face: int = 24, max_side: int = 1024,
                 thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS) -> str:
  """Names the detector and its settings (caches of landmarks are kept per key)."""
  return (f"mtcnn{WEIGHTS_VERSION}-min{min_face}-max{max_side}-"
          f"t{'-'.join(f'{t:g}' for t in thresholds)}")


# ----------------------------------------------------------------------------------------
# The networks.
# ----------------------------------------------------------------------------------------


@functools.cache
def _weights(name: str) -> tuple[np.ndarray, ...]:
  """One network's arrays, in Keras `get_weights` order."""
  distribution = importlib.metadata.distribution(WEIGHTS_PACKAGE)
  if distribution.version != WEIGHTS_VERSION:
    raise ImportError(f"face detection reads the weights of {WEIGHTS_PACKAGE}=="
                      f"{WEIGHTS_VERSION}, found {distribution.version}; reinstall the project")
  path = distribution.locate_file(f"mtcnn/assets/weights/{name}.lz4")
  return tuple(np.asarray(w, np.float32) for w in joblib.load(path))


def _conv_prelu(x, kernel, bias, alpha):
  x = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
  return jnp.where(x > 0, x, alpha * x)


def _max_pool(x, size: int, padding: str):
  # Keras' "same" pads as XLA's SAME does: the extra row and column after.
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1),
                               (1, 2, 2, 1), padding)


def _dense_prelu(x, kernel, bias, alpha):
  x = x @ kernel + bias
  return jnp.where(x > 0, x, alpha * x)


def _flatten_transposed(x):
  # The weights come from Caffe, whose flatten runs over columns first.
  return jnp.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


def pnet(w, x):
  """(B, H, W, 3) normalised -> box offsets (B, h, w, 4), face probability (B, h, w)."""
  x = _max_pool(_conv_prelu(x, *w[0:3]), 2, "SAME")
  x = _conv_prelu(_conv_prelu(x, *w[3:6]), *w[6:9])
  offsets = jax.lax.conv_general_dilated(x, w[9], (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + w[10]
  logits = jax.lax.conv_general_dilated(x, w[11], (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + w[12]
  return offsets, jax.nn.softmax(logits)[..., 1]


def rnet(w, x):
  """(B, 24, 24, 3) normalised -> box offsets (B, 4), face probability (B,)."""
  x = _max_pool(_conv_prelu(x, *w[0:3]), 3, "SAME")
  x = _max_pool(_conv_prelu(x, *w[3:6]), 3, "VALID")
  x = _dense_prelu(_flatten_transposed(_conv_prelu(x, *w[6:9])), *w[9:12])
  return x @ w[12] + w[13], jax.nn.softmax(x @ w[14] + w[15])[:, 1]


def onet(w, x):
  """(B, 48, 48, 3) normalised -> box offsets (B, 4), landmarks relative to the box
  (B, 10: five x, then five y), face probability (B,)."""
  x = _max_pool(_conv_prelu(x, *w[0:3]), 3, "SAME")
  x = _max_pool(_conv_prelu(x, *w[3:6]), 3, "VALID")
  x = _max_pool(_conv_prelu(x, *w[6:9]), 2, "SAME")
  x = _dense_prelu(_flatten_transposed(_conv_prelu(x, *w[9:12])), *w[12:15])
  return x @ w[15] + w[16], x @ w[17] + w[18], jax.nn.softmax(x @ w[19] + w[20])[:, 1]


_pnet, _rnet, _onet = (jax.jit(net) for net in (pnet, rnet, onet))


# ----------------------------------------------------------------------------------------
# Boxes: pure numpy helpers, (n, 4) x0, y0, x1, y1.
# ----------------------------------------------------------------------------------------


def pyramid_scales(width: int, height: int, min_face: float) -> np.ndarray:
  """The scales at which P-Net's 12-pixel window sees faces from `min_face` pixels up to
  the whole image: the largest first, each PYRAMID_FACTOR times the one before, never
  above 1 (no level is larger than the image)."""
  first = min(1.0, PNET_CELL / max(min_face, PNET_CELL))
  scales = []
  scale = first
  while min(width, height) * scale >= PNET_CELL:
    scales.append(scale)
    scale *= PYRAMID_FACTOR
  return np.array(scales, np.float64)


def _overlaps(box: np.ndarray, others: np.ndarray, mode: str) -> np.ndarray:
  """Intersection of `box` with each of `others`, over their union or the smaller area."""
  width = np.maximum(0, np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]))
  height = np.maximum(0, np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]))
  inter = width * height
  area = lambda b: np.maximum(0, b[..., 2] - b[..., 0]) * np.maximum(0, b[..., 3] - b[..., 1])
  if mode == "union":
    denominator = area(box) + area(others) - inter
  elif mode == "min":
    denominator = np.minimum(area(box), area(others))
  else:
    raise ValueError(f"overlap mode must be 'union' or 'min', got {mode!r}")
  return inter / np.maximum(denominator, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union"
        ) -> np.ndarray:
  """Indices of the boxes greedy non-maximum suppression keeps, highest score first: each
  kept box removes the lower-scored ones it overlaps by more than `threshold`."""
  order = np.argsort(-scores, kind="stable")
  keep = []
  while len(order):
    best, order = order[0], order[1:]
    keep.append(best)
    order = order[_overlaps(boxes[best], boxes[order], mode) <= threshold]
  return np.array(keep, np.int64)


def calibrate(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """Boxes moved by a network's regression: each edge by its offset times the box's
  width (x) or height (y)."""
  width = boxes[:, 2] - boxes[:, 0]
  height = boxes[:, 3] - boxes[:, 1]
  return boxes + offsets * np.stack([width, height, width, height], axis=1)


def to_square(boxes: np.ndarray) -> np.ndarray:
  """Each box grown to a square of its longer side about the same centre."""
  centre = (boxes[:, :2] + boxes[:, 2:]) / 2
  half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None] / 2
  return np.concatenate([centre - half, centre + half], axis=1)


# ----------------------------------------------------------------------------------------
# Detection.
# ----------------------------------------------------------------------------------------


def _normalised(image: np.ndarray) -> np.ndarray:
  return ((image.astype(np.float32) - 127.5) / 128.0)


def _padded_batch(x: np.ndarray) -> np.ndarray:
  """x with zero rows appended up to the next power of two (a few compiled shapes)."""
  size = 1 << max(0, (len(x) - 1).bit_length())
  return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])


def _patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
  """Each box of the normalised image resampled (bilinear) to (size, size); outside the
  image, zero (mid-grey)."""
  height, width = image.shape[:2]
  steps = np.arange(size, dtype=np.float64) / max(size - 1, 1)
  xs = boxes[:, 0:1] + steps * (boxes[:, 2:3] - boxes[:, 0:1])  # (n, size)
  ys = boxes[:, 1:2] + steps * (boxes[:, 3:4] - boxes[:, 1:2])
  x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
  fx, fy = (xs - x0)[:, None, :, None], (ys - y0)[:, :, None, None]

  def at(y, x):
    inside = ((y >= 0) & (y < height))[:, :, None] & ((x >= 0) & (x < width))[:, None, :]
    values = image[np.clip(y, 0, height - 1)[:, :, None], np.clip(x, 0, width - 1)[:, None, :]]
    return values * inside[..., None]

  top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
  bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
  return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _propose(image: np.ndarray, min_face: float, threshold: float) -> np.ndarray:
  """P-Net over the pyramid: square candidate boxes (n, 4) and their scores, (n, 5)."""
  height, width = image.shape[:2]
  weights = _weights("pnet")
  found = []
  for scale in pyramid_scales(width, height, min_face):
    level_w, level_h = max(1, round(width * scale)), max(1, round(height * scale))
    level = np.asarray(Image.fromarray(image).resize((level_w, level_h), Image.Resampling.BOX))
    bucket = np.zeros((-(-level_h // LEVEL_BUCKET) * LEVEL_BUCKET,
                       -(-level_w // LEVEL_BUCKET) * LEVEL_BUCKET, 3), np.float32)
    bucket[:level_h, :level_w] = _normalised(level)
    offsets, probability = (np.asarray(a[0]) for a in _pnet(weights, bucket[None]))
    # Windows that lie wholly in the level, not in its padding.
    rows = (level_h - PNET_CELL) // PNET_STRIDE + 1
    cols = (level_w - PNET_CELL) // PNET_STRIDE + 1
    ys, xs = np.nonzero(probability[:rows, :cols] > threshold)
    if not len(ys):
      continue
    corner = np.stack([xs, ys, xs, ys], axis=1) * PNET_STRIDE + [0, 0, PNET_CELL, PNET_CELL]
    boxes = calibrate(corner.astype(np.float64), offsets[ys, xs]) / scale
    scores = probability[ys, xs]
    keep = nms(corner.astype(np.float64), scores, NMS_LEVEL)
    found.append(np.concatenate([boxes[keep], scores[keep, None]], axis=1))
  if not found:
    return np.zeros((0, 5))
  found = np.concatenate(found)
  found = found[nms(found[:, :4], found[:, 4], NMS_PYRAMID)]
  return np.concatenate([to_square(found[:, :4]), found[:, 4:]], axis=1)


def _refine(image: np.ndarray, boxes: np.ndarray, threshold: float):
  """R-Net on P-Net's squares: the kept squares (n, 4) and scores."""
  patches = _patches(image, boxes, RNET_SIZE)
  offsets, scores = (np.asarray(a)[:len(boxes)]
                     for a in _rnet(_weights("rnet"), _padded_batch(patches)))
  kept = scores > threshold
  boxes, scores = calibrate(boxes[kept], offsets[kept]), scores[kept]
  keep = nms(boxes, scores, NMS_RNET)
  return to_square(boxes[keep]), scores[keep]


def _output(image: np.ndarray, boxes: np.ndarray, threshold: float) -> Faces:
  """O-Net on R-Net's squares: the final boxes, landmarks and scores."""
  patches = _patches(image, boxes, ONET_SIZE)
  offsets, relative, scores = (np.asarray(a)[:len(boxes)]
                               for a in _onet(_weights("onet"), _padded_batch(patches)))
  size = (boxes[:, 2:] - boxes[:, :2])[:, None, :]  # (n, 1, 2): width, height.
  landmarks = boxes[:, None, :2] + np.stack([relative[:, :5], relative[:, 5:]], -1) * size
  kept = scores > threshold
  boxes, landmarks, scores = calibrate(boxes[kept], offsets[kept]), landmarks[kept], scores[kept]
  keep = nms(boxes, scores, NMS_ONET, mode="min")
  areas = np.prod(boxes[keep, 2:] - boxes[keep, :2], axis=1)
  keep = keep[np.argsort(-areas, kind="stable")]
  return Faces(boxes[keep].astype(np.float32), landmarks[keep].astype(np.float32),
               scores[keep].astype(np.float32))


def _rgb(image: np.ndarray) -> np.ndarray:
  if image.dtype != np.uint8:
    raise ValueError(f"face detection needs a uint8 image, got {image.dtype}")
  if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
    return np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
  if image.ndim == 3 and image.shape[2] in (3, 4):
    return image[..., :3]
  raise ValueError(f"face detection needs an (H, W), (H, W, 3) or (H, W, 4) image, got "
                   f"shape {image.shape}")


def detect(image: np.ndarray, *, min_face: int = 24, max_side: int = 1024,
           thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS) -> Faces:
  """The faces of an (H, W[, 1, 3 or 4]) uint8 photo at least `min_face` pixels across,
  the largest first, in the photo's own coordinates."""
  image = _rgb(image)
  height, width = image.shape[:2]
  shrink = min(1.0, max_side / max(height, width))
  if shrink < 1:
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
  normalised = _normalised(image)
  candidates = _propose(image, min_face * shrink, thresholds[0])
  if not len(candidates):
    return NO_FACES
  boxes, _ = _refine(normalised, candidates[:, :4], thresholds[1])
  if not len(boxes):
    return NO_FACES
  found = _output(normalised, boxes, thresholds[2])
  # Back to the photo's pixels: coordinates scale, pixel centres stay centres.
  unshrink = np.float32(1 / shrink)
  return Faces(found.boxes * unshrink, found.landmarks * unshrink, found.scores)
