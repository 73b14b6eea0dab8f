"""Tests of what a run records about its training data, predict's warnings and format
columns, and the cross-dataset report."""

import csv
import io
import os

import numpy as np
import pytest
from PIL import Image
from PIL import JpegImagePlugin

from fakeface_jax import classes
from fakeface_jax.data import datasets
from fakeface_jax.data import degradations
from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables
from fakeface_jax import errors
from fakeface_jax.evaluation import cross_dataset
from fakeface_jax.serving import domain
from fakeface_jax.serving import inference
from fakeface_jax.serving import predict
from fakeface_jax.serving import scoring


@pytest.fixture(scope="module")
def predictor(learned_run):
  return inference.load_run(learned_run[0])


@pytest.fixture(scope="module")
def test_folder(predictor, tmp_path_factory):
  """The run's test images as files, in real/ and fake/ subfolders."""
  folder = tmp_path_factory.mktemp("cross") / "test_split"
  source = datasets.data_source(datasets.prepare(predictor.config.data), "test")
  for i in range(len(source)):
    record = source[i]
    os.makedirs(folder / classes.NAMES[record["label"]], exist_ok=True)
    (folder / classes.NAMES[record["label"]] / f"{i:04d}.jpg").write_bytes(record["image"])
  return folder


def _format(**fields) -> image_decoding.ImageFormat:
  defaults = {"format": "JPEG", "width": 32, "height": 32, "mode": "RGB",
              "jpeg_quality": 80, "tables": jpeg_tables.standard_tables(80)}
  return image_decoding.ImageFormat(**{**defaults, **fields})


def test_training_records_what_its_images_were(predictor):
  known = predictor.training_domain
  # The built-in data: 32 px JPEGs in RGB, each encoded at a quality in [70, 95].
  assert (known.formats, known.modes, known.min_side, known.max_side) == (
      ["JPEG"], ["RGB"], 32, 32)
  assert 70 <= known.jpeg_qualities[0] < known.jpeg_qualities[1] <= 95
  assert known.grid_share == 1.0
  quantiles = known.validation_distances
  assert known.distance_cutoff == quantiles[str(domain.CUTOFF_QUANTILE)]
  assert quantiles["0.5"] < known.distance_cutoff <= quantiles["1.0"]


@pytest.mark.parametrize("fields, expected", [
    ({}, []),
    ({"width": 16, "height": 16}, ["upscaled", "size"]),
    ({"width": 64}, ["size"]),
    ({"format": "PNG", "jpeg_quality": None, "tables": jpeg_tables.NO_TABLES}, ["format"]),
    ({"mode": "L"}, ["mode"]),
    ({"jpeg_quality": 50, "tables": jpeg_tables.standard_tables(50)}, ["jpeg_quality"]),
])
def test_each_format_warning_has_its_cause(fields, expected):
  known = domain.TrainingDomain(
      formats=["JPEG"], modes=["RGB"], min_side=32, max_side=32, jpeg_qualities=[70, 95],
      grid_share=1.0, embedding_mean=np.zeros(2), embedding_scale=np.ones(2),
      distance_cutoff=2.0, validation_distances={})
  assert domain.image_warnings(known, _format(**fields), 1.0, 32, False) == expected


def test_grid_and_feature_warnings():
  known = domain.TrainingDomain(
      formats=["JPEG"], modes=["RGB"], min_side=32, max_side=64, jpeg_qualities=[70, 95],
      grid_share=1.0, embedding_mean=np.zeros(2), embedding_scale=np.ones(2),
      distance_cutoff=2.0, validation_distances={})
  resized = _format(width=64, height=64)  # A JPEG read at 32 px: its grid moved.
  assert domain.image_warnings(known, resized, 1.0, 32, reads_jpeg_tables=True) == [
      "jpeg_grid"]
  # Models that do not read the grid are not warned about it.
  assert domain.image_warnings(known, resized, 1.0, 32, reads_jpeg_tables=False) == []
  assert domain.image_warnings(known, _format(), 2.5, 32, False) == ["features"]
  # Without a recorded domain (older runs) only the image's own size is checked.
  assert domain.image_warnings(None, _format(width=8), 99.0, 32, True) == ["upscaled"]


