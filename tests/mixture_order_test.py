"""Data mixtures and folds with their sources in every order: each source keeps its own
images, labels, tables, metrics, weight and folds whatever its position."""

import csv
import json
import os

import hypothesis
import ml_collections
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from conftest import make_ciplab
from conftest import make_tiny_config
from fakeface_jax import classes
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax.evaluation import metrics
from fakeface_jax.experiments import crossval
from fakeface_jax import rundir
from fakeface_jax.serving import inference
from tools import validation_cv

NAMES = ("alpha", "beta", "gamma", "delta")


class TaggedSplit:
  """A source whose every image says which source and which position it is: pixel
  (0, 0) its tag, pixel (0, 1) its position; its JPEG tables (if it has any) hold
  1000 * tag + position, and its formats are "tag/position" strings (or None)."""

  def __init__(self, tag, labels, with_tables, with_formats):
    n = len(labels)
    self.tag = tag
    self.labels = np.asarray(labels, np.int32)
    self.paths = np.array([f"img_{i}.png" for i in range(n)])
    self.difficulty = np.array([f"d{tag}"] * n)
    self.images = np.zeros((n, 2, 2, 1), np.uint8)
    self.images[:, 0, 0, 0] = tag
    self.images[:, 0, 1, 0] = np.arange(n)
    self.with_tables = with_tables
    self.with_formats = with_formats

  def __len__(self):
    return len(self.labels)

  @property
  def image_shape(self):
    return self.images.shape[1:]

  def take_batch(self, positions):
    positions = np.asarray(positions)
    tables = None
    if self.with_tables:
      tables = np.broadcast_to((1000 * self.tag + positions)[:, None, None, None],
                               (len(positions), 2, 8, 8)).astype(np.float32)
    return self.images[positions], tables

  def take(self, positions):
    return self.take_batch(positions)[0]

  def take_formats(self, positions):
    if not self.with_formats:
      return None
    return [f"{self.tag}/{p}" for p in positions]


@st.composite
def mixtures(draw, max_sources=4, max_size=12):
  """(parts in config order, names, raw weights, a permutation of the sources)."""
  count = draw(st.integers(2, max_sources))
  parts, weights = [], []
  for k in range(count):
    size = draw(st.integers(1, max_size))
    labels = draw(st.lists(st.sampled_from([classes.FAKE, classes.REAL]), min_size=size,
                           max_size=size))
    parts.append(TaggedSplit(k + 1, labels, draw(st.booleans()), draw(st.booleans())))
    weights.append(draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])))
  hypothesis.assume(sum(weights) > 0)
  order = draw(st.permutations(range(count)))
  return parts, list(NAMES[:count]), np.asarray(weights), list(order)


def arrange(parts, names, raw, order):
  """The mixture with its sources in `order`, weights normalised as mixture.weights does."""
  return mixture.MixedSplit([parts[k] for k in order], [names[k] for k in order],
                            raw[order] / raw.sum())


def tags_at(split, positions):
  images, _ = split.take_batch(np.asarray(positions))
  return images[:, 0, 0, 0], images[:, 0, 1, 0]


@settings(max_examples=200)
@given(mixtures())
def test_each_position_names_its_own_source_in_any_order(case):
  parts, names, raw, order = case
  split = arrange(parts, names, raw, order)
  assert len(split) == sum(len(p) for p in parts)
  tag_of = {names[k]: parts[k].tag for k in range(len(parts))}
  tags, local = tags_at(split, np.arange(len(split)))
  # Each position's source by name and by index agree with the image it reads.
  np.testing.assert_array_equal(tags, [tag_of[name] for name in split.sources])
  np.testing.assert_array_equal(np.asarray(split.names)[split.source_indices], split.sources)
  assert split.source_indices.dtype == np.int32
  for k, name in enumerate(split.names):
    here = split.sources == name
    part = split.parts[k]
    np.testing.assert_array_equal(np.flatnonzero(here),
                                  np.arange(split.offsets[k], split.offsets[k + 1]))
    np.testing.assert_array_equal(local[here], np.arange(len(part)))
    np.testing.assert_array_equal(split.labels[here], part.labels)
    np.testing.assert_array_equal(split.difficulty[here], part.difficulty)
    np.testing.assert_array_equal(split.paths[here], [f"{name}:{p}" for p in part.paths])
  groups = mixture.threshold_groups(split)
  np.testing.assert_array_equal(groups["groups"], split.source_indices)
  for k, name in enumerate(split.names):
    assert groups["group_weights"][k] == pytest.approx(raw[names.index(name)] / raw.sum())


