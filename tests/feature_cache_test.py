"""Features computed once: the cache's key, reads, writes and training on it."""

import dataclasses
import glob
import os
import shutil
import textwrap

import jax
import numpy as np
import pytest

from configs import cooccurrence
from configs import default
from configs import spectral
from conftest import run_on_cpu_devices
from fakeface_jax import classes
from fakeface_jax import config_checks
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import preprocessing
from fakeface_jax import errors
from fakeface_jax import models
from fakeface_jax import rundir
from fakeface_jax.serving import inference
from fakeface_jax.training import checkpointing
from fakeface_jax.training import feature_cache
from fakeface_jax.training import train


def tiny_detector_config(data_dir, features_cache="auto"):
  """configs/cooccurrence.py (fixed features, no augmentation) on the tiny data."""
  config = default.shrink_to_tiny(cooccurrence.get_config())
  config.model = cooccurrence.get_config().model  # Without the tiny CNN's features.
  config.data.data_dir = data_dir
  config.features_cache = features_cache
  return config


def final_params(workdir):
  step = checkpointing.usable_steps(workdir)[0]  # Newest first.
  state = checkpointing.restore_state_here(workdir, step)
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(state["params"])])


def cache_dirs(data_dir):
  return sorted(glob.glob(os.path.join(data_dir, "**", feature_cache.CACHE_DIR, "*"),
                          recursive=True))


@pytest.fixture(scope="module")
def cached_and_uncached(tmp_path_factory, data_dir):
  """(results, workdir) of the tiny detector trained on cached features, then per step."""
  runs = {}
  for mode in ("auto", "off"):
    workdir = str(tmp_path_factory.mktemp(f"features_{mode}"))
    runs[mode] = train.train_and_evaluate(tiny_detector_config(data_dir, mode), workdir), workdir
  return runs


@pytest.mark.parametrize("config", [cooccurrence.get_config(), spectral.get_config()],
                         ids=["cooccurrence", "spectral"])
def test_head_on_features_equals_the_full_model_with_the_same_parameter_tree(config):
  model = models.create_model(config.model)
  images = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
  # Compiled: eagerly, the co-occurrence features dispatch op by op for seconds.
  features = jax.jit(lambda x: model.apply({}, x, method="features"))(images)
  params = jax.jit(model.init)(jax.random.key(1), images)
  head_params = jax.jit(lambda k, x: model.init(k, x, method="head"))(jax.random.key(1),
                                                                      features)
  assert jax.tree.structure(params) == jax.tree.structure(head_params)
  jax.tree.map(np.testing.assert_allclose, params, head_params)
  np.testing.assert_allclose(jax.jit(model.apply)(params, images),
                             model.apply(params, features, method="head"), rtol=1e-6)


@pytest.mark.slow
def test_cached_and_uncached_training_give_the_same_parameters_and_accuracy(
    cached_and_uncached):
  (cached, cached_dir), (uncached, uncached_dir) = (cached_and_uncached["auto"],
                                                    cached_and_uncached["off"])
  np.testing.assert_allclose(final_params(cached_dir), final_params(uncached_dir),
                             rtol=1e-4, atol=1e-5)
  assert cached["test_accuracy"] == uncached["test_accuracy"]
  assert cached["best_step"] == uncached["best_step"]
  np.testing.assert_allclose(cached["test_loss"], uncached["test_loss"], rtol=1e-4)


