"""The aligned face crop: FFHQ's square from landmarks, the same crop whatever the photo's
scale, tilt or position, antialiased, mirrored at the edges, and its box in the photo."""

import numpy as np
import pytest
from PIL import Image

from fakeface_jax.data import face_crop

# Eyes level, mouth below: eye distance 20, eye-to-mouth 30 (so the side is 3.6 x 30).
LEVEL = np.array([[40, 50], [60, 50], [50, 65], [45, 80], [55, 80]], np.float64)


def _smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
  """Content without fine detail, so resampling at any scale keeps it within a level or
  two, and without symmetry, so a crop turned or shifted by mistake shows."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  channels = []
  for _ in range(3):
    value = np.zeros_like(x)
    for _ in range(4):
      fx, fy = rng.uniform(-1, 1, 2) / 60
      value += np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    channels.append(value)
  image = np.stack(channels, -1)
  image = (image - image.min()) / (image.max() - image.min())
  return np.round(image * 255).astype(np.uint8)


def _similarity(image: np.ndarray, landmarks: np.ndarray, angle: float, scale: float,
                shift: tuple[float, float], size: tuple[int, int]):
  """The image moved by a rotation, a scale and a shift (in continuous pixel coordinates),
  and its landmarks moved alike."""
  c, s = np.cos(angle), np.sin(angle)
  rotation = np.array([[c, -s], [s, c]])
  shift = np.asarray(shift, np.float64)
  moved = (scale * (landmarks + 0.5) @ rotation.T) + shift - 0.5
  # PIL's AFFINE maps each output point back to its source point.
  inverse = rotation.T / scale
  offset = -inverse @ shift
  coefficients = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
  warped = Image.fromarray(image).transform(size, Image.Transform.AFFINE, coefficients,
                                            resample=Image.Resampling.BICUBIC)
  return np.asarray(warped), moved


def test_level_eyes_give_ffhqs_upright_square_centred_below_the_eyes():
  corners = face_crop.square(LEVEL)
  # Side 2 x max(2 x 20, 1.8 x 30) = 108 around (50, 50 + 0.1 x 30).
  np.testing.assert_allclose(corners, [[-4, -1], [104, -1], [104, 107], [-4, 107]])
  assert face_crop.box(corners) == (-4.0, -1.0, 104.0, 107.0)


def test_wide_set_eyes_set_the_side_when_they_are_the_larger_measure():
  wide = LEVEL.copy()
  wide[[0, 1], 0] = [20, 80]  # Eye distance 60: side 4 x 60 beats 3.6 x 30.
  corners = face_crop.square(wide)
  assert np.hypot(*(corners[1] - corners[0])) == pytest.approx(240)


@pytest.mark.parametrize("margin", [0.5, 1.0, 1.6])
def test_margin_scales_the_side_about_the_same_centre(margin):
  corners = face_crop.square(LEVEL, margin)
  assert np.hypot(*(corners[1] - corners[0])) == pytest.approx(108 * margin)
  np.testing.assert_allclose(corners.mean(0), [50, 53])


def test_a_tilted_face_gives_a_square_turned_by_its_tilt():
  angle = np.deg2rad(30)
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  corners = face_crop.square(LEVEL @ rotation.T)
  np.testing.assert_allclose(corners, face_crop.square(LEVEL) @ rotation.T, atol=1e-9)
  top = corners[1] - corners[0]
  assert np.arctan2(top[1], top[0]) == pytest.approx(angle)


def test_a_square_on_the_images_own_frame_returns_the_image():
  image = _smooth_image(256, 256)
  # Landmarks whose square is exactly the 256 px frame: pixel centres run 0..255, so the
  # frame's corners are at -0.5 and 255.5.
  landmarks = np.array([[95.5, 121.5], [159.5, 121.5], [127.5, 150], [117.5, 181.5],
                        [137.5, 181.5]])
  np.testing.assert_allclose(face_crop.square(landmarks),
                             [[-0.5, -0.5], [255.5, -0.5], [255.5, 255.5], [-0.5, 255.5]])
  crop, corners = face_crop.crop(image, landmarks, face_crop.CropSettings(size=256))
  np.testing.assert_allclose(face_crop.box(corners), (-0.5, -0.5, 255.5, 255.5))
  assert face_crop.side(corners) == pytest.approx(256)
  assert np.abs(crop.astype(int) - image).max() <= 1


@pytest.mark.parametrize("angle, scale, shift", [
    (0.0, 1.0, (37.0, -21.0)),          # Shifted.
    (np.deg2rad(25), 1.0, (90.0, -40.0)),  # Turned.
    (np.deg2rad(-40), 1.7, (-200.0, 300.0)),  # Turned and larger.
    (np.deg2rad(10), 0.6, (120.0, 110.0)),  # Smaller: the crop is upsampled.
])
def test_a_moved_turned_or_scaled_photo_gives_the_same_crop(angle, scale, shift):
  image = _smooth_image(420, 480)
  landmarks = np.array([[210, 200], [270, 205], [240, 240], [215, 275], [262, 278]], np.float64)
  settings = face_crop.CropSettings(size=96, margin=0.8)
  reference, _ = face_crop.crop(image, landmarks, settings)
  moved_image, moved_landmarks = _similarity(image, landmarks, angle, scale, shift, (640, 640))
  crop, corners = face_crop.crop(moved_image, moved_landmarks, settings)
  assert crop.shape == reference.shape == (96, 96, 3)
  assert np.abs(crop.astype(float) - reference).mean() < 2.0
  np.testing.assert_allclose(corners, face_crop.square(moved_landmarks, 0.8))
  assert face_crop.side(corners) == pytest.approx(scale * face_crop.side(
      face_crop.square(landmarks, 0.8)))


def test_a_crop_of_a_fine_pattern_is_antialiased_not_aliased():
  # A 1 px checkerboard seen at a twelfth of its resolution averages to mid-grey; a crop
  # that samples instead of filtering shows moire or picks one colour.
  checker = ((np.indices((1200, 1200)).sum(0) % 2) * 255).astype(np.uint8)
  landmarks = LEVEL * 10 + 300.3
  crop, _ = face_crop.crop(checker, landmarks, face_crop.CropSettings(size=90))
  assert crop.shape == (90, 90)
  assert abs(crop.mean() - 127.5) < 4 and crop.std() < 8


def test_a_square_beyond_the_photos_edge_is_filled_by_mirroring_it():
  # Left half dark, right half light: mirroring at the left edge repeats the dark side; a
  # constant fill would put black (or any one value) there instead.
  image = np.zeros((200, 200), np.uint8)
  image[:, 100:] = 200
  image[:, :100] = 50
  landmarks = LEVEL + [-40, 60]  # The square starts 44 px left of the photo.
  crop, corners = face_crop.crop(image, landmarks, face_crop.CropSettings(size=108))
  assert face_crop.box(corners)[0] == pytest.approx(-44)
  assert crop[:, :40].min() >= 45 and crop[:, :40].max() <= 55


def test_a_gray_image_gives_a_gray_crop_and_rgba_keeps_its_channels():
  assert face_crop.crop(np.full((120, 120), 9, np.uint8), LEVEL)[0].shape == (256, 256)
  rgba = np.full((120, 120, 4), 9, np.uint8)
  assert face_crop.crop(rgba, LEVEL, face_crop.CropSettings(size=32))[0].shape == (32, 32, 4)


@pytest.mark.parametrize("landmarks, message", [
    (np.zeros((4, 2)), "5 finite"),
    (np.full((5, 2), np.nan), "5 finite"),
    (np.zeros((5, 2)), "degenerate"),
])
def test_landmarks_that_give_no_square_are_refused(landmarks, message):
  with pytest.raises(ValueError, match=message):
    face_crop.crop(np.zeros((50, 50, 3), np.uint8), landmarks)


def test_images_that_are_not_uint8_pictures_are_refused():
  with pytest.raises(ValueError, match="uint8 image"):
    face_crop.crop(np.zeros((50, 50, 3), np.float32), LEVEL)
  with pytest.raises(ValueError, match="uint8 image"):
    face_crop.crop(np.zeros((1, 50, 3), np.uint8), LEVEL)


@pytest.mark.parametrize("size, margin, message", [(4, 1.0, "size"), (64, 0.1, "margin"),
                                                   (64, 5.0, "margin")])
def test_crop_settings_out_of_range_are_refused(size, margin, message):
  with pytest.raises(ValueError, match=message):
    face_crop.CropSettings(size=size, margin=margin)
