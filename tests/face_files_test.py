"""config.data.face_crop: each file cut to its face once the faces are found, the same crop
predict makes, re-saved copies cut at their own scale, faces found once per prepared
dataset, files without a face kept whole and counted, and the training domain of faces.

The detector is replaced by one that 'finds' a face placed by hand in each photo (or
none), so every crop can be checked against the crop it must be.
"""

import io
import json
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from fakeface_jax.data import datasets
from fakeface_jax.data import degradations
from fakeface_jax.data import face_crop
from fakeface_jax.data import face_files
from fakeface_jax.data import faces
from fakeface_jax.data import image_decoding
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import jpeg_tables
from fakeface_jax import models
from fakeface_jax.training import feature_cache
from configs import cooccurrence
from configs import default

# Landmarks of a face whose square (side 108 x scale) is centred at (x, y + 3 x scale).
LEVEL = np.array([[-10, -15], [10, -15], [0, 0], [-5, 15], [5, 15]], np.float32)


def _landmarks_for(width: int, height: int) -> np.ndarray:
  """The face the stub finds in a photo: placed by its size, so a copy at another scale
  has it at the same place relative to its size."""
  return LEVEL * (width / 160) + [width * 0.5, height * 0.45]


class StubDetector:
  """Finds one face in every photo at least 60 px wide, none in smaller ones; counts calls."""

  def __init__(self):
    self.calls = 0

  def __call__(self, image, **unused):
    self.calls += 1
    height, width = image.shape[:2]
    if width < 60:
      return faces.Faces(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32),
                         np.zeros(0, np.float32))
    points = _landmarks_for(width, height)[None].astype(np.float32)
    return faces.Faces(np.array([[0, 0, width, height]], np.float32), points,
                       np.ones(1, np.float32))


@pytest.fixture
def detector(monkeypatch):
  stub = StubDetector()
  monkeypatch.setattr(faces, "detect", stub)
  return stub


def _jpeg(width, height, seed=0, quality=90) -> bytes:
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), np.uint8)
  image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def _table(paths_sizes):
  """Landmarks as `face_files.landmarks` keeps them, of photos (path, width, height)."""
  return face_files.Landmarks(
      np.array([p for p, _, _ in paths_sizes], str),
      np.stack([_landmarks_for(w, h) if w >= 60 else np.full((5, 2), np.nan)
                for _, w, h in paths_sizes]).astype(np.float32),
      np.array([(w, h) for _, w, h in paths_sizes], np.int32))


def test_a_file_becomes_the_png_of_its_faces_crop_and_a_faceless_one_stays_as_it_is():
  data, small = _jpeg(200, 240), _jpeg(40, 40, seed=1)
  settings = face_crop.CropSettings(32, 1.0)
  files = face_files.FaceCropFiles(_table([("a.jpg", 200, 240), ("b.jpg", 40, 40)]), settings)
  cropped = files(data, "a.jpg")
  with Image.open(io.BytesIO(cropped)) as image:
    assert image.format == "PNG"
    pixels = np.asarray(image)
  photo, _ = image_decoding.decode_photo(data)
  expected, _ = face_crop.crop(photo, _landmarks_for(200, 240), settings)
  np.testing.assert_array_equal(pixels, expected)
  assert files(small, "b.jpg") == small


@pytest.mark.parametrize("scale", [0.5, 2.5])  # Shrunk, and enlarged as a pasted face is.
def test_a_resaved_copy_is_cut_at_its_own_scale_from_the_originals_landmarks(scale):
  data = _jpeg(200, 240)
  resave = degradations.FileResave(scale, scale, 80, 80)
  settings = face_crop.CropSettings(32, 1.0)
  files = face_files.FaceCropFiles(_table([("a.jpg", 200, 240)]), settings, resave)
  copy, _ = image_decoding.decode_photo(resave(data, "a.jpg"))
  width, height = round(200 * scale), round(240 * scale)
  assert copy.shape[:2] == (height, width)
  expected, _ = face_crop.crop(copy, _landmarks_for(width, height), settings)
  with Image.open(io.BytesIO(files(data, "a.jpg"))) as image:
    np.testing.assert_array_equal(np.asarray(image), expected)


