"""Every output row belongs to its own file, wherever unreadable files fall among them.

A folder is drawn as a list of entries: an image from a pool of distinct images (each
of its own content, format, size and JPEG tables, so a row shifted onto a neighbour
shows), or a bad file (corrupt, truncated, empty, missing) at any position: first, last,
on a batch edge, several in a row, all of them. Each row of `predict`, each slot of
`decode_files`, and each figure of the cross-dataset report (which `evaluate --folder`
writes) must equal what the same file gives when it is scored alone, and the error rows
must be exactly the bad files.
"""

import copy
import dataclasses
import functools
import io
import os
import tempfile

import jax
import ml_collections
import numpy as np
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

from fakeface_jax import classes
from fakeface_jax.data import datasets
from fakeface_jax.data import jpeg_tables
from fakeface_jax.data import preprocessing
from fakeface_jax import errors
from fakeface_jax.evaluation import cross_dataset
from fakeface_jax import models
from fakeface_jax.serving import domain
from fakeface_jax.serving import inference
from fakeface_jax.serving import scoring

# Test-split images of each class (the run's own kind of file), then files of other
# formats and sizes, which get other warnings, format fields and JPEG grids.
NUM_RECORDS = 8
FORMAT_SPECS = [
    # (extension, width, height, PIL mode, save arguments, content)
    ("png", 32, 32, "RGB", {}, "noise"),
    ("jpg", 48, 40, "RGB", {"quality": 80}, "noise"),
    ("jpg", 40, 48, "L", {"quality": 85}, "noise"),
    ("png", 16, 16, "RGB", {}, "noise"),
    ("jpg", 32, 32, "RGB", {"quality": 30}, "noise"),
    ("png", 32, 32, "RGBA", {}, "noise"),
    ("jpg", 32, 32, "RGB", {"quality": 90, "subsampling": 0}, "noise"),
    ("png", 32, 32, "RGB", {}, "white"),
]
# What each of FORMAT_SPECS is against the learned run's training images (32 px RGB
# JPEGs of qualities within 70-95, read on their own grid, by a model that does not read
# JPEG tables): (format, jpeg_quality, jpeg_grid, warnings other than "features").
FORMAT_EXPECTED = [
    ("PNG", None, "none", ["format"]),
    ("JPEG", 80, "moved", ["size"]),
    ("JPEG", 85, "moved", ["size", "mode"]),
    ("PNG", None, "none", ["upscaled", "size", "format"]),
    ("JPEG", 30, "aligned", ["jpeg_quality"]),
    ("PNG", None, "none", ["format", "mode"]),
    ("JPEG", 90, "aligned", []),
    ("PNG", None, "none", ["format"]),
]
POOL_SIZE = NUM_RECORDS + len(FORMAT_SPECS)
BAD_KINDS = ("corrupt", "truncated", "empty", "missing")
# Fields of a row that must come from the row's own file.
EXACT_FIELDS = ("warnings", "format", "width", "height", "jpeg_quality",
                "jpeg_grid", "error")

entries = st.lists(st.one_of(st.sampled_from(BAD_KINDS), st.integers(0, POOL_SIZE - 1)),
                   min_size=1, max_size=10)


def encode(spec, seed):
  ext, width, height, mode, kwargs, content = spec
  if content == "white":
    array = np.full((height, width, 3), 255, np.uint8)
  else:
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array).convert(mode).save(
      buffer, format={"jpg": "JPEG", "png": "PNG"}[ext], **kwargs)
  return ext, buffer.getvalue()


@pytest.fixture(scope="module")
def predictor(learned_run):
  return inference.load_run(learned_run[0])