def test_embedding_distance_flags_images_unlike_the_training_ones(predictor, test_folder):
  rows = scoring.predict_files(predictor, inference.find_images([str(test_folder)]))
  distances = np.array([r["feature_distance"] for r in rows])
  # Images of the training distribution: few beyond the validation-calibrated cut-off.
  assert np.mean(distances > predictor.training_domain.distance_cutoff) <= 0.1
  # Patterns no photo has: blank white, and a one-pixel checkerboard.
  white = np.full((32, 32, 3), 255, np.uint8)
  checkerboard = np.repeat((np.indices((32, 32)).sum(0) % 2 * 255)[..., None], 3, -1)
  _, far = predictor.score(np.stack([white, checkerboard]).astype(np.uint8))
  assert np.all(far > 2 * predictor.training_domain.distance_cutoff), far


def test_predict_writes_format_columns_and_warnings(predictor, tmp_path):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (32, 32, 3), np.uint8)
  Image.fromarray(image).save(tmp_path / "q75.jpg", quality=75)
  Image.fromarray(image).save(tmp_path / "q30.jpg", quality=30)
  Image.fromarray(image).save(tmp_path / "big.png")
  Image.fromarray(image[:16, :16]).save(tmp_path / "small.jpg", quality=75)
  rows = scoring.predict_files(predictor, inference.find_images([str(tmp_path)]))
  output = tmp_path / "preds.csv"
  predict.write_rows(rows, str(output), "csv")
  with open(output) as f:
    reader = csv.DictReader(f)
    read = {os.path.basename(r["path"]): r for r in reader}
  assert tuple(reader.fieldnames) == scoring.COLUMNS
  assert scoring.COLUMNS[:9] == ("path", "face", "x0", "y0", "x1", "y1", "face_score",
                                 "p_fake", "prediction")
  assert scoring.COLUMNS[-1] == "error"
  assert (read["q75.jpg"]["format"], read["q75.jpg"]["width"], read["q75.jpg"]["height"],
          read["q75.jpg"]["jpeg_quality"], read["q75.jpg"]["jpeg_grid"]) == (
              "JPEG", "32", "32", "75", "aligned")
  assert "jpeg_quality" in read["q30.jpg"]["warnings"].split(";")
  assert read["big.png"]["jpeg_quality"] == "" and read["big.png"]["jpeg_grid"] == "none"
  assert "format" in read["big.png"]["warnings"].split(";")
  assert read["small.jpg"]["jpeg_grid"] == "moved"
  assert {"upscaled", "size"} <= set(read["small.jpg"]["warnings"].split(";"))


def test_cross_dataset_report_with_real_only_and_fake_only_folders(predictor, test_folder):
  folders = cross_dataset.parse_folders(
      [str(test_folder), str(test_folder / "real"), f"{test_folder / 'fake'}:fake"])
  assert [f.name for f in folders] == ["test_split", "real", "fake:fake"]
  rows = cross_dataset.report(predictor, folders, ["clean", "halved_q90"], faces=False)
  assert [(r["folder"], r["shift"]) for r in rows] == [
      (f.name, s) for f in folders for s in ("clean", "halved_q90")]
  # Expected figures are counted from predict's rows for the same files.
  for folder, row in zip(folders, rows[::2]):
    predicted = scoring.predict_files(predictor, folder.paths)
    is_fake = np.array([r["prediction"] == "fake" for r in predicted])
    warned = np.array([bool(r["warnings"]) for r in predicted])
    wrong = is_fake != (folder.labels == classes.FAKE)
    assert row["images"] == len(folder.paths)
    assert row["accuracy"] == pytest.approx(1 - wrong.mean())
    assert row["silent_error_rate"] == pytest.approx(np.mean(wrong & ~warned))
    assert row["warned"] == pytest.approx(warned.mean())
  real_only, fake_only = rows[2], rows[4]
  assert real_only["fake"] == 0 and np.isnan(real_only["roc_auc"])
  assert np.isnan(real_only["fake_recall"]) and real_only["real"] > 0
  assert real_only["balanced_accuracy"] == 1 - real_only["real_false_positive_rate"]
  assert fake_only["real"] == 0 and np.isnan(fake_only["real_false_positive_rate"])
  assert fake_only["balanced_accuracy"] == fake_only["fake_recall"]
  # Halved, every 32 px image is smaller than the model's input: all warned, none silent.
  for row in rows[1::2]:
    assert row["warned"] == 1.0 and row["silent_error_rate"] == 0.0


