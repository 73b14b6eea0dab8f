"""The feature cache's key, field by field: every config field that changes the cached
features (or which images they are of) changes the key, every other field leaves it,
for a single dataset and for each source of a mixture, the second as much as the first.

Every config field is classified below; a field added to (or dropped from) the configs
fails `test_every_config_field_is_classified` until it is classified here.
"""

import os

import ml_collections
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from configs import cooccurrence
from configs import default
from configs import spectral
from conftest import make_ciplab
from fakeface_jax.data import faces
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax.data import preprocessing
from fakeface_jax import models
from fakeface_jax.training import feature_cache

# What changing a field does to the key (with the data loaded again from the new config):
FEATURES = "features"  # The key changes; the same prepared data and the same files.
DATASET = "dataset"    # Another prepared dataset: the key's prepared_dir changes.
FILES = "files"        # Other files selected: the key's files_sha256 changes.
ROLES = "roles"        # The same files in other roles: the same key (folds share a cache).
NONE = "none"          # Nothing the features depend on: the same key.
CHANGES = (FEATURES, DATASET, FILES)

# Fields outside config.data and config.model: training, augmentation, checkpoints.
OTHER_FIELDS = {
    "seed": NONE, "batch_size": NONE, "eval_batch_size": NONE, "num_epochs": NONE,
    "learning_rate": NONE, "lr_schedule": NONE, "lr_decay": NONE, "weight_decay": NONE,
    "log_every_steps": NONE, "features_cache": NONE, "max_real_fpr": NONE, "resume": NONE,
    "checkpoint.every_epochs": NONE, "checkpoint.max_to_keep": NONE,
    # Augmentations make a run compute its features per step (why_per_step), not
    # another cache.
    "augment.device.blur_max_sigma": NONE, "augment.device.blur_prob": NONE,
    "augment.device.color_jitter": NONE, "augment.device.crop_min_scale": NONE,
    "augment.device.crop_size": NONE, "augment.device.flip": NONE,
    "augment.device.rotation_degrees": NONE, "augment.device.self_blend_kinds": NONE,
    "augment.device.self_blend_share": NONE, "augment.host.blur_max_sigma": NONE,
    "augment.host.blur_prob": NONE, "augment.host.downscale_min_factor": NONE,
    "augment.host.downscale_prob": NONE, "augment.host.jpeg_max_quality": NONE,
    "augment.host.jpeg_min_quality": NONE, "augment.host.jpeg_prob": NONE,
    "augment.host.noise_max_sigma": NONE, "augment.host.noise_prob": NONE,
}

# config.data of a folder dataset (ciplab) whose files are read as they are.
DATA_FIELDS = {
    "data.name": DATASET, "data.manual_dir": DATASET, "data.data_dir": DATASET,
    "data.image_size": FEATURES, "data.native_crop": FEATURES, "data.grayscale": FEATURES,
    "data.resave.quality": FEATURES,
    # Only where files are re-saved (quality not (0, 0)); see RESAVED_FIELDS.
    "data.resave.scale": NONE, "data.resave.seed": NONE,
    # Only where files are cut to their faces; see FACE_CROP_FIELDS.
    "data.face_crop.enabled": FEATURES, "data.face_crop.margin": NONE,
    # Only where fakes are replaced by pseudo-fakes; see PSEUDO_FAKE_FIELDS.
    "data.pseudo_fakes.kinds": FEATURES, "data.pseudo_fakes.weights": NONE,
    "data.pseudo_fakes.seed": NONE,
    "data.cache": NONE,
    "data.examples_per_class": FILES, "data.train_examples_per_class": FILES,
    "data.eval_examples_per_class": FILES, "data.fake_difficulties": FILES,
    "data.test_fraction": ROLES, "data.num_folds": ROLES, "data.fold": ROLES,
    "data.validation_fraction": ROLES, "data.validation_folds": ROLES,
    "data.validation_fold": ROLES, "data.split_seed": ROLES,
    # The built-in dataset's settings: nothing to a folder dataset.
    "data.synthetic.difficulty": NONE, "data.synthetic.seed": NONE,
    "data.synthetic.num_train": NONE, "data.synthetic.num_validation": NONE,
    "data.synthetic.num_test": NONE,
}
# ... and of the built-in synthetic dataset: its settings name another prepared dataset.
SYNTHETIC_DATA_FIELDS = {
    **DATA_FIELDS, "data.manual_dir": NONE, "data.image_size": DATASET,
    "data.synthetic.difficulty": DATASET, "data.synthetic.seed": DATASET,
    "data.synthetic.num_train": DATASET, "data.synthetic.num_validation": DATASET,
    "data.synthetic.num_test": DATASET,
}
# Where files are re-saved, every setting of the copies is.
RESAVED_FIELDS = {"data.resave.scale": FEATURES, "data.resave.seed": FEATURES}
# Where files are cut to their faces, the crop's margin is a setting of the features.
FACE_CROP_FIELDS = {"data.face_crop.margin": FEATURES}
# Where fakes are replaced by pseudo-fakes, every setting of them is.
PSEUDO_FAKE_FIELDS = {"data.pseudo_fakes.weights": FEATURES, "data.pseudo_fakes.seed": FEATURES}