@pytest.fixture(scope="module")
def pool(predictor):
  """(extension, bytes, label) of distinct images: test-split records of both classes,
  then the other formats (labelled alternately)."""
  source = datasets.data_source(datasets.prepare(predictor.config.data), "test")
  records = [source[i] for i in range(len(source))]
  fakes = [r for r in records if r["label"] == classes.FAKE][:NUM_RECORDS // 2]
  reals = [r for r in records if r["label"] == classes.REAL][:NUM_RECORDS // 2]
  items = [("jpg", r["image"], int(r["label"])) for pair in zip(fakes, reals) for r in pair]
  items += [(*encode(spec, seed), seed % 2) for seed, spec in enumerate(FORMAT_SPECS)]
  assert len(items) == POOL_SIZE
  return items


def bad_bytes(kind, pool):
  return {"corrupt": b"\xff\xd8\xff\xe0 this is not a jpeg" * 3, "empty": b"",
          "truncated": pool[0][1][:len(pool[0][1]) // 2]}[kind]


def write_folder(root, entries, pool):
  """The entries as files named in their order; the paths in that order."""
  paths = []
  for k, entry in enumerate(entries):
    if isinstance(entry, int):
      ext, data, _ = pool[entry]
      path = os.path.join(root, f"{k:02d}_pool{entry}.{ext}")
    else:
      path, data = os.path.join(root, f"{k:02d}_{entry}.jpg"), None
      if entry != "missing":
        data = bad_bytes(entry, pool)
    if data is not None:
      with open(path, "wb") as f:
        f.write(data)
    paths.append(path)
  return paths


def alone_rows(predictor, pool):
  """Each pool image's row, and its decoding, when it is the only file scored."""
  with tempfile.TemporaryDirectory() as root:
    paths = write_folder(root, list(range(POOL_SIZE)), pool)
    rows = [scoring.predict_files(predictor, [path])[0] for path in paths]
    decoded = [inference.decode_files(predictor, [path]) for path in paths]
  p_fake = np.array([r["p_fake"] for r in rows])
  # Distinct images score distinctly, so a row shifted onto a neighbour shows.
  gaps = np.diff(np.sort(p_fake))
  assert gaps.min() > 1e-5, np.sort(p_fake)
  return rows, decoded


@pytest.fixture(scope="module")
def resized(predictor):
  """batch size -> the predictor compiled for it (once per module)."""
  compiled = {}

  def with_batch_size(batch_size):
    if batch_size not in compiled:
      compiled[batch_size] = dataclasses.replace(predictor, batch_size=batch_size)
    return compiled[batch_size]

  return with_batch_size


def check_rows(rows, paths, entries, alone, threshold, tolerance=1e-6):
  assert [r["path"] for r in rows] == paths
  assert [r["error"] is not None for r in rows] == [not isinstance(e, int) for e in entries]
  for row, entry in zip(rows, entries):
    if not isinstance(entry, int):
      assert ("FileNotFoundError" if entry == "missing" else "ImageDecodeError") in (
          row["error"]), row
      assert all(row[k] is None for k in scoring.COLUMNS if k not in ("path", "error"))
      continue
    own = alone[entry]
    assert {k: row[k] for k in EXACT_FIELDS} == {k: own[k] for k in EXACT_FIELDS}, (
        row["path"])
    assert row["p_fake"] == pytest.approx(own["p_fake"], abs=tolerance), row["path"]
    # Called at the predictor's own threshold, p >= threshold meaning fake.
    assert row["prediction"] == ("fake" if row["p_fake"] >= threshold else "real")
    if own["feature_distance"] is None:
      assert row["feature_distance"] is None
    else:
      assert row["feature_distance"] == pytest.approx(own["feature_distance"], abs=2e-4)


def check_decoded(files, entries, decoded):
  for k, entry in enumerate(entries):
    if not isinstance(entry, int):
      assert files.errors[k] is not None and files.formats[k] is None
      assert not files.images[k].any() and not files.jpeg_tables[k].any()
      continue
    own = decoded[entry]
    assert files.errors[k] is None and files.formats[k] == own.formats[0]
    np.testing.assert_array_equal(files.images[k], own.images[0])
    np.testing.assert_array_equal(files.jpeg_tables[k], own.jpeg_tables[0])


@pytest.fixture(scope="module")
def cnn_reference(predictor, pool):
  return alone_rows(predictor, pool)


def test_each_file_alone_gets_its_own_format_fields_and_warnings(predictor, cnn_reference):
  alone, decoded = cnn_reference
  cutoff = predictor.training_domain.distance_cutoff
  for row in alone[:NUM_RECORDS]:  # The run's own kind of file.
    assert (row["format"], row["width"], row["height"], row["jpeg_grid"]) == (
        "JPEG", 32, 32, "aligned")
  for row, spec, (fmt, quality, grid, warned) in zip(alone[NUM_RECORDS:], FORMAT_SPECS,
                                                      FORMAT_EXPECTED):
    assert (row["format"], row["width"], row["height"], row["jpeg_quality"],
            row["jpeg_grid"]) == (fmt, spec[1], spec[2], quality, grid)
    assert [w for w in row["warnings"].split(";") if w and w != "features"] == warned
  for row in alone:
    assert ("features" in row["warnings"].split(";")) == (row["feature_distance"] > cutoff)
  assert "features" in alone[-1]["warnings"]  # Blank white: no photo is like it.
  # Each distance is the image's own: the mean squared standardised distance of the
  # model's embedding (its last dense layer's input) from the training images'.
  images = np.stack([d.images[0] for d in decoded])
  _, embedding = domain.with_embedding(lambda: predictor.model.apply(
      {"params": predictor.params}, preprocessing.rescale(images), train=False))
  known = predictor.training_domain
  by_hand = np.mean(((np.asarray(embedding) - known.embedding_mean)
                     / known.embedding_scale) ** 2, axis=1)
  np.testing.assert_allclose([r["feature_distance"] for r in alone], by_hand, atol=2e-4,
                             rtol=1e-4)


EDGE_CASES = [  # (entries, batch size, threshold rank): bad files first, last, on batch
    # edges, several in a row, all bad; thresholds low, middle and high.
    (["corrupt", 0, 1, 2, 3], 2, 3), ([0, 1, 2, 3, "truncated"], 2, 8),
    ([0, 1, "empty", 2, 3, 4, 5], 3, 13), ([0, 1, 2, "missing", 3, 4, 5], 3, 2),
    ([8, "corrupt", "empty", "truncated", 9, 10, 1, 2], 3, 7),
    (["missing", "empty"], 3, 12), ([11, 12, 13, 14, 15, 4, 5], 2, 1),
    ([4, "corrupt"], 64, 6),
]


def threshold_at(alone, rank):
  """A threshold at one pool image's P(fake) exactly (that image is then fake)."""
  return float(np.sort([r["p_fake"] for r in alone])[rank])


@settings(max_examples=25)
@given(entries=entries, batch_size=st.sampled_from([1, 2, 3, 4, 64]),
       threshold_rank=st.integers(0, POOL_SIZE - 1))
@example(*EDGE_CASES[0])
@example(*EDGE_CASES[1])
@example(*EDGE_CASES[2])
@example(*EDGE_CASES[3])
@example(*EDGE_CASES[4])
@example(*EDGE_CASES[5])
@example(*EDGE_CASES[6])
@example(*EDGE_CASES[7])
def test_predict_rows_stay_with_their_files_around_unreadable_ones(
    resized, pool, cnn_reference, entries, batch_size, threshold_rank):
  alone, decoded = cnn_reference
  scorer = copy.copy(resized(batch_size))
  scorer.threshold = threshold_at(alone, threshold_rank)
  with tempfile.TemporaryDirectory() as root:
    paths = write_folder(root, entries, pool)
    # A folder lists its files in order: a missing one is simply not there.
    assert inference.find_images([root]) == [p for p in paths if os.path.exists(p)]
    check_rows(scoring.predict_files(scorer, paths), paths, entries, alone,
               scorer.threshold)
    check_decoded(inference.decode_files(scorer, paths, num_threads=3), entries, decoded)


# The DCT residual histograms count magnitudes against fixed steps, so a last-bit
# difference between an image's place in one batch and in another can move a count:
# about 5e-4 in P(fake) at worst seen. Another image's tables move it by 7e-3 or more.
TABLE_READER_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def table_reader(predictor, pool):
  """The run's config with a model that reads each image's JPEG tables (DCT residuals
  on its own grid), initialised on the pool: its P(fake) depends on the tables, so a
  table handed to the wrong image changes that image's score."""
  config = ml_collections.ConfigDict(predictor.config.to_dict())
  config.model = ml_collections.ConfigDict({
      "name": "cooccurrence", "truncation": 2, "color_spaces": ("rgb",),
      "cross_band": False, "jpeg_quality": 75, "jpeg_features": ("dctr",),
      "regions": (1.0,), "hidden": (), "num_classes": 2, "num_sources": 1})
  model = models.create_model(config.model)
  assert model.reads_jpeg_tables
  with tempfile.TemporaryDirectory() as root:
    files = inference.decode_files(predictor, write_folder(root, list(range(POOL_SIZE)),
                                                           pool))
  params = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(0), preprocessing.rescale(files.images),
      jpeg_tables=files.jpeg_tables)["params"]
  reader = inference.Predictor(config, params, 0.5, 0, batch_size=3)
  # The same pixels with another image's tables score otherwise, well beyond the
  # tolerance.
  with_tables = reader.p_fake(files.images[:4], files.jpeg_tables[:4])
  swapped = reader.p_fake(files.images[:4], files.jpeg_tables[4:8])
  without = reader.p_fake(files.images[:4], np.zeros_like(files.jpeg_tables[:4]))
  assert np.abs(with_tables - without).min() > 5 * TABLE_READER_TOLERANCE
  assert np.abs(with_tables - swapped).min() > 5 * TABLE_READER_TOLERANCE
  return reader, alone_rows(reader, pool)


@settings(max_examples=8)
@given(entries=entries)
@example(["corrupt", 0, 1, 2, 3, 4])
@example([0, 1, "empty", "missing", 2, 3, 4, 6, 8])
def test_jpeg_tables_reach_the_model_with_their_own_image(table_reader, pool, entries):
  reader, (alone, decoded) = table_reader
  with tempfile.TemporaryDirectory() as root:
    paths = write_folder(root, entries, pool)
    check_rows(scoring.predict_files(reader, paths), paths, entries, alone, reader.threshold,
               TABLE_READER_TOLERANCE)
    check_decoded(inference.decode_files(reader, paths), entries, decoded)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), count=st.integers(1, 9))
def test_batched_scores_equal_each_images_own(table_reader, seed, count):
  reader, _ = table_reader  # Batches of 3: one, some or several, the last one padded.
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (count, 32, 32, 3), np.uint8)
  # Each image its own quality's tables, or none (all zero: no grid).
  tables = (np.stack([jpeg_tables.standard_tables(int(q)) for q in rng.integers(1, 101, count)])
            * rng.integers(0, 2, (count, 1, 1, 1))).astype(jpeg_tables.TABLES_DTYPE)
  together = reader.p_fake(images, tables)
  one_by_one = [reader.p_fake(images[i:i + 1], tables[i:i + 1]) for i in range(count)]
  assert together.shape == (count,)
  np.testing.assert_allclose(together, np.concatenate(one_by_one),
                             atol=TABLE_READER_TOLERANCE)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), count=st.integers(1, 9),
       batch_size=st.sampled_from([2, 3]))
