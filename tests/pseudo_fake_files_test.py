"""Pseudo-fake files: each fake replaced by a pseudo-fake of a real file of its split,
encoded as that file was; reals untouched; training on them with no real fake."""

import io

import numpy as np
import pytest
from PIL import Image

from conftest import make_ciplab
from conftest import make_tiny_config
from fakeface_jax import classes
from fakeface_jax import config_checks
from fakeface_jax.data import datasets
from fakeface_jax.data import image_decoding
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import pseudo_fake_files
from fakeface_jax.data import selection
from fakeface_jax import errors
from fakeface_jax.training import train


@pytest.fixture(scope="module")
def download(tmp_path_factory):
  root = tmp_path_factory.mktemp("pseudo_download")
  make_ciplab(root, num_real=12, fakes_per_difficulty=4, size=32)
  return str(root)


def _config(data_dir, download, kinds=("nearest", "transposed", "self_blend")):
  config = make_tiny_config(data_dir)
  config.data.name, config.data.manual_dir = "ciplab", download
  config.data.image_size = 32
  config.data.validation_fraction = 0.2
  config.data.pseudo_fakes.kinds = kinds
  return config


def _records(config):
  builder = datasets.prepare(config.data)
  source = datasets.data_source(builder, datasets.role_splits(builder)["train"])
  return builder, [(record["image"], *selection.record_fields(record)[:2])
                   for record in source]


def _pixels(data: bytes) -> np.ndarray:
  return image_decoding.decode_photo(data)[0].astype(np.float32)


def test_fakes_become_pseudo_fakes_of_real_files_encoded_as_those_were(data_dir, download):
  config = _config(data_dir, download)
  builder, records = _records(config)
  transform = input_pipeline.file_transform(config.data, builder)
  assert isinstance(transform, pseudo_fake_files.PseudoFakeFiles)
  reals = {data for data, label, _ in records if label == classes.REAL}
  fakes = 0
  for data, label, path in records:
    out = transform(data, path)
    if label == classes.REAL:
      assert out == data and transform.origin(path) is None
      continue
    fakes += 1
    real = transform.origin(path)
    assert real in reals
    # Made of that real image (the random test images share nothing with each other).
    assert (np.abs(_pixels(out) - _pixels(real)).mean()
            < 0.7 * np.abs(_pixels(out) - _pixels(data)).mean())
    made, of_real = image_decoding.read_header(out), image_decoding.read_header(real)
    assert made == of_real  # Format, size, mode and JPEG quality.
    np.testing.assert_array_equal(made.tables, of_real.tables)
    assert transform.copy_format(data, path) == made
    # The same file gets the same pseudo-fake from a transform made anew.
    assert input_pipeline.file_transform(config.data, builder)(data, path) == out
  assert fakes == 12


def test_a_resaved_copy_of_pseudo_fakes_is_described_as_written(data_dir, download):
  config = _config(data_dir, download, kinds=("bilinear",))
  config.data.resave.quality, config.data.resave.scale = (60, 80), (0.5, 0.8)
  builder, records = _records(config)
  transform = input_pipeline.file_transform(config.data, builder)
  for data, _, path in records[:6] + records[-6:]:
    out = transform(data, path)
    written = image_decoding.read_header(out)
    assert transform.copy_format(data, path) == written
    assert written.width < 32 and written.format == "JPEG"


def test_png_files_give_png_pseudo_fakes():
  pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  encoded = pseudo_fake_files.encode_like(pixels, buffer.getvalue())
  assert image_decoding.read_header(encoded).format == "PNG"
  np.testing.assert_array_equal(_pixels(encoded), pixels)  # Lossless.


def test_training_on_reals_and_pseudo_fakes_alone_runs_end_to_end(data_dir, download,
                                                                   tmp_path):
  config = _config(data_dir, download)
  config.num_epochs, config.batch_size = 2, 4
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["num_train"] > 0 and 0 <= results["test_accuracy"] <= 1
  assert np.isfinite(results["test_loss"])


@pytest.mark.parametrize("change, message", [
    ({"kinds": ("nearest", "upscale")}, r"config.data.pseudo_fakes: .*upscale"),
    ({"kinds": ("nearest",), "weights": (1.0, 2.0)}, r"config.data.pseudo_fakes: .*weights"),
    ({"face_crop": True}, "pseudo_fakes and config.data.face_crop cannot be combined"),
])
def test_bad_pseudo_fake_settings_are_refused_in_one_line(data_dir, download, change,
                                                           message):
  config = _config(data_dir, download)
  if change.pop("face_crop", False):
    config.data.face_crop.enabled = True
  for key, value in change.items():
    config.data.pseudo_fakes[key] = value
  with pytest.raises(errors.ConfigError, match=message):
    config_checks.check_config(config)