# The models' fields: the head's leave the features as they are.
COOCCURRENCE_FIELDS = {
    "model.name": FEATURES, "model.truncation": FEATURES, "model.color_spaces": FEATURES,
    "model.cross_band": FEATURES, "model.jpeg_quality": FEATURES,
    "model.jpeg_features": FEATURES, "model.regions": FEATURES,
    "model.hidden": NONE, "model.num_sources": NONE,
}
SPECTRAL_FIELDS = {"model.name": FEATURES, "model.num_bins": FEATURES, "model.hidden": NONE}

MIXTURE_FIELD = "data.mixture"  # Empty for a single dataset; the sources' fields below.


def mutation(path, value, downloads, tmp_dir):
  """Another valid value of the field at `path`."""
  special = {
      "data.name": "synthetic" if value != "synthetic" else "ciplab",
      "data.manual_dir": downloads[1] if value == downloads[0] else downloads[0],
      "data.data_dir": os.path.join(tmp_dir, "other_data_dir"),
      "data.image_size": 24, "data.resave.quality": (60, 80) if value == (0, 0) else (55, 90),
      "data.resave.scale": (0.5, 0.9), "data.cache": "memory",
      "data.examples_per_class": 3, "data.train_examples_per_class": 2,
      "data.eval_examples_per_class": 1, "data.fake_difficulties": "hard",
      "data.test_fraction": 0.5, "data.validation_fraction": 0.25,
      "data.synthetic.difficulty": 0.5,
      "model.name": "spectral", "model.color_spaces": ("rgb", "ycbcr"),
      "model.jpeg_features": ("dctr",), "model.regions": (1.0, 0.5), "model.hidden": (4,),
      "lr_schedule": "constant", "lr_decay": 0.1, "features_cache": "off",
      "augment.device.self_blend_kinds": ("face",), "augment.device.crop_min_scale": 0.5,
      "data.pseudo_fakes.kinds": ("nearest",) if value != ("nearest",) else ("bilinear",),
      "data.pseudo_fakes.weights": (1.0, 3.0),
  }
  if path in special:
    return special[path]
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return value + 1 if "fold" not in path else 2 if path.endswith("folds") else 1
  if isinstance(value, float):
    return value / 2 + 0.25
  raise AssertionError(f"no mutation of {path}={value!r}: add one")


def leaves(config, prefix=""):
  """(dotted path, value) of every field, an empty ConfigDict being a field itself."""
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and value:
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def get(config, path):
  node = config
  for part in path.split("."):
    node = node[part]
  return node


def with_value(config, path, value):
  """A copy of `config` with the field at `path` set to `value`."""
  config = config.copy_and_resolve_references()
  *parents, name = path.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  node[name] = value
  return config