def test_scores_and_distances_come_one_per_image(resized, seed, count, batch_size):
  images = np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), np.uint8)
  scorer = resized(batch_size)
  p_fake, distance = scorer.score(images)
  assert p_fake.shape == distance.shape == (count,)
  alone = [scorer.score(images[i:i + 1]) for i in range(count)]
  np.testing.assert_allclose(p_fake, [p[0] for p, _ in alone], atol=1e-6)
  np.testing.assert_allclose(distance, [d[0] for _, d in alone], rtol=1e-5)


def expected_folder_row(rows_alone, labels, threshold):
  """The cross-dataset row's figures, from each good file's own row and label."""
  p_fake = np.array([r["p_fake"] for r in rows_alone])
  labels = np.asarray(labels)
  fake = p_fake >= threshold
  is_fake = labels == classes.FAKE
  warned = np.array([bool(r["warnings"]) for r in rows_alone])
  wrong = fake != is_fake
  causes = sorted(c for r in rows_alone if r["warnings"] for c in r["warnings"].split(";"))
  pairs = [(f > r) + 0.5 * (f == r) for f in p_fake[is_fake] for r in p_fake[~is_fake]]
  precision_sum, recall_before = 0.0, 0.0
  for t in sorted(set(p_fake[is_fake]) | set(p_fake[~is_fake]), reverse=True):
    admitted = p_fake >= t
    recall = np.sum(admitted & is_fake) / max(is_fake.sum(), 1)
    precision_sum += (recall - recall_before) * np.sum(admitted & is_fake) / admitted.sum()
    recall_before = recall
  recalls = []
  if is_fake.any():
    recalls.append(np.mean(fake[is_fake]))
  if (~is_fake).any():
    recalls.append(np.mean(~fake[~is_fake]))
  return {
      "images": len(labels), "fake": int(is_fake.sum()), "real": int((~is_fake).sum()),
      "accuracy": np.mean(~wrong) if len(labels) else None,
      "real_false_positive_rate": np.mean(fake[~is_fake]) if (~is_fake).any() else None,
      "fake_recall": np.mean(fake[is_fake]) if is_fake.any() else None,
      "warned": np.mean(warned) if len(labels) else None,
      "silent_error_rate": np.mean(wrong & ~warned) if len(labels) else None,
      "roc_auc": np.mean(pairs) if pairs else None,
      # Both classes needed: a folder of fakes alone would score a trivial 1.
      "average_precision": precision_sum if pairs else None,
      "balanced_accuracy": np.mean(recalls) if recalls else None,
      "causes": causes,
  }