@settings(max_examples=200)
@given(mixtures(), st.data())
def test_a_batch_of_any_positions_reads_each_ones_image_tables_and_format(case, data):
  parts, names, raw, order = case
  split = arrange(parts, names, raw, order)
  positions = np.asarray(data.draw(st.lists(st.integers(0, len(split) - 1), min_size=1,
                                            max_size=30)))
  images, tables = split.take_batch(positions)
  owner = np.searchsorted(split.offsets, positions, side="right") - 1
  local = positions - split.offsets[owner]
  expected_tags = [split.parts[k].tag for k in owner]
  np.testing.assert_array_equal(images[:, 0, 0, 0], expected_tags)
  np.testing.assert_array_equal(images[:, 0, 1, 0], local)
  np.testing.assert_array_equal(split.take(positions), images)
  has_tables = [split.parts[k].with_tables for k in owner]
  if not any(has_tables):
    assert tables is None
  else:
    assert tables.shape == (len(positions), 2, 8, 8)
    expected = np.where(has_tables, 1000 * np.asarray(expected_tags) + local, 0)
    np.testing.assert_array_equal(tables[:, 0, 0, 0], expected)
    np.testing.assert_array_equal(tables.min((1, 2, 3)), tables.max((1, 2, 3)))
  formats = split.take_formats(positions)
  if all(split.parts[k].with_formats for k in np.unique(owner)):
    assert formats == [f"{t}/{p}" for t, p in zip(expected_tags, local)]
  else:
    assert formats is None


def test_tables_of_a_source_that_is_not_the_first_piece_are_kept_and_others_zero():
  plain = TaggedSplit(1, [0, 1, 0], with_tables=False, with_formats=False)
  jpeg = TaggedSplit(2, [1, 1], with_tables=True, with_formats=False)
  split = mixture.MixedSplit([plain, jpeg], ["plain", "jpeg"], np.array([0.5, 0.5]))
  images, tables = split.take_batch(np.array([4, 0, 3, 2]))
  np.testing.assert_array_equal(images[:, 0, 0, 0], [2, 1, 2, 1])
  np.testing.assert_array_equal(tables[:, 0, 0, 0], [2001, 0, 2000, 0])


@settings(max_examples=100)
@given(mixtures(), st.data())
def test_per_source_metrics_and_weighted_accuracy_do_not_depend_on_the_order(case, data):
  parts, names, raw, order = case
  split = arrange(parts, names, raw, order)
  threshold = data.draw(st.sampled_from([0.25, 0.3, 0.7, 0.9, 1.0]))
  own = {names[k]: np.asarray(data.draw(st.lists(
      st.sampled_from([0.0, 0.2, 0.3, 0.5, 0.7, 0.8, 1.0]), min_size=len(parts[k]),
      max_size=len(parts[k])))) for k in range(len(parts))}
  p_fake = np.concatenate([own[name] for name in split.names])
  per_source = metrics.per_source_metrics(split, p_fake, threshold)
  assert list(per_source) == list(split.names)
  for k, name in enumerate(names):
    report = metrics.classification_report(parts[k].labels, own[name], threshold=threshold)
    np.testing.assert_equal(per_source[name], {key: report[key] for key in (
        "count", "accuracy", "balanced_accuracy", "roc_auc")}, err_msg=name)
  # The same scores with the sources in config order give each source the same numbers.
  config_order = arrange(parts, names, raw, list(range(len(parts))))
  again = metrics.per_source_metrics(
      config_order, np.concatenate([own[name] for name in names]), threshold)
  np.testing.assert_equal(again, {name: per_source[name] for name in names})
  expected = sum(raw[k] / raw.sum() * per_source[name]["accuracy"]
                 for k, name in enumerate(names))
  assert mixture.weighted_accuracy(split, per_source) == pytest.approx(expected)
  assert mixture.weighted_accuracy(config_order, again) == pytest.approx(expected)
  # Without a threshold: at 0.5, as training's per-epoch report.
  at_half = metrics.per_source_metrics(split, p_fake)
  for k, name in enumerate(names):
    assert at_half[name]["accuracy"] == metrics.classification_report(
        parts[k].labels, own[name])["accuracy"]


