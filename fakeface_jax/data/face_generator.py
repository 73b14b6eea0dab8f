"""Procedural real-like and generator-like face images: the built-in dataset's generator.

Both classes draw scenes from one sampler (background, head, hair, eyes, brows, nose,
mouth, lighting), so content statistics match; they differ only in how pixels are made:

- "real" (label 1): the scene is rendered at 2x the output size and downsampled with an
  antialiasing filter, like a camera image reduced for the web;
- "fake" (label 0): the scene is rendered at half the output size and brought up by a
  generator-style stage: a stride-2 transposed convolution (zero insertion, then a 3x3
  kernel drawn near bilinear interpolation). A kernel that is not an exact
  interpolator leaves periodic energy at the upsampling frequencies, the "checkerboard"
  traces of Odena et al. (2016) that Durall et al. (2020) found in GAN spectra.

`difficulty` in [0, 1] blends the fake's generator output toward a clean bicubic
upsampling of the same low-resolution render: 0 leaves strong traces, 1 removes them
and leaves only the missing fine detail. Both classes then get the same camera-like
noise and the same JPEG quality distribution, so neither is a shortcut.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

RENDER_SCALE_REAL = 2  # Real scenes: rendered at 2x, then downsampled.
GENERATOR_STAGES = 1   # Fake scenes: rendered at 1/2, then one 2x upsampling stage.
KERNEL_PERTURBATION = 0.15  # Relative deviation of generator kernels from bilinear.
JPEG_QUALITY_RANGE = (70, 95)


def _check_difficulty(difficulty: float) -> None:
  if not 0.0 <= difficulty <= 1.0:
    raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")


def _sample_scene(rng: np.random.Generator) -> dict:
  """Resolution-free scene parameters, in coordinates where the image spans [-1, 1]."""
  skin = np.array([0.85, 0.65, 0.52]) * rng.uniform(0.55, 1.1) + rng.normal(0, 0.04, 3)
  return {
      "background": rng.uniform(0.1, 0.9, (2, 3)),  # Colors at the two gradient ends.
      "gradient_angle": rng.uniform(0, 2 * np.pi),
      "center": rng.normal(0, 0.08, 2),
      "axes": np.array([rng.uniform(0.42, 0.55), rng.uniform(0.55, 0.7)]),
      "tilt": rng.normal(0, 0.12),
      "skin": np.clip(skin, 0, 1),
      "hair": rng.uniform(0.05, 0.6) * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 0.05, 3),
      "hair_height": rng.uniform(0.15, 0.45),
      "eye_y": rng.uniform(-0.2, -0.05),
      "eye_dx": rng.uniform(0.17, 0.25),
      "eye_size": rng.uniform(0.05, 0.08),
      "iris": rng.uniform(0.05, 0.5, 3),
      "mouth_y": rng.uniform(0.28, 0.4),
      "mouth_width": rng.uniform(0.12, 0.22),
      "lips": np.clip(np.array([0.7, 0.3, 0.3]) * rng.uniform(0.6, 1.1), 0, 1),
      "light": rng.normal(0, 0.25, 2),
      "texture_phase": rng.uniform(0, 2 * np.pi, (3, 2)),
      "texture_freq": rng.uniform(3, 9, (3, 2)),
  }


def _soft_mask(distance: np.ndarray, pixel: float) -> np.ndarray:
  """1 inside (distance < 0), 0 outside, with an edge one pixel wide at this resolution."""
  return np.clip(0.5 - distance / pixel, 0.0, 1.0)


def render_scene(scene: dict, size: int) -> np.ndarray:
  """Renders a scene as float RGB in [0, 1] at size x size."""
  coords = (np.arange(size) + 0.5) / size * 2 - 1
  y, x = np.meshgrid(coords, coords, indexing="ij")
  pixel = 2.0 / size
  t = np.cos(scene["gradient_angle"]) * x + np.sin(scene["gradient_angle"]) * y
  a, b = scene["background"]
  image = a + (b - a) * ((t + 1.5) / 3)[..., None]

  # Head coordinates: centred on the face, rotated by the tilt.
  cx, cy = scene["center"]
  cos, sin = np.cos(scene["tilt"]), np.sin(scene["tilt"])
  u = cos * (x - cx) + sin * (y - cy)
  v = -sin * (x - cx) + cos * (y - cy)
  ax, ay = scene["axes"]
  head_r = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)

  def paint(mask, color):
    nonlocal image
    image = image * (1 - mask[..., None]) + mask[..., None] * color

  hair = _soft_mask((np.sqrt((u / (ax * 1.12)) ** 2 + ((v + 0.08) / (ay * 1.1)) ** 2) - 1)
                    * ax, pixel) * (v < -ay + scene["hair_height"] * 2)
  paint(hair, scene["hair"])
  texture = sum(np.sin(f[0] * u * np.pi + p[0]) * np.sin(f[1] * v * np.pi + p[1])
                for f, p in zip(scene["texture_freq"], scene["texture_phase"])) * 0.02
  skin = scene["skin"] * (1 + texture[..., None])
  paint(_soft_mask((head_r - 1) * ax, pixel), skin)
  paint(_soft_mask((head_r - 1) * ax, pixel) * (v < -ay + scene["hair_height"]),
        scene["hair"])

  for side in (-1, 1):
    ex, ey, es = side * scene["eye_dx"], scene["eye_y"], scene["eye_size"]
    white = np.sqrt(((u - ex) / (es * 1.6)) ** 2 + ((v - ey) / es) ** 2) - 1
    paint(_soft_mask(white * es, pixel), np.array([0.93, 0.92, 0.9]))
    iris = np.sqrt((u - ex) ** 2 + (v - ey) ** 2) - es * 0.6
    paint(_soft_mask(iris, pixel), scene["iris"])
    pupil = np.sqrt((u - ex) ** 2 + (v - ey) ** 2) - es * 0.25
    paint(_soft_mask(pupil, pixel), np.zeros(3))
    brow = np.maximum(np.abs(u - ex) - es * 1.8, np.abs(v - ey + es * 2.0) - es * 0.3)
    paint(_soft_mask(brow, pixel), scene["hair"] * 0.8)

  nose = np.maximum(np.abs(u) - 0.03 - 0.05 * (v - scene["eye_y"]),
                    np.abs(v - (scene["eye_y"] + scene["mouth_y"]) / 2) - 0.12)
  paint(_soft_mask(nose, pixel) * 0.35, scene["skin"] * 0.7)
  mouth = np.sqrt((u / scene["mouth_width"]) ** 2 + ((v - scene["mouth_y"]) / 0.045) ** 2) - 1
  paint(_soft_mask(mouth * 0.045, pixel), scene["lips"])

  light = 1 + scene["light"][0] * x + scene["light"][1] * y
  return np.clip(image * light[..., None], 0, 1)


def _resize(image: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
  """Resizes a float RGB image in [0, 1] per channel, keeping float precision."""
  return np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), "F")
                              .resize((size, size), resample)) for c in range(3)], -1)


def _transposed_conv_upsample(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """2x upsampling as a generator does it: zero insertion, then a 3x3 convolution."""
  h, w, c = image.shape
  # A one-pixel border of repeated edge samples keeps the output's border as bright as
  # its interior; it is cropped off afterwards.
  padded_low = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
  up = np.zeros((2 * h + 4, 2 * w + 4, c), image.dtype)
  up[::2, ::2] = padded_low
  out = sum(kernel[dy, dx] * up[dy:dy + 2 * h + 2, dx:dx + 2 * w + 2]
            for dy in range(3) for dx in range(3))
  return out[1:2 * h + 1, 1:2 * w + 1]


def render_example(seed: int, index: int, label: int, image_size: int,
                   difficulty: float) -> np.ndarray:
  """One image of class `label` (0 = fake, 1 = real) as uint8 (size, size, 3)."""
  _check_difficulty(difficulty)
  rng = np.random.default_rng([seed, index, label])
  scene = _sample_scene(rng)
  if label == 1:
    hires = render_scene(scene, image_size * RENDER_SCALE_REAL)
    image = _resize(hires, image_size, Image.Resampling.LANCZOS)
  else:
    low_size = image_size // 2 ** GENERATOR_STAGES
    low = render_scene(scene, low_size)
    generated = low
    for _ in range(GENERATOR_STAGES):
      # 4x the bilinear kernel interpolates exactly; a perturbation breaks that and
      # leaves periodic traces at the new sampling grid.
      bilinear = np.outer([0.5, 1, 0.5], [0.5, 1, 0.5])
      kernel = bilinear * (1 + rng.normal(0, KERNEL_PERTURBATION, (3, 3)))
      generated = _transposed_conv_upsample(generated, kernel)
    clean = _resize(low, image_size, Image.Resampling.BICUBIC)
    image = difficulty * clean + (1 - difficulty) * generated[:image_size, :image_size]
  # Camera-like noise: signal-dependent shot noise plus read noise, per-channel gain.
  gain = 1 + rng.normal(0, 0.02, 3)
  noise = rng.normal(0, 1, image.shape) * np.sqrt(0.00002 + 0.0002 * np.clip(image, 0, 1))
  image = np.clip(image * gain + noise, 0, 1)
  return np.round(image * 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
  return buffer.getvalue()


def make_example(seed: int, index: int, image_size: int,
                 difficulty: float) -> tuple[bytes, int]:
  """(JPEG bytes, label) of example `index`; labels alternate so classes stay balanced."""
  label = index % 2
  quality = np.random.default_rng([seed, index, 2]).integers(*JPEG_QUALITY_RANGE,
                                                              endpoint=True)
  return encode_jpeg(render_example(seed, index, label, image_size, difficulty),
                     quality), label