def check_folder_row(row, expected, unreadable):
  assert row["unreadable"] == unreadable
  for key in ("images", "fake", "real"):
    assert row[key] == expected[key], key
  for key in ("accuracy", "real_false_positive_rate", "fake_recall", "warned",
              "silent_error_rate", "roc_auc", "balanced_accuracy"):
    if expected[key] is None:
      assert np.isnan(row[key]), key
    else:
      assert row[key] == pytest.approx(expected[key], abs=1e-9), key
  if expected["average_precision"] is not None:
    assert row["average_precision"] == pytest.approx(expected["average_precision"]), row
  elif not expected["real"]:
    assert np.isnan(row["average_precision"])
  counted = sorted(cause for part in row["warnings"].split() for cause in
                   [part.rsplit(":", 1)[0]] * int(part.rsplit(":", 1)[1]))
  assert counted == expected["causes"]


@settings(max_examples=12)
@given(fake_entries=entries, real_entries=entries, threshold_rank=st.integers(0, POOL_SIZE - 1),
       batch_size=st.sampled_from([2, 3, 64]))
@example(fake_entries=["corrupt", 0, 2, 4, 6], real_entries=[1, 3, "empty", 5, 7],
         threshold_rank=8, batch_size=2)
@example(fake_entries=[0, 1, 2, 3, "truncated"], real_entries=["missing", 4, 5, 6, 7],
         threshold_rank=5, batch_size=3)