def test_cross_dataset_report_writes_table_and_figure(predictor, test_folder, tmp_path):
  rows = cross_dataset.report(predictor, cross_dataset.parse_folders(
      [f"photos={test_folder / 'real'}:real"]), faces=False)
  assert rows[0]["folder"] == "photos"
  paths = cross_dataset.write(rows, str(tmp_path / "cross_dataset"))
  assert all(os.path.getsize(p) > 0 for p in paths)
  table = open(paths[1]).read()
  assert "silent_error_rate" in table and "| - |" in table  # AUC of one class: "-".


def test_folders_are_named_by_the_shortest_tail_that_tells_them_apart(tmp_path):
  for parent in ("a", "b"):
    for name in classes.NAMES:
      (tmp_path / parent / "valid" / name).mkdir(parents=True)
      Image.new("RGB", (8, 8)).save(tmp_path / parent / "valid" / name / "x.png")
  folders = cross_dataset.parse_folders(
      [str(tmp_path / "a" / "valid"), str(tmp_path / "b" / "valid"),
       f"{tmp_path / 'b' / 'valid' / 'real'}:real"])
  assert [f.name for f in folders] == ["a/valid", "b/valid", "real:real"]
  assert list(folders[2].labels) == [classes.REAL]


def test_folder_of_unknown_class_is_refused_in_one_line(tmp_path):
  (tmp_path / "photos").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "a.png")
  with pytest.raises(errors.UserError, match=r"name it .*photos:real or .*photos:fake"):
    cross_dataset.parse_folder(str(tmp_path / "photos"))
  with pytest.raises(errors.UserError, match="does not exist"):
    cross_dataset.parse_folder(str(tmp_path / "missing"))
  with pytest.raises(errors.UserError, match="unknown shift 'q10'"):
    cross_dataset.report(None, [], ["q10"])


def test_resave_changes_format_as_asked():
  buffer = io.BytesIO()
  Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, format="PNG")
  halved = image_decoding.read_header(degradations.resave(buffer.getvalue(), 90, 0.5))
  assert (halved.format, halved.width, halved.height, halved.jpeg_quality) == (
      "JPEG", 20, 15, 90)


def _encoded(width, height, **save) -> bytes:
  rng = np.random.default_rng(0)
  small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).save(
      buffer, **save)
  return buffer.getvalue()


@pytest.mark.parametrize("width, height, save, expected", [
    # A ciplab original (600 px, q95, 4:4:4) becomes its ciplab_256 file.
    (600, 600, {"format": "JPEG", "quality": 95, "subsampling": 0}, (256, 256, 95, 0)),
    # Its own quality held within the training images' [60, 95], its subsampling kept.
    (640, 480, {"format": "JPEG", "quality": 40, "subsampling": 2}, (256, 192, 60, 2)),
    (480, 640, {"format": "JPEG", "quality": 80, "subsampling": 1}, (192, 256, 80, 1)),
    # No JPEG: the highest training quality, every colour sample kept.
    (1024, 1024, {"format": "PNG"}, (256, 256, 95, 0)),
])
def test_a_larger_file_is_made_as_the_datasets_made_theirs_from_originals(
    width, height, save, expected):
  known = domain.TrainingDomain(
      formats=["JPEG"], modes=["RGB"], min_side=78, max_side=256, jpeg_qualities=[60, 95],
      grid_share=0.4, embedding_mean=np.zeros(2, np.float32),
      embedding_scale=np.ones(2, np.float32), distance_cutoff=1.0, validation_distances={})
  data = _encoded(width, height, **save)
  made = known.as_training_file(data)
  with Image.open(io.BytesIO(made)) as image:
    read = image_decoding.read_format(image)
    assert (image.width, image.height, read.jpeg_quality,
            JpegImagePlugin.get_sampling(image)) == expected
    assert image.format == "JPEG" and known.holds_size(read)
  # Exactly PIL's Lanczos and JPEG at those settings, as ciplab_256 was made.
  with Image.open(io.BytesIO(data)) as image:
    buffer = io.BytesIO()
    image.convert("RGB").resize(expected[:2], Image.Resampling.LANCZOS).save(
        buffer, format="JPEG", quality=expected[2], subsampling=expected[3])
  assert made == buffer.getvalue()