@pytest.mark.slow
def test_a_mixture_trains_on_each_sources_cache_as_it_would_per_step(data_dir, tmp_path):
  results = {}
  for mode in ("auto", "off"):
    config = tiny_detector_config(data_dir, mode)
    config.data.mixture.easy = {"name": "synthetic", "weight": 3.0}
    config.data.mixture.hard = {"name": "synthetic",
                                "synthetic": {"difficulty": 1.0, "seed": 1}}
    config.model.num_sources = 2  # As configs/general.py: the batches name the sources.
    results[mode] = train.train_and_evaluate(config, str(tmp_path / mode))
  np.testing.assert_allclose(final_params(str(tmp_path / "auto")),
                             final_params(str(tmp_path / "off")), rtol=1e-4, atol=1e-5)
  for name in ("easy", "hard"):
    assert (results["auto"]["test_per_source"][name]["accuracy"]
            == results["off"]["test_per_source"][name]["accuracy"])
  # A saved pairs model predicts with no source to be told: p(fake) summed over both.
  predictor = inference.load_run(str(tmp_path / "auto"), "best")
  images = input_pipeline.load_data(config)["test"].take(np.arange(4))
  pairs = predictor.model.apply({"params": predictor.params}, preprocessing.rescale(images),
                                train=True)
  by_source = jax.nn.softmax(pairs).reshape(4, 2, 2)[:, :, classes.FAKE]
  np.testing.assert_allclose(predictor.p_fake(images), by_source.sum(1), rtol=1e-4)
  config.features_cache = "auto"  # The last run's config, as the cached run read it.
  data = feature_cache.load_or_compute(config, models.create_model(config.model),
                                      input_pipeline.load_data(config, cache="stream"))
  assert feature_cache.holds_features(data["train"])
  assert data["train"].take_batch(np.arange(3))[0].dtype == np.float32


def test_a_source_and_its_resaved_copy_cache_the_features_of_what_each_reads(data_dir):
  config = tiny_detector_config(data_dir)
  config.data.mixture.clean = {"name": "synthetic"}
  config.data.mixture.resaved = {"name": "synthetic",
                                 "resave": {"quality": (60, 80), "scale": (0.5, 0.8)}}
  config.model.num_sources = 2
  model = models.create_model(config.model)
  decoded = input_pipeline.load_data(config, cache="memory")["test"].parts
  cached = feature_cache.load_or_compute(config, model,
                                         input_pipeline.load_data(config, cache="stream"))
  for part, features in zip(decoded, cached["test"].parts):
    expected = model.apply({}, preprocessing.rescale(part.images),
                           **model.table_inputs(part.take_tables(np.arange(len(part)))),
                           method="features")
    np.testing.assert_allclose(features.take(np.arange(len(part))), expected, rtol=1e-5,
                               atol=1e-6)
  clean, resaved = (features.take(np.arange(8)) for features in cached["test"].parts)
  assert np.abs(clean - resaved).mean() > 0.01


@pytest.mark.slow
def test_a_second_run_reads_the_cache_and_computes_nothing(
    cached_and_uncached, data_dir, tmp_path, monkeypatch):
  before = cache_dirs(data_dir)
  monkeypatch.setattr(feature_cache, "compute_features",
                      lambda *args: pytest.fail("computed features on a cache hit"))
  results = train.train_and_evaluate(tiny_detector_config(data_dir), str(tmp_path))
  assert results["test_accuracy"] == cached_and_uncached["auto"][0]["test_accuracy"]
  assert cache_dirs(data_dir) == before


@pytest.mark.slow
def test_a_cached_run_resumed_after_its_first_epoch_ends_as_an_uninterrupted_one(
    cached_and_uncached, data_dir, tmp_path):
  uninterrupted, finished = cached_and_uncached["auto"]
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)
  last = checkpointing.usable_steps(workdir)[0]
  shutil.rmtree(os.path.join(workdir, rundir.CHECKPOINTS_DIR, str(last)))
  results = train.train_and_evaluate(tiny_detector_config(data_dir), workdir)
  assert checkpointing.usable_steps(workdir)[0] == last
  np.testing.assert_array_equal(final_params(workdir), final_params(finished))
  assert results["test_loss"] == uninterrupted["test_loss"]


@pytest.mark.slow
def test_cached_features_are_memory_mapped_and_equal_the_models(cached_and_uncached,
                                                               data_dir):
  config = tiny_detector_config(data_dir)
  model = models.create_model(config.model)
  data = input_pipeline.load_data(config)
  cached = feature_cache.load_or_compute(config, model, data)
  assert isinstance(cached["train"].features, np.memmap)
  images = data["test"].take(np.arange(5))
  expected = model.apply({}, preprocessing.rescale(images), method="features")
  np.testing.assert_allclose(cached["test"].take(np.arange(5)), expected, rtol=1e-6)
  np.testing.assert_array_equal(cached["validation"].labels, data["validation"].labels)


