"""A face's aligned square crop from its landmarks: the one crop training and predict share.

The square follows FFHQ's alignment (Karras et al. 2019, `recreate_aligned_images`): its
centre sits a tenth of the way from the eyes' midpoint towards the mouth, its side is the
larger of 4x the eye distance and 3.6x the eye-to-mouth distance, and it is rotated so
that the eyes lie level. A face therefore lands at the same place and scale whatever the
photo's size, the face's position or its tilt; `margin` scales the side (1.0 is FFHQ's
framing, which shows the whole head).

Sampling is antialiased: the rotated square is first cut out at the photo's own
resolution (bilinear, about one input pixel per output pixel, so nothing aliases), then
resized to `size` with a Lanczos filter. Parts of the square outside the photo are filled
by mirroring the photo at its edges, as FFHQ pads, so that no flat border marks faces near
an edge.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

# Landmark rows, as `faces.detect` returns them (x, y) in image pixels.
LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_LEFT, MOUTH_RIGHT = range(5)


@dataclasses.dataclass(frozen=True)
class CropSettings:
  """How a face becomes the model's input: `config.data.face_crop` when on."""
  size: int = 256
  margin: float = 1.0

  def __post_init__(self):
    if self.size < 8:
      raise ValueError(f"face crop size must be at least 8 pixels, got {self.size}")
    if not 0.25 <= self.margin <= 4.0:
      raise ValueError(f"face crop margin must be in [0.25, 4], got {self.margin}")


def settings_of(data_config: Any) -> CropSettings | None:
  """config.data.face_crop -> the crop at the model's input size, or None when off."""
  face = data_config.get("face_crop")
  if not face or not face.enabled:
    return None
  return CropSettings(int(data_config.image_size), float(face.margin))


def square(landmarks: np.ndarray, margin: float = 1.0) -> np.ndarray:
  """The aligned square's four corners (4, 2) in image coordinates, clockwise from the
  top left of the crop: FFHQ's quad, its side scaled by `margin`."""
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
    raise ValueError(f"landmarks must be 5 finite (x, y) points, got shape {landmarks.shape}")
  eye_avg = (landmarks[LEFT_EYE] + landmarks[RIGHT_EYE]) / 2
  eye_to_eye = landmarks[RIGHT_EYE] - landmarks[LEFT_EYE]
  eye_to_mouth = (landmarks[MOUTH_LEFT] + landmarks[MOUTH_RIGHT]) / 2 - eye_avg
  # The crop's x axis: along the eyes, bent by the perpendicular of the eye-mouth line,
  # so a face whose eyes are not level in the photo still comes out upright.
  x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
  norm = np.hypot(*x)
  if norm == 0:
    raise ValueError("landmarks are degenerate: the eyes and the mouth give no direction")
  half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) * margin
  x = x / norm * half
  y = np.array([-x[1], x[0]])
  centre = eye_avg + eye_to_mouth * 0.1
  return np.stack([centre - x - y, centre + x - y, centre + x + y, centre - x + y])


def box(corners: np.ndarray) -> tuple[float, float, float, float]:
  """The axis-aligned box (x0, y0, x1, y1) around a square's corners, in image pixels."""
  return (float(corners[:, 0].min()), float(corners[:, 1].min()),
          float(corners[:, 0].max()), float(corners[:, 1].max()))


def side(corners: np.ndarray) -> float:
  """A square's side in image pixels: the face's size as the crop resamples it."""
  return float(np.hypot(*(corners[1] - corners[0])))


def _mirrored(image: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The image padded by mirroring so that it holds the square, and the corners moved
  into the padded image's coordinates."""
  height, width = image.shape[:2]
  x0, y0, x1, y1 = box(corners)
  left, top, right, bottom = (max(0, int(np.ceil(v))) + 1
                              for v in (-x0, -y0, x1 - width, y1 - height))
  spec = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
  return np.pad(image, spec, mode="symmetric"), corners + np.array([left, top], np.float64)


def crop(image: np.ndarray, landmarks: np.ndarray, settings: CropSettings = CropSettings()
         ) -> tuple[np.ndarray, np.ndarray]:
  """The face's aligned (size, size[, C]) uint8 crop from an (H, W[, C]) uint8 image, and
  the square it was cut from: its corners (4, 2) in the image (`square`; `box`, `side`)."""
  if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 2:
    raise ValueError(f"expected an (H, W[, C]) uint8 image, got {image.dtype} {image.shape}")
  corners = square(landmarks, settings.margin)
  padded, moved = _mirrored(image, corners)
  # Cut the square out at the photo's own scale first, so the final resize is the only
  # change of scale and can be antialiased.
  native_side = max(settings.size, round(side(corners)))
  # PIL's QUAD takes the source corners of the output's top left, bottom left, bottom
  # right and top right, in coordinates where pixel i spans [i, i + 1): landmarks name
  # pixel centres, hence the half pixel.
  quad = (moved[[0, 3, 2, 1]] + 0.5).reshape(-1)
  native = Image.fromarray(padded).transform((native_side, native_side), Image.Transform.QUAD,
                                             tuple(quad),
                                             resample=Image.Resampling.BILINEAR)
  out = native.resize((settings.size, settings.size), Image.Resampling.LANCZOS)
  return np.asarray(out), corners