def mutated(config, path, downloads, tmp_dir):
  """A copy of `config` with another valid value of the field at `path` (another model
  for `model.name`, a download for a folder dataset that needs one)."""
  if path == "model.name":
    config = config.copy_and_resolve_references()
    config.model = spectral.get_config().model
    return config
  changed = with_value(config, path, mutation(path, get(config, path), downloads, tmp_dir))
  if path == "data.name" and not changed.data.manual_dir:
    changed.data.manual_dir = downloads[0]
  return changed


def detector_config(data_dir, model="cooccurrence"):
  """configs/default.py:tiny's fields with a model of fixed features."""
  config = default.shrink_to_tiny(cooccurrence.get_config())
  config.model = (cooccurrence if model == "cooccurrence" else spectral).get_config().model
  if model == "cooccurrence":
    config.model.jpeg_quality = 75  # So that jpeg_features can be turned on.
  config.data.data_dir = data_dir
  return config


def ciplab_config(data_dir, downloads, model="cooccurrence"):
  config = detector_config(data_dir, model)
  config.data.name = "ciplab"
  config.data.manual_dir = downloads[0]
  return config


def mixture_config(data_dir, downloads):
  """Two sources of the same files, the second re-saved (configs/general.py's pattern):
  its resave dict gives quality and scale, and inherits the seed."""
  config = detector_config(data_dir)
  config.data.mixture.a_clean = {"name": "ciplab", "manual_dir": downloads[0]}
  config.data.mixture.b_resaved = {"name": "ciplab", "manual_dir": downloads[0],
                                   "weight": 2.0,
                                   "resave": {"quality": (60, 80), "scale": (0.5, 0.8)}}
  config.model.num_sources = 2
  return config


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
  root = tmp_path_factory.mktemp("key_downloads")
  make_ciplab(root / "one", num_real=8, fakes_per_difficulty=3, size=32)
  make_ciplab(root / "two", num_real=6, fakes_per_difficulty=2, size=32)
  return str(root / "one"), str(root / "two")


@pytest.fixture
def keys_of(monkeypatch):
  """config -> [(key, cache folder)] of each of its sources, as `load_or_compute` makes
  them of the data loaded from the config; no feature is computed or read."""
  recorded = []
  cache_dir = feature_cache.cache_dir

  def recording(key):
    recorded.append(key)
    return cache_dir(key)

  monkeypatch.setattr(feature_cache, "cache_dir", recording)
  monkeypatch.setattr(feature_cache, "_all_processes", lambda flag: True)  # As if cached.
  monkeypatch.setattr(feature_cache, "_read",
                      lambda directory, data: {role: directory for role in data})

  def keys(config):
    recorded.clear()
    data = input_pipeline.load_data(config, cache="stream")
    out = feature_cache.load_or_compute(config, models.create_model(config.model), data)
    folders = (list(out["train"].parts) if isinstance(out["train"], mixture.MixedSplit)
               else [out["train"]])
    assert [cache_dir(key) for key in recorded] == folders
    return list(zip(recorded, folders))

  return keys


def check(path, category, before, after):
  """Asserts what changing `path` did to one source's (key, folder)."""
  (key, folder), (new_key, new_folder) = before, after
  if category not in CHANGES:
    assert new_folder == folder, f"{path} ({category}) changed the key: {key} -> {new_key}"
    return
  assert new_folder != folder, f"{path} ({category}) left the key {key}"
  if category == FEATURES:
    assert (new_key["prepared_dir"], new_key["files_sha256"]) == (
        key["prepared_dir"], key["files_sha256"]), path
  elif category == DATASET:
    assert new_key["prepared_dir"] != key["prepared_dir"], path
  else:
    assert new_key["prepared_dir"] == key["prepared_dir"], path
    assert new_key["files_sha256"] != key["files_sha256"], path


