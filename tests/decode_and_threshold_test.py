"""decode_files for a grayscale run (one channel, uint8 images, the tables' own dtype) with
each failure's message whole; evaluate's validation threshold within the run's cap on
real images called fake; predict's distances, and a run that recorded no training domain."""

import dataclasses
import io
import os
import re
import types

import ml_collections
import numpy as np
import pytest
from PIL import Image

from fakeface_jax import classes
from fakeface_jax.data import image_decoding
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import jpeg_tables
from fakeface_jax.evaluation import split_reports
from fakeface_jax.serving import inference
from fakeface_jax.serving import scoring

SIZE = 16


def gray_predictor():
  """What decode_files reads of a Predictor, for a grayscale 16 px run."""
  return types.SimpleNamespace(
      grayscale=True, image_size=SIZE, native_crop=False,
      decode=lambda data: image_decoding.decode_with_format(data, SIZE, True, False))


def _write(path, fmt, seed):
  array = np.random.default_rng(seed).integers(0, 256, (20, 28, 3), np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt)
  with open(path, "wb") as f:
    f.write(buffer.getvalue())
  return buffer.getvalue()


def test_a_grayscale_run_decodes_one_channel_and_names_each_failure_whole(tmp_path):
  png = _write(tmp_path / "a.png", "PNG", 0)
  jpeg = _write(tmp_path / "c.jpg", "JPEG", 1)
  (tmp_path / "d.jpg").write_bytes(b"not  an   image")
  paths = [str(tmp_path / n) for n in ("a.png", "b.png", "c.jpg", "d.jpg")]
  files = inference.decode_files(gray_predictor(), paths, num_threads=2)
  assert files.images.shape == (4, SIZE, SIZE, 1) and files.images.dtype == np.uint8
  assert files.jpeg_tables.shape == (4, 2, 8, 8)
  assert files.jpeg_tables.dtype == jpeg_tables.TABLES_DTYPE
  for k, data in ((0, png), (2, jpeg)):
    image, image_format = image_decoding.decode_with_format(data, SIZE, True, False)
    np.testing.assert_array_equal(files.images[k], image)
    np.testing.assert_array_equal(files.jpeg_tables[k], image_format.grid_tables(SIZE, False))
    assert files.formats[k] == image_format and files.errors[k] is None
  assert files.errors[1] == (
      f"FileNotFoundError: [Errno 2] No such file or directory: '{paths[1]}'")
  with pytest.raises(image_decoding.ImageDecodeError) as raised:
    image_decoding.decode_with_format(b"not  an   image", SIZE, True, False)
  # The message names an in-memory buffer by its address, which differs call to call.
  expected = f"ImageDecodeError: {' '.join(str(raised.value).split())}"
  assert re.sub("0x[0-9a-f]+", "", files.errors[3]) == re.sub("0x[0-9a-f]+", "", expected)
  assert "  " not in files.errors[3] and os.path.basename(paths[3]) not in files.errors[1]


class Validation:
  """What choose_threshold reads of a split: labels, and all its images and tables."""

  def __init__(self, labels):
    self.labels = np.asarray(labels)

  def __len__(self):
    return len(self.labels)

  def take_batch(self, positions):
    return np.zeros((len(positions), 2, 2, 3), np.uint8), None


@pytest.mark.parametrize("cap, fake_reals", [(1.0, 1), (0.0, 0)])
def test_the_validation_threshold_keeps_the_runs_real_false_positive_cap(cap, fake_reals):
  # The best balanced accuracy calls one real of four fake; a cap of 0 forbids that.
  labels = [classes.FAKE] * 4 + [classes.REAL] * 4
  p_fake = np.array([0.9, 0.8, 0.7, 0.6, 0.65, 0.2, 0.1, 0.05])
  predictor = types.SimpleNamespace(
      p_fake=lambda images, tables: p_fake,
      config=ml_collections.ConfigDict({"max_real_fpr": cap}))
  threshold, _ = split_reports.choose_threshold(predictor, Validation(labels))
  assert int(np.sum(p_fake[4:] >= threshold)) == fake_reals


def test_predict_rounds_distances_to_four_places_and_a_run_without_a_domain_has_none(
    learned_run, tmp_path):
  predictor = inference.load_run(learned_run[0])
  paths = [str(tmp_path / f"{k}.jpg") for k in range(3)]
  for k, path in enumerate(paths):
    _write(path, "JPEG", 10 + k)
  rows = scoring.predict_files(predictor, paths)
  distances = [r["feature_distance"] for r in rows]
  assert all(d == round(d, 4) for d in distances)
  assert any(d != round(d, 3) for d in distances)  # Four places, not fewer.
  # A run trained before domains were recorded: no distance, and its split report
  # still counts the warnings of each image's format.
  bare = dataclasses.replace(predictor, training_domain=None)
  assert [r["feature_distance"] for r in scoring.predict_files(bare, paths)] == [None] * 3
  data = input_pipeline.load_data(predictor.config, cache="memory")["test"]
  report = split_reports.split_report(bare, data, threshold=0.5)
  formats = data.take_formats(np.arange(len(data)))
  assert report["warned"] == sum(bool(bare.warnings(f, None)) for f in formats)