@example(fake_entries=[0, 2, 4], real_entries=["corrupt", "empty"], threshold_rank=3,
         batch_size=2)  # Every readable file fake: no AUC, and no AP either.
def test_cross_dataset_figures_count_each_file_under_its_own_label(
    resized, pool, cnn_reference, fake_entries, real_entries, threshold_rank, batch_size):
  alone, _ = cnn_reference
  # A threshold at one image's P(fake) exactly: that image is fake (p >= threshold).
  threshold = threshold_at(alone, threshold_rank)
  scorer = copy.copy(resized(batch_size))
  scorer.threshold = threshold
  with tempfile.TemporaryDirectory() as root:
    parts = {}
    for name, chosen in (("fake", fake_entries), ("real", real_entries)):
      os.makedirs(os.path.join(root, name))
      parts[name] = write_folder(os.path.join(root, name), chosen, pool)
    # Missing files cannot be in a folder listing; they are left out of it.
    kept = {name: [(p, e) for p, e in zip(parts[name], chosen) if os.path.exists(p)]
            for name, chosen in (("fake", fake_entries), ("real", real_entries))}
    listed = kept["fake"] + kept["real"]
    if not listed:  # Every file missing: no folder to report on.
      with pytest.raises(errors.UserError, match="no image files"):
        cross_dataset.parse_folder(root)
      return
    folder = cross_dataset.parse_folder(root)
    assert folder.paths == [p for p, _ in listed]
    assert list(folder.labels) == ([classes.FAKE] * len(kept["fake"])
                                   + [classes.REAL] * len(kept["real"]))
    [row] = cross_dataset.report(scorer, [folder], faces=False)
  good = [(alone[e], label) for (_, e), label in zip(listed, folder.labels)
          if isinstance(e, int)]
  expected = expected_folder_row([r for r, _ in good], [l for _, l in good], threshold)
  check_folder_row(row, expected, unreadable=sum(not isinstance(e, int) for _, e in listed))