def test_every_config_field_is_classified(data_dir, downloads):
  for config, fields in (
      (detector_config(data_dir), {**OTHER_FIELDS, **SYNTHETIC_DATA_FIELDS,
                                   **COOCCURRENCE_FIELDS}),
      (ciplab_config(data_dir, downloads), {**OTHER_FIELDS, **DATA_FIELDS,
                                            **COOCCURRENCE_FIELDS}),
      (ciplab_config(data_dir, downloads, "spectral"),
       {**OTHER_FIELDS, **DATA_FIELDS, **SPECTRAL_FIELDS}),
      (default.get_config("tiny"), {**OTHER_FIELDS, **SYNTHETIC_DATA_FIELDS,
                                    "model.name": NONE, "model.features": NONE,
                                    "model.dense_features": NONE, "model.conv_impl": NONE}),
  ):
    found = {path for path, _ in leaves(config)} - {MIXTURE_FIELD}
    assert sorted(found - set(fields)) == [], "fields to classify"
    assert sorted(set(fields) - found) == [], "classified fields that are gone"
  sources = {path for path, _ in leaves(mixture_config(data_dir, downloads))
             if path.startswith(MIXTURE_FIELD + ".")}
  assert sources == {f"data.mixture.{name}" for name in ("a_clean.name", "a_clean.manual_dir",
                                                         "b_resaved.name",
                                                         "b_resaved.manual_dir",
                                                         "b_resaved.weight",
                                                         "b_resaved.resave.quality",
                                                         "b_resaved.resave.scale")}


@pytest.mark.parametrize("dataset", ["ciplab", "synthetic"])
def test_each_field_of_a_single_dataset_changes_the_key_as_classified(
    data_dir, downloads, keys_of, tmp_path, dataset):
  if dataset == "ciplab":
    config, fields = ciplab_config(data_dir, downloads), DATA_FIELDS
  else:
    config, fields = detector_config(data_dir), SYNTHETIC_DATA_FIELDS
  fields = {**OTHER_FIELDS, **fields, **COOCCURRENCE_FIELDS}
  [base] = keys_of(config)
  for path, category in fields.items():
    [after] = keys_of(mutated(config, path, downloads, str(tmp_path)))
    check(path, category, base, after)


def test_each_field_of_the_spectral_model_changes_the_key_as_classified(
    data_dir, downloads, keys_of, tmp_path):
  config = ciplab_config(data_dir, downloads, "spectral")
  [base] = keys_of(config)
  for path, category in SPECTRAL_FIELDS.items():
    if path == "model.name":
      continue  # Another model: cooccurrence's, tested above.
    [after] = keys_of(mutated(config, path, downloads, str(tmp_path)))
    check(path, category, base, after)


def test_where_files_are_resaved_every_resave_setting_is_in_the_key(data_dir, downloads,
                                                                    keys_of, tmp_path):
  config = ciplab_config(data_dir, downloads)
  config.data.resave.quality, config.data.resave.scale = (60, 80), (0.5, 0.8)
  [base] = keys_of(config)
  assert base[0]["resave"] == {"min_scale": 0.5, "max_scale": 0.8, "min_quality": 60,
                               "max_quality": 80, "seed": 0}
  for path, category in {"data.resave.quality": FEATURES, **RESAVED_FIELDS}.items():
    [after] = keys_of(mutated(config, path, downloads, str(tmp_path)))
    check(path, category, base, after)
  # A fixed range (q, q) at the top of the quality range is a range like any other.
  for quality in ((95, 95), (80, 80), (60, 95)):
    [after] = keys_of(with_value(config, "data.resave.quality", quality))
    assert (after[0]["resave"]["min_quality"], after[0]["resave"]["max_quality"]) == quality
    check("data.resave.quality", FEATURES, base, after)


def test_a_dataset_prepared_anew_is_keyed_anew(data_dir, downloads, keys_of):
  # The same folder prepared again (another TFDS or builder version) may hold other
  # records under the same paths: its dataset_info.json is in the key.
  config = ciplab_config(data_dir, downloads)
  [base] = keys_of(config)
  info = os.path.join(base[0]["prepared_dir"], "dataset_info.json")
  with open(info) as f:
    original = f.read()
  try:
    with open(info, "w") as f:
      f.write(original.replace('"name"', '"name" ', 1))
    [after] = keys_of(config)
  finally:
    with open(info, "w") as f:
      f.write(original)
  assert after[0]["dataset_info_sha256"] != base[0]["dataset_info_sha256"]
  assert after[1] != base[1]