@settings(max_examples=100)
@given(mixtures(max_sources=3, max_size=8), st.data())
def test_the_mixtures_threshold_does_not_depend_on_the_order_of_its_sources(case, data):
  parts, names, raw, order = case
  own = {names[k]: np.asarray(data.draw(st.lists(
      st.sampled_from([0.1, 0.3, 0.45, 0.6, 0.9]), min_size=len(parts[k]),
      max_size=len(parts[k])))) for k in range(len(parts))}
  results = []
  for arrangement in (list(range(len(parts))), order):
    split = arrange(parts, names, raw, arrangement)
    p_fake = np.concatenate([own[name] for name in split.names])
    results.append(metrics.best_threshold(split.labels, p_fake,
                                          **mixture.threshold_groups(split)))
  assert results[1][1] == pytest.approx(results[0][1], abs=1e-9)
  # The permuted run's threshold scores the best score in config order too.
  split = arrange(parts, names, raw, list(range(len(parts))))
  p_fake = np.concatenate([own[name] for name in names])
  predictions = np.where(p_fake >= results[1][0], classes.FAKE, classes.REAL)
  score = sum(raw[k] / raw.sum() * metrics.balanced_accuracy(
      split.labels[split.source_indices == k], predictions[split.source_indices == k])
              for k in range(len(parts)))
  assert score == pytest.approx(results[0][1], abs=1e-9)


@settings(max_examples=60)
@given(mixtures(max_size=9), st.integers(0, 3), st.integers(0, 3))
def test_an_epochs_draw_walks_each_source_through_its_own_images(case, seed, epoch):
  parts, names, raw, order = case
  split = arrange(parts, names, raw, order)
  drawn = split.epoch_order(seed, epoch)
  assert len(drawn) == len(split) and drawn.dtype == np.int64
  assert np.all((drawn >= 0) & (drawn < len(split)))
  owner = np.searchsorted(split.offsets, drawn, side="right") - 1
  for k, part in enumerate(split.parts):
    local = drawn[owner == k] - split.offsets[k]
    if split.weights[k] == 0:
      assert len(local) == 0
    for start in range(0, len(local), len(part)):  # Each cycle is a permutation.
      cycle = local[start:start + len(part)]
      assert len(set(cycle.tolist())) == len(cycle)
  np.testing.assert_array_equal(split.epoch_order(seed, epoch), drawn)


@settings(max_examples=15)
@given(mixtures(max_size=6))
def test_training_batches_name_each_images_source_in_any_order(case):
  parts, names, raw, order = case
  split = arrange(parts, names, raw, order)
  tag_index = {split.parts[k].tag: k for k in range(len(split.parts))}
  batches = list(input_pipeline.train_batches(split, 2, seed=1, epoch=1))
  assert batches
  for batch in batches:
    np.testing.assert_array_equal(batch["source"],
                                  [tag_index[t] for t in batch["image"][:, 0, 0, 0]])
    for tag, position, label in zip(batch["image"][:, 0, 0, 0], batch["image"][:, 0, 1, 0],
                                    batch["label"]):
      assert label == split.parts[tag_index[tag]].labels[position]


# ---------------------------------------------------------------------------------------
# Folds: the folded sources wherever they stand in the mixture.
# ---------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(st.lists(st.tuples(st.sampled_from(["ciplab", "ciplab_resaved", "synthetic"]),
                          st.integers(0, 5), st.booleans()), min_size=1, max_size=3,
                unique_by=lambda t: t[0]),
       st.integers(2, 5), st.data())
def test_fold_summaries_give_each_source_its_own_numbers_in_any_order(sources, num_folds,
                                                                      data):
  values = {}  # (fold, name) -> accuracy, roc_auc

  def report(fold):
    names = [name for name, *_ in sources]
    shuffled = data.draw(st.permutations(names))
    per = {}
    for name in shuffled:
      accuracy = data.draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
      auc = data.draw(st.sampled_from([0.125, 0.375, 0.625, 0.875]))
      values[fold, name] = (accuracy, auc)
      per[name] = {"count": 4, "accuracy": accuracy, "roc_auc": auc}
    overall = data.draw(st.sampled_from([0.5, 0.625, 0.75]))
    return {"count": 4 * len(per) + fold, "threshold": 0.1 * (fold + 1),
            "accuracy": overall, "balanced_accuracy": overall / 2, "roc_auc": 1 - overall,
            "sources": per}

  reports = [report(fold) for fold in range(num_folds)]
  summary = crossval.summarise(reports)
  assert summary["num_folds"] == num_folds
  assert summary["num_images"] == sum(r["count"] for r in reports)
  for fold, (row, r) in enumerate(zip(summary["folds"], reports)):
    assert row["fold"] == fold and row["count"] == r["count"]
    assert row["threshold"] == r["threshold"]
    for m in crossval.SUMMARY_METRICS:
      assert row[m] == r[m]
    for name, *_ in sources:
      if len(sources) > 1:
        assert (row[f"accuracy_{name}"], row[f"roc_auc_{name}"]) == values[fold, name]
      else:
        assert f"accuracy_{name}" not in row
  for name, *_ in sources:
    if len(sources) > 1:
      accuracies = [values[fold, name][0] for fold in range(num_folds)]
      assert summary["summary"][f"accuracy_{name}"]["mean"] == pytest.approx(
          np.mean(accuracies))
      assert summary["summary"][f"accuracy_{name}"]["std"] == pytest.approx(
          np.std(accuracies, ddof=1))
      aucs = [values[fold, name][1] for fold in range(num_folds)]
      assert summary["summary"][f"roc_auc_{name}"]["mean"] == pytest.approx(np.mean(aucs))
  for m in crossval.SUMMARY_METRICS:
    assert summary["summary"][m]["mean"] == pytest.approx(np.mean([r[m] for r in reports]))