def test_a_crops_format_is_the_files_at_the_faces_size_without_a_grid():
  data = _jpeg(200, 240, quality=77)
  files = face_files.FaceCropFiles(_table([("a.jpg", 200, 240), ("b.jpg", 40, 40)]),
                                   face_crop.CropSettings(32, 1.5))
  described = files.copy_format(data, "a.jpg")
  side = face_crop.side(face_crop.square(_landmarks_for(200, 240), 1.5))
  assert (described.format, described.jpeg_quality) == ("JPEG", 77)
  assert described.width == described.height == round(side) == round(108 * 1.25 * 1.5)
  np.testing.assert_array_equal(described.tables, jpeg_tables.NO_TABLES)
  # Without a face: the file as it is.
  small = _jpeg(40, 40)
  assert files.copy_format(small, "b.jpg") == image_decoding.read_header(small)
  resaved = face_files.FaceCropFiles(files.faces, files.settings,
                                     degradations.FileResave(0.5, 0.5, 60, 60))
  halved = resaved.copy_format(data, "a.jpg")
  assert (halved.jpeg_quality, halved.width) == (60, round(side / 2))


@pytest.mark.parametrize("enabled, margin, expected", [
    (False, 1.0, None), (True, 1.0, (48, 1.0)), (True, 0.5, (48, 0.5))])
def test_the_crop_is_at_the_models_input_size_when_enabled(enabled, margin, expected):
  data = ml_collections.ConfigDict({"image_size": 48, "face_crop": {"enabled": enabled,
                                                                    "margin": margin}})
  settings = face_crop.settings_of(data)
  assert (settings and (settings.size, settings.margin)) == expected
  assert face_crop.settings_of(ml_collections.ConfigDict({"image_size": 48})) is None


def _folder_config(root, data_dir, size=32, margin=1.0):
  """A tiny folder dataset (train/valid/test, real and fake), 2 photos per class and
  split, one per split too small for a face; face crops on."""
  for split in ("train", "valid", "test"):
    for label in ("real", "fake"):
      folder = root / split / label
      folder.mkdir(parents=True)
      for i, width in enumerate((160, 50 if label == "fake" else 120)):
        (folder / f"{label}{i}.jpg").write_bytes(_jpeg(width, width + 20, seed=i))
  config = default.get_config("tiny")
  config.data.name = "image_folder"
  config.data.manual_dir = str(root)
  config.data.data_dir = data_dir
  config.data.image_size = size
  config.data.face_crop.enabled = True
  config.data.face_crop.margin = margin
  return config


def test_faces_are_found_once_per_prepared_dataset_and_files_without_one_kept_whole(
    detector, tmp_path):
  config = _folder_config(tmp_path / "photos", str(tmp_path / "tfds"))
  first = input_pipeline.load_data(config, cache="memory")
  assert detector.calls == 12
  builder = datasets.prepare(config.data)
  summary_path = os.path.join(builder.data_dir, face_files.LANDMARKS_DIR,
                              faces.settings_key() + ".json")
  with open(summary_path) as f:
    summary = json.load(f)
  assert (summary["files"], summary["faces_found"], summary["kept_whole"]) == (12, 9, 3)
  # Another run, another crop margin: the faces are read back, not found again.
  again = input_pipeline.load_data(_folder_config_same(config, margin=0.6), cache="memory")
  assert detector.calls == 12
  train = first["train"]
  for i, path in enumerate(train.paths):
    with open(os.path.join(config.data.manual_dir, path), "rb") as f:
      photo, original = image_decoding.decode_photo(f.read())
    if photo.shape[1] < 60:  # Kept whole: resized as without face crops.
      assert train.formats[i] == original
      continue
    expected, corners = face_crop.crop(photo, _landmarks_for(*photo.shape[1::-1]),
                                       face_crop.CropSettings(32, 1.0))
    np.testing.assert_array_equal(train.images[i], expected)
    assert train.formats[i].width == round(face_crop.side(corners))
    assert train.formats[i].format == "JPEG"
    assert not np.array_equal(again["train"].images[i], train.images[i])


def _folder_config_same(config, margin):
  changed = config.copy_and_resolve_references()
  changed.data.face_crop.margin = margin
  return changed


def test_streamed_and_memory_splits_hold_the_same_crops(detector, tmp_path):
  config = _folder_config(tmp_path / "photos", str(tmp_path / "tfds"))
  memory = input_pipeline.load_data(config, cache="memory")["validation"]
  streamed = input_pipeline.load_data(config, cache="stream")["validation"]
  positions = np.arange(len(memory))
  np.testing.assert_array_equal(streamed.take(positions), memory.images)
  assert streamed.take_formats(positions) == list(memory.formats)


def test_the_feature_cache_key_names_the_crop_and_the_detector(detector, tmp_path):
  config = _folder_config(tmp_path / "photos", str(tmp_path / "tfds"))
  config.model = cooccurrence.get_config().model
  data = input_pipeline.load_data(config, cache="stream")
  key = feature_cache.cache_key(config, models.create_model(config.model), data)
  assert key["face_crop"] == {"margin": 1.0, "detector": faces.settings_key()}
  config.data.face_crop.enabled = False
  plain = feature_cache.cache_key(config, models.create_model(config.model), data)
  assert "face_crop" not in plain