def test_where_files_are_cut_to_their_faces_the_crop_and_detector_are_in_the_key(
    data_dir, downloads, keys_of, tmp_path):
  config = ciplab_config(data_dir, downloads)
  [plain] = keys_of(config)
  config.data.face_crop.enabled = True
  [base] = keys_of(config)
  check("data.face_crop.enabled", FEATURES, plain, base)
  assert base[0]["face_crop"] == {"margin": 1.0, "detector": faces.settings_key()}
  for path, category in FACE_CROP_FIELDS.items():
    [after] = keys_of(mutated(config, path, downloads, str(tmp_path)))
    check(path, category, base, after)


def test_where_fakes_are_pseudo_fakes_their_every_setting_is_in_the_key(
    data_dir, downloads, keys_of, tmp_path):
  config = ciplab_config(data_dir, downloads)
  [plain] = keys_of(config)
  config.data.pseudo_fakes.kinds = ("nearest", "transposed")
  [base] = keys_of(config)
  check("data.pseudo_fakes.kinds", FEATURES, plain, base)
  assert base[0]["pseudo_fakes"]["kinds"] == ["nearest", "transposed"]
  for path, category in PSEUDO_FAKE_FIELDS.items():
    [after] = keys_of(mutated(config, path, downloads, str(tmp_path)))
    check(path, category, base, after)


def test_each_source_of_a_mixture_is_keyed_as_a_run_on_it_alone(data_dir, downloads,
                                                                keys_of):
  config = mixture_config(data_dir, downloads)
  both = keys_of(config)
  for k, name in enumerate(mixture.source_names(config.data)):
    assert keys_of(mixture.source_config(config, name)) == [both[k]], name
  clean, resaved = (key for key, _ in both)
  assert "resave" not in clean
  assert resaved["resave"] == {"min_scale": 0.5, "max_scale": 0.8, "min_quality": 60,
                               "max_quality": 80, "seed": 0}
  assert clean["files_sha256"] == resaved["files_sha256"]  # The same files, re-saved.
  assert both[0][1] != both[1][1]


def test_each_sources_own_fields_change_its_key_alone(data_dir, downloads, keys_of,
                                                      tmp_path):
  config = mixture_config(data_dir, downloads)
  base = keys_of(config)
  names = mixture.source_names(config.data)
  own = {"name": DATASET, "manual_dir": DATASET, "weight": NONE,
         "resave.quality": FEATURES, "resave.scale": FEATURES}
  for path, value in leaves(config):
    if not path.startswith(MIXTURE_FIELD + "."):
      continue
    _, _, name, field = path.split(".", 3)
    after = keys_of(with_value(config, path, mutation(f"data.{field}", value, downloads,
                                                      str(tmp_path))))
    for k, source in enumerate(names):
      check(path, own[field] if source == name else NONE, base[k], after[k])


@pytest.mark.parametrize("source", ["a_clean", "b_resaved"])
def test_any_data_field_given_to_one_source_changes_that_sources_key_alone(
    data_dir, downloads, keys_of, tmp_path, source):
  config = mixture_config(data_dir, downloads)
  base = keys_of(config)
  names = mixture.source_names(config.data)
  fields = {**DATA_FIELDS, **(RESAVED_FIELDS if source == "b_resaved" else {})}
  for path, category in fields.items():
    field = path[len("data."):]
    value = get(mixture.source_config(config, source), path)
    new = mutation(path, value, downloads, str(tmp_path))
    changed = config.copy_and_resolve_references()
    if "." in field:  # A nested key (resave, synthetic): only the key given.
      parent, leaf = field.split(".")
      entry = dict(changed.data.mixture[source].get(parent, {}))
      entry[leaf] = new
      changed.data.mixture[source][parent] = entry
    else:
      changed.data.mixture[source][field] = new
    after = keys_of(changed)
    for k, name in enumerate(names):
      check(f"{source}.{field}", category if name == source else NONE, base[k], after[k])