@settings(max_examples=60)
@given(st.permutations(["ciplab", "faces140k", "lfw"]), st.integers(2, 4), st.data())
def test_validation_folds_summarise_each_source_by_name_in_any_order(names, num_folds, data):
  results, values = [], {}
  for fold in range(num_folds):
    per_source = {}
    for name in data.draw(st.permutations(names)):
      accuracy = data.draw(st.sampled_from([0.25, 0.5, 0.75, 1.0]))
      count = data.draw(st.integers(1, 9))
      values[fold, name] = accuracy, count
      per_source[name] = {"count": count, "accuracy": accuracy,
                          "balanced_accuracy": accuracy / 2, "roc_auc": 1 - accuracy / 4}
    results.append({"threshold": 0.25 + fold / 8, "validation_per_source": per_source,
                    "test_per_source": {name: {"count": 99, "accuracy": 0.0,
                                               "balanced_accuracy": 0.0, "roc_auc": 0.0}
                                        for name in names}})
  summary = validation_cv.summarise(results)
  assert sorted(summary) == sorted(names)
  for name in names:
    accuracies = [values[fold, name][0] for fold in range(num_folds)]
    assert summary[name]["num_images"] == sum(values[f, name][1] for f in range(num_folds))
    assert [row["accuracy"] for row in summary[name]["folds"]] == accuracies
    assert [row["threshold"] for row in summary[name]["folds"]] == [
        0.25 + fold / 8 for fold in range(num_folds)]
    stats = summary[name]["summary"]
    assert stats["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert stats["balanced_accuracy"]["mean"] == pytest.approx(np.mean(accuracies) / 2)
    assert stats["roc_auc"]["mean"] == pytest.approx(1 - np.mean(accuracies) / 4)


@pytest.fixture(scope="module")
def ciplab_downloads(tmp_path_factory):
  """Two small ciplab downloads: sources with a training split only."""
  root = tmp_path_factory.mktemp("ciplab_downloads")
  make_ciplab(root / "one", num_real=8, fakes_per_difficulty=4, size=32)
  make_ciplab(root / "two", num_real=6, fakes_per_difficulty=2, size=32)
  return str(root / "one"), str(root / "two")


def _source_dicts(downloads):
  return {"ciplab_one": {"name": "ciplab", "manual_dir": downloads[0], "weight": 1.0},
          "synthetic": {"name": "synthetic", "weight": 2.0},
          "ciplab_two": {"name": "ciplab", "manual_dir": downloads[1], "weight": 3.0,
                         "validation_fraction": 0.4}}  # Its own, not the run's.


def _mixture_config(data_dir, downloads, kinds):
  """The sources `kinds` in this order (a ConfigDict sorts its keys: the names say
  where each stands)."""
  config = make_tiny_config(data_dir)
  config.data.validation_fraction = 0.25
  sources = _source_dicts(downloads)
  names = [f"{'abc'[i]}_{kind}" for i, kind in enumerate(kinds)]
  for name, kind in zip(names, kinds):
    config.data.mixture[name] = sources[kind]
  assert mixture.source_names(config.data) == names
  return config, names


def _paths(split):
  return sorted(np.asarray(split.paths, str).tolist())


@settings(max_examples=6)
@given(st.permutations(["ciplab_one", "synthetic", "ciplab_two"]), st.integers(2, 3))
def test_folds_hold_out_each_folded_source_as_a_run_on_it_alone_would(
    data_dir, ciplab_downloads, kinds, num_folds):
  config, names = _mixture_config(data_dir, ciplab_downloads, kinds)
  folded = [name for name in names if not name.endswith("synthetic")]
  assert crossval.folded_sources(config) == folded
  sources = _source_dicts(ciplab_downloads)
  held_out = {name: set() for name in folded}
  for fold in range(num_folds):
    fold_config = crossval.fold_config(config, num_folds, fold)
    data = input_pipeline.load_data(fold_config, cache="stream")
    test = data["test"]
    assert list(test.names) == names
    for k, (name, kind) in enumerate(zip(names, kinds)):
      source = mixture.source_config(fold_config, name)
      assert (source.data.num_folds, source.data.fold) == (num_folds, fold)
      alone = make_tiny_config(data_dir)
      alone.data.validation_fraction = 0.25
      for key, value in sources[kind].items():
        if key != "weight":
          alone.data[key] = value
      alone.data.num_folds, alone.data.fold = num_folds, fold
      single = input_pipeline.load_data(alone, cache="stream")
      for role in ("train", "validation", "test"):
        assert _paths(data[role].parts[k]) == _paths(single[role]), (name, role)
        np.testing.assert_array_equal(data[role].parts[k].labels, single[role].labels)
      if name in held_out:
        assert not held_out[name] & set(_paths(test.parts[k]))
        held_out[name] |= set(_paths(test.parts[k]))
  for name in folded:
    all_files = input_pipeline.load_data(mixture.source_config(config, name),
                                         cache="stream")
    everything = set().union(*(_paths(split) for split in all_files.values()))
    assert held_out[name] == everything  # Every image held out once over the folds.


@settings(max_examples=6)
@given(st.permutations(["ciplab_one", "synthetic", "ciplab_two"]), st.integers(2, 3))
def test_validation_folds_cover_each_sources_training_images_whatever_its_position(
    data_dir, ciplab_downloads, kinds, num_folds):
  config, names = _mixture_config(data_dir, ciplab_downloads, kinds)
  plain = input_pipeline.load_data(config, cache="stream")
  validated = {name: [] for name in names}
  for fold in range(num_folds):
    data = input_pipeline.load_data(validation_cv.fold_config(config, num_folds, fold),
                                    cache="stream")
    for k, name in enumerate(names):
      # The test images stay; the training ones split between train and validation.
      assert _paths(data["test"].parts[k]) == _paths(plain["test"].parts[k]), name
      train, validation = (set(_paths(data[r].parts[k])) for r in ("train", "validation"))
      if name.endswith("synthetic"):  # Its own validation split, in every fold.
        assert validation == set(_paths(plain["validation"].parts[k]))
        continue
      assert not train & validation
      assert train | validation == set(_paths(plain["train"].parts[k])) | set(
          _paths(plain["validation"].parts[k]))
      validated[name].append(validation)
  for name in names:
    if validated[name]:
      folds = validated[name]
      assert sum(len(v) for v in folds) == len(set().union(*folds))  # Disjoint.
      assert set().union(*folds) == set(_paths(plain["train"].parts[names.index(name)])) | set(
          _paths(plain["validation"].parts[names.index(name)]))


# ---------------------------------------------------------------------------------------
# One cross-validation run whose folded source is the mixture's second.
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folded_second(tmp_path_factory, data_dir, ciplab_downloads):
  """(config, workdir, summary) of `--folds 2` on a mixture of a small synthetic source
  (its own splits, weight 3) and ciplab second (folded), one epoch each fold, of a small
  MLP (which compiles in a fraction of the CNN's time)."""
  config = make_tiny_config(data_dir)
  config.model = ml_collections.ConfigDict({"name": "mlp", "width": 8,
                                            "node_structure": "taper"})
  config.augment.device.flip = False
  config.data.validation_fraction = 0.25
  config.batch_size = config.eval_batch_size = 8
  config.num_epochs = 1
  config.data.mixture.a_synthetic = {
      "name": "synthetic", "weight": 3.0,
      "synthetic": {"num_train": 16, "num_validation": 8, "num_test": 8}}
  config.data.mixture.b_ciplab = {"name": "ciplab", "manual_dir": ciplab_downloads[0],
                                  "weight": 1.0, "validation_fraction": 0.5}
  config.lock()  # As main.py's flags leave it.
  workdir = str(tmp_path_factory.mktemp("folded_second"))
  summary = crossval.cross_validate(config, workdir, num_folds=2)
  return config, workdir, summary


def _manifest(fold_dir):
  with open(os.path.join(fold_dir, rundir.MANIFEST_CSV), newline="") as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_folded_second_source_is_what_each_fold_reports_and_summarises(folded_second):
  config, workdir, summary = folded_second
  assert crossval.folded_sources(config) == ["b_ciplab"]
  held_out = []
  for fold, row in enumerate(summary["folds"]):
    fold_dir = rundir.fold_dir(workdir, fold)
    # The held-out images of ciplab alone, scored here at the fold's own threshold.
    predictor = inference.load_run(fold_dir)
    data = input_pipeline.load_data(crossval.fold_config(config, 2, fold), cache="memory")
    ciplab = data["test"].parts[1]
    assert data["test"].names[1] == "b_ciplab"
    p_fake = predictor.p_fake(*ciplab.take_batch(np.arange(len(ciplab))))
    groups = np.where(ciplab.labels == classes.FAKE, ciplab.difficulty, "real")
    expected = metrics.classification_report(ciplab.labels, p_fake, predictor.threshold,
                                             groups=groups)
    manifest = [r for r in _manifest(fold_dir) if r["role"] == "test"]
    ciplab_test = {r["path"] for r in manifest if r["path"].startswith("b_ciplab:")}
    assert row["count"] == expected["count"] == len(ciplab_test) > 0
    held_out.append(ciplab_test)
    assert row["threshold"] == predictor.threshold
    for m in crossval.SUMMARY_METRICS:
      assert row[m] == pytest.approx(expected[m], abs=1e-6), (fold, m)
    for group, value in expected["groups"].items():
      assert row[f"accuracy_{group}"] == pytest.approx(value["accuracy"]), (fold, group)
    # The summary's row is the fold's report.
    report = crossval.fold_report(fold_dir)
    assert report["count"] == row["count"] and report["threshold"] == row["threshold"]
    for m in crossval.SUMMARY_METRICS:
      assert report[m] == pytest.approx(row[m])
    assert list(report["sources"]) == ["b_ciplab"]
    assert report["sources"]["b_ciplab"]["accuracy"] == pytest.approx(expected["accuracy"])
    # The fold's threshold: each source's balanced accuracy on validation weighted as
    # the draw weighs it (3:1), the second source's images its own group.
    validation = data["validation"]
    scores = predictor.p_fake(*validation.take_batch(np.arange(len(validation))))
    chosen = metrics.best_threshold(validation.labels, scores, validation.source_indices,
                                    [0.75, 0.25], max_real_fpr=config.max_real_fpr)
    assert predictor.threshold == pytest.approx(chosen[0])
    # The run's own results give the second source its own numbers at its threshold.
    with open(os.path.join(fold_dir, rundir.TEST_METRICS_JSON), encoding="utf-8") as f:
      results = json.load(f)
    assert results["threshold"] == pytest.approx(predictor.threshold)
    for role in ("test", "validation"):
      split = data[role]
      scores = predictor.p_fake(*split.take_batch(np.arange(len(split))))
      recomputed = metrics.per_source_metrics(split, scores, predictor.threshold)
      assert list(results[f"{role}_per_source"]) == ["a_synthetic", "b_ciplab"]
      for name in split.names:
        for key in ("count", "accuracy", "balanced_accuracy"):
          assert results[f"{role}_per_source"][name][key] == pytest.approx(
              recomputed[name][key], abs=1e-6), (fold, role, name, key)
    # Training's row of the best epoch: the sources' accuracies at 0.5, weighted 3:1.
    with open(os.path.join(fold_dir, rundir.METRICS_CSV), newline="", encoding="utf-8") as f:
      rows = {int(r["step"]): r for r in csv.DictReader(f)}
    epoch_row = rows[results["best_step"]]
    at_half = metrics.per_source_metrics(validation, scores)
    assert float(epoch_row["val_weighted_accuracy"]) == pytest.approx(
        0.75 * at_half["a_synthetic"]["accuracy"] + 0.25 * at_half["b_ciplab"]["accuracy"],
        abs=1e-6)
  assert not held_out[0] & held_out[1]
  assert summary["num_images"] == len(held_out[0] | held_out[1]) == 20
  accuracies = [row["accuracy"] for row in summary["folds"]]
  assert summary["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
  with open(os.path.join(workdir, "crossval.json"), encoding="utf-8") as f:
    assert json.load(f) == summary