def test_a_native_crop_run_reads_large_jpegs_on_their_own_grid(table_reader, tmp_path):
  """With data.native_crop, a JPEG at least the input's size on both sides is cropped on
  its own grid: its tables reach the model and it gets no jpeg_grid warning; one side
  too small, and it is resized, its grid moved."""
  reader, _ = table_reader
  config = ml_collections.ConfigDict(reader.config.to_dict())
  config.data.native_crop = True
  known = domain.TrainingDomain(
      formats=["JPEG", "PNG"], modes=["L", "RGB"], min_side=1, max_side=100,
      jpeg_qualities=[1, 100], grid_share=1.0,
      embedding_mean=np.zeros(1, np.float32), embedding_scale=np.ones(1, np.float32),
      distance_cutoff=np.inf, validation_distances={})
  cropper = inference.Predictor(config, reader.params, 0.5, 0, batch_size=2,
                                training_domain=known)
  cases = [  # (width, height, format, aligned)
      (48, 40, "JPEG", True), (40, 31, "JPEG", False), (32, 32, "JPEG", True),
      (31, 40, "JPEG", False), (40, 48, "PNG", False), (64, 33, "JPEG", True)]
  paths = []
  for k, (width, height, fmt, _) in enumerate(cases):
    paths.append(str(tmp_path / f"{k}.{fmt.lower()}"))
    array = np.random.default_rng(k).integers(0, 256, (height, width, 3), np.uint8)
    Image.fromarray(array).save(paths[-1], format=fmt, **(
        {"quality": 60 + k} if fmt == "JPEG" else {}))
  paths.insert(2, str(tmp_path / "bad.jpg"))
  (tmp_path / "bad.jpg").write_bytes(b"")
  files = inference.decode_files(cropper, paths)
  rows = scoring.predict_files(cropper, paths)
  assert rows[2]["error"] is not None and files.errors[2] is not None
  del rows[2], paths[2]
  ok = [k for k in range(len(paths) + 1) if k != 2]
  for k, (row, (width, height, fmt, keeps_grid)) in enumerate(zip(rows, cases)):
    tables = files.jpeg_tables[ok[k]]
    if keeps_grid:
      np.testing.assert_array_equal(tables, jpeg_tables.standard_tables(60 + k))
    else:
      assert not tables.any()
    assert row["jpeg_grid"] == ("aligned" if keeps_grid else
                                "moved" if fmt == "JPEG" else "none"), (width, height)
    assert ("jpeg_grid" in row["warnings"].split(";")) == (not keeps_grid), (width, height)
    assert row["p_fake"] == pytest.approx(
        cropper.p_fake(files.images[ok[k]][None], tables[None])[0],
        abs=TABLE_READER_TOLERANCE)