def test_a_field_of_the_whole_mixture_reaches_each_source_that_does_not_set_it(
    data_dir, downloads, keys_of, tmp_path):
  config = mixture_config(data_dir, downloads)
  base = keys_of(config)
  # (path, what it does to a_clean, what it does to b_resaved, whose resave settings
  # are its own but for the seed).
  expected = {
      "data.image_size": (FEATURES, FEATURES), "data.grayscale": (FEATURES, FEATURES),
      "data.native_crop": (FEATURES, FEATURES), "data.data_dir": (DATASET, DATASET),
      "data.resave.quality": (FEATURES, NONE), "data.resave.scale": (NONE, NONE),
      "data.resave.seed": (NONE, FEATURES), "data.eval_examples_per_class": (FILES, FILES),
      "data.num_folds": (ROLES, ROLES), "data.validation_fraction": (ROLES, ROLES),
      "model.truncation": (FEATURES, FEATURES), "model.regions": (FEATURES, FEATURES),
      "model.hidden": (NONE, NONE), "model.num_sources": (NONE, NONE),
      "augment.device.flip": (NONE, NONE),
  }
  for path, categories in expected.items():
    after = keys_of(mutated(config, path, downloads, str(tmp_path)))
    for k, category in enumerate(categories):
      check(path, category, base[k], after[k])


@pytest.mark.parametrize("fields", [COOCCURRENCE_FIELDS, SPECTRAL_FIELDS],
                         ids=["cooccurrence", "spectral"])
def test_feature_settings_name_the_model_and_every_field_but_the_heads(fields):
  config = (cooccurrence if "model.truncation" in fields else spectral).get_config()
  model = models.create_model(config.model)
  settings_ = model.feature_settings()
  assert settings_.pop("model") == type(model).__name__
  expected = {path.split(".", 1)[1] for path, category in fields.items()
              if category == FEATURES} - {"name"}
  assert set(settings_) == expected
  for name in expected:
    assert settings_[name] == getattr(model, name)


# ---------------------------------------------------------------------------------------
# The caches of a mixture's sources, whatever their order, hold each source's features.
# ---------------------------------------------------------------------------------------

KINDS = {"synthetic": {"name": "synthetic", "synthetic": {"num_train": 8, "num_validation": 4,
                                                            "num_test": 4, "seed": 3}},
         "ciplab": {"name": "ciplab"},
         "ciplab_resaved": {"name": "ciplab", "resave": {"quality": (50, 70),
                                                         "scale": (0.6, 0.9)}}}


@settings(max_examples=4)
@given(st.permutations(list(KINDS)))
def test_a_mixtures_cached_features_are_each_sources_own_in_any_order(data_dir, downloads,
                                                                      kinds):
  config = ciplab_config(data_dir, downloads, "spectral")
  config.model.num_bins = 16
  config.data.name = "synthetic"
  names = [f"{'abc'[i]}_{kind}" for i, kind in enumerate(kinds)]
  for name, kind in zip(names, kinds):
    config.data.mixture[name] = dict(KINDS[kind])
  assert mixture.source_names(config.data) == names
  model = models.create_model(config.model)
  cached = feature_cache.load_or_compute(config, model,
                                         input_pipeline.load_data(config, cache="stream"))
  images = input_pipeline.load_data(config, cache="memory")
  for role in ("train", "test"):
    assert list(cached[role].names) == names
    for k, name in enumerate(names):
      part = images[role].parts[k]
      features = cached[role].parts[k]
      np.testing.assert_array_equal(features.labels, part.labels)
      np.testing.assert_array_equal(features.paths, part.paths)
      expected = model.apply({}, preprocessing.rescale(part.images), method="features")
      np.testing.assert_allclose(features.take(np.arange(len(part))), expected,
                                 rtol=1e-5, atol=1e-5, err_msg=f"{role} {name}")
    # The mixture's batches read each source's rows.
    positions = np.arange(len(cached[role]))[::-1]
    np.testing.assert_array_equal(
        cached[role].take_batch(positions)[0],
        np.concatenate([cached[role].parts[k].take(np.arange(len(p)))
                        for k, p in enumerate(cached[role].parts)])[positions])