def test_the_key_changes_with_the_feature_settings_and_the_data_not_the_head(data_dir):
  config = tiny_detector_config(data_dir)
  data = input_pipeline.load_data(config, cache="stream")

  def directory(config, data=data):
    return feature_cache.cache_dir(
        feature_cache.cache_key(config, models.create_model(config.model), data))

  same = directory(config)
  config.model.hidden = (8,)
  assert directory(config) == same
  config.model.truncation = 3
  assert directory(config) != same
  config.model.truncation = 2
  config.model.regions = (1.0, 0.5)
  assert directory(config) != same
  config.model.regions = (1.0,)
  assert "resave" not in feature_cache.cache_key(config, models.create_model(config.model),
                                                 data)
  config.data.resave.quality = (70, 90)  # Every file re-saved: other images.
  assert directory(config) != same
  config.data.resave.quality = (0, 0)
  fewer = dict(data, train=dataclasses.replace(data["train"],
                                               paths=data["train"].paths[:-1]))
  assert directory(config, fewer) != same
  config.data.synthetic.num_test = 41  # Another prepared dataset.
  assert directory(config, input_pipeline.load_data(config, cache="stream")) != same


def test_runs_that_split_the_same_images_otherwise_share_one_cache(data_dir, monkeypatch):
  config = tiny_detector_config(data_dir)
  model = models.create_model(config.model)
  data = input_pipeline.load_data(config, cache="stream")
  cached = feature_cache.load_or_compute(config, model, data)
  # The same images in other roles: validation trains, and train validates.
  refolded = dict(data, train=data["validation"], validation=data["train"])
  key = feature_cache.cache_key(config, model, data)
  assert feature_cache.cache_key(config, model, refolded) == key
  monkeypatch.setattr(feature_cache, "compute_features",
                      lambda *args: pytest.fail("computed features of cached images"))
  again = feature_cache.load_or_compute(config, model, refolded)
  by_path = dict(zip(np.concatenate([cached[r].paths for r in cached]),
                     np.concatenate([cached[r].take(np.arange(len(cached[r])))
                                     for r in cached])))
  for role, split in again.items():
    np.testing.assert_array_equal(
        split.take(np.arange(len(split))), np.stack([by_path[p] for p in split.paths]))
    np.testing.assert_array_equal(split.labels, refolded[role].labels)


def test_a_cache_holds_the_same_features_whichever_roles_wrote_it(data_dir, monkeypatch):
  # Computed in other batches, a feature can differ in its last bits; so a cache is
  # computed in its own row order, the same batches whoever writes it.
  compute, fed = feature_cache.compute_features, []

  def recording(model, split, batch_size):
    fed.append(split.take_batch(np.arange(len(split)))[0])
    return compute(model, split, batch_size)

  monkeypatch.setattr(feature_cache, "compute_features", recording)
  config = tiny_detector_config(data_dir)
  config.model.truncation = 4  # A key of this test's own, removed at the end.
  model = models.create_model(config.model)
  data = input_pipeline.load_data(config, cache="stream")
  directory = feature_cache.cache_dir(feature_cache.cache_key(config, model, data))
  written = {}
  for name, roles in (("as loaded", data),
                      ("refolded", dict(data, train=data["validation"],
                                        validation=data["train"]))):
    shutil.rmtree(directory, ignore_errors=True)
    written[name] = np.array(feature_cache.load_or_compute(config, model, roles)["train"]
                             .features)
  np.testing.assert_array_equal(written["as loaded"], written["refolded"])
  assert len(fed) == 2
  np.testing.assert_array_equal(fed[0], fed[1])
  shutil.rmtree(directory)


def test_an_interrupted_write_leaves_no_cache_that_is_trusted(data_dir, monkeypatch):
  config = tiny_detector_config(data_dir)
  config.model.truncation = 1  # A key no other test writes.
  model = models.create_model(config.model)
  data = input_pipeline.load_data(config, cache="stream")
  directory = feature_cache.cache_dir(feature_cache.cache_key(config, model, data))
  compute = feature_cache.compute_features

  def crash(model, split, batch_size):
    yield next(compute(model, split, batch_size))
    raise KeyboardInterrupt

  monkeypatch.setattr(feature_cache, "compute_features", crash)
  with pytest.raises(KeyboardInterrupt):
    feature_cache.load_or_compute(config, model, data)
  assert not os.path.exists(directory)
  assert glob.glob(directory + ".tmp-*")
  monkeypatch.setattr(feature_cache, "compute_features", compute)
  cached = feature_cache.load_or_compute(config, model, data)
  assert cached["train"].features.shape[0] == len(feature_cache.cached_paths(data)) == 144


def test_a_damaged_cache_is_a_one_line_error(data_dir, tmp_path):
  config = tiny_detector_config(data_dir)
  data = input_pipeline.load_data(config, cache="stream")
  np.save(tmp_path / feature_cache.FEATURES_FILE, np.zeros((3, 5), np.float32))
  with pytest.raises(feature_cache.FeatureCacheError,
                     match=rf"^feature cache {tmp_path} holds \(3, 5\) features for 64 "
                           "images; delete it to compute the features again$"):
    feature_cache._read(str(tmp_path), {"train": data["train"]})  # pylint: disable=protected-access


def test_an_unwritable_data_folder_is_a_one_line_error(data_dir, monkeypatch):
  config = tiny_detector_config(data_dir)
  config.model.truncation = 3  # A key no test writes.
  data = input_pipeline.load_data(config, cache="stream")

  def refuse(path):
    raise PermissionError(13, "Permission denied", path)

  monkeypatch.setattr(os, "makedirs", refuse)
  with pytest.raises(feature_cache.FeatureCacheError,
                     match=r"^cannot write the feature cache beside the prepared data "
                           r"\(\[Errno 13\] Permission denied: '.+'\); make it writable "
                           r"or set config.features_cache=off$"):
    feature_cache.load_or_compute(config, models.create_model(config.model), data)


@pytest.mark.parametrize("override, reason", [
    ({}, None),
    ({"features_cache": "off"}, "config.features_cache=off"),
    ({"augment.device.flip": True}, "augment.device.flip change the images from step to step"),
    ({"augment.host.jpeg_prob": 0.5, "augment.device.blur_prob": 0.1},
     "augment.device.blur_prob, augment.host.jpeg_prob change the images from step to step"),
    ({"augment.host.noise_prob": 0.5, "augment.host.blur_prob": 0.5},
     "augment.host.blur_prob, augment.host.noise_prob change the images from step to step"),
    ({"model.name": "cnn"}, "model 'cnn' learns its features"),
])
def test_features_are_cached_only_when_nothing_changes_the_images(data_dir, override,
                                                                  reason):
  config = tiny_detector_config(data_dir)
  if override.get("model.name"):
    config.model = default.get_config().model
  for dotted, value in override.items():
    *parents, name = dotted.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value
  assert feature_cache.why_per_step(config, models.create_model(config.model)) == reason


def test_an_unknown_features_cache_mode_is_refused(data_dir):
  config = tiny_detector_config(data_dir, "always")
  with pytest.raises(errors.ConfigError,
                     match="^unknown config.features_cache 'always'; choose one of: auto, off$"):
    config_checks.check_config(config)


_DEVICE_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from fakeface_jax.data import input_pipeline
    from fakeface_jax import models
    from fakeface_jax.training import feature_cache
    rng = np.random.default_rng(0)
    split = input_pipeline.ArraySplit(rng.integers(0, 256, (11, 16, 16, 3), np.uint8),
                                      np.zeros(11, np.int32))
    model = models.CooccurrenceClassifier(cross_band=True)
    np.save(sys.argv[1], np.concatenate(list(feature_cache.compute_features(model, split, 4))))
""")


@pytest.mark.slow
def test_one_and_two_devices_compute_the_same_features(tmp_path):
  results = {}
  for devices in (1, 2):
    out = tmp_path / f"features{devices}.npy"
    run_on_cpu_devices(_DEVICE_SCRIPT, devices, str(out))
    results[devices] = np.load(out)
  assert results[1].shape[0] == 11
  np.testing.assert_array_equal(results[1], results[2])
