"""Every config file builds a config that passes the start-up checks."""

import glob
import importlib
import os

import pytest

from configs import content
from configs import general
from fakeface_jax import config_checks
from fakeface_jax.data import artifacts
from fakeface_jax.data import degradations
from fakeface_jax import models
from fakeface_jax.training import feature_cache

CONFIG_FILES = sorted(path for path in glob.glob(
    os.path.join(os.path.dirname(__file__), "..", "configs", "*.py"))
                      if not path.endswith("__init__.py"))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_file_passes_the_config_checks(path):
  module = importlib.import_module(f"configs.{os.path.basename(path)[:-3]}")
  config_checks.check_config(module.get_config())


def test_the_general_config_mixes_every_shared_training_set():
  config = general.get_config()
  clean = ["ciplab", "faces140k", "lfw_faceswap"]
  assert sorted(config.data.mixture) == sorted(clean + [f"{s}_resaved" for s in clean])
  assert all(source.manual_dir.startswith("../shared/data/")
             for source in config.data.mixture.values())
  # Each re-saved copy reads its clean source's files, and the head has a pair for each.
  for name in clean:
    copy = config.data.mixture[f"{name}_resaved"]
    assert copy.manual_dir == config.data.mixture[name].manual_dir
    assert degradations.FileResave.from_config(copy.resave) is not None
  assert config.model.num_sources == 6
  # One flag points a source and its copy at a full download.
  config.data.mixture.ciplab.manual_dir = "/data/ciplab"
  assert config.data.mixture.ciplab_resaved.manual_dir == "/data/ciplab"
  # Nothing changes the images between steps, so its features are computed once.
  assert feature_cache.why_per_step(config, models.create_model(config.model)) is None


def test_the_pseudo_fake_copies_follow_their_source_and_match_pseudo_only():
  config = general.get_config("pseudo")
  config.data.mixture.faces140k.manual_dir = "/data/140k"
  for name in ("faces140k_pseudo", "faces140k_resaved_pseudo"):
    copy = config.data.mixture[name]
    assert copy.manual_dir == "/data/140k"
    # The settings --pseudo_only gives every source: the two share cached features.
    assert tuple(copy.pseudo_fakes.kinds) == artifacts.PSEUDO_FAKE_KINDS
  assert "resave" in config.data.mixture.faces140k_resaved_pseudo
  assert "resave" not in config.data.mixture.faces140k_pseudo
  assert config.model.num_sources == 12
  with pytest.raises(ValueError, match="configs/general.py takes"):
    general.get_config("pseudo_only")


@pytest.mark.parametrize("arg", ["", "cnn", "pseudo", "cnn,pseudo"])
def test_each_content_variant_reads_general_mixture_at_64_px(arg):
  config = content.get_config(arg)
  config_checks.check_config(config)
  assert config.model.name == ("residual_cnn" if "cnn" in arg else "mlp")
  assert config.data.image_size == 64
  assert sorted(config.data.mixture) == sorted(general.get_config(
      "pseudo" if "pseudo" in arg else "").data.mixture)
  with pytest.raises(ValueError, match="configs/content.py takes"):
    content.get_config(arg + ",gray")


def test_self_blend_only_makes_every_fake_of_every_source_a_self_blend():
  config = general.get_config("self_blend_only")
  config_checks.check_config(config)
  assert sorted(config.data.mixture) == sorted(general.get_config().data.mixture)
  for entry in config.data.mixture.values():
    assert tuple(entry.pseudo_fakes.kinds) == ("self_blend",)


def test_the_faces_variant_crops_faces_and_adds_an_enlarged_copy_of_each_source():
  config = general.get_config("faces")
  config_checks.check_config(config)
  assert config.data.face_crop.enabled and not general.get_config().data.face_crop.enabled
  # Tighter than FFHQ's framing, so that a crop stays inside a face image that fills its file.
  assert config.data.face_crop.margin == general.FACES_MARGIN < 1
  clean = ["ciplab", "faces140k", "lfw_faceswap"]
  assert sorted(config.data.mixture) == sorted(
      clean + [f"{s}_{copy}" for s in clean for copy in ("resaved", "enlarged")])
  assert config.model.num_sources == 9
  config.data.mixture.lfw_faceswap.manual_dir = "/data/lfw"
  enlarged = config.data.mixture.lfw_faceswap_enlarged
  assert enlarged.manual_dir == "/data/lfw" and enlarged.name == "image_folder"
  resave = degradations.FileResave.from_config(enlarged.resave)
  assert resave.min_scale >= 1 and resave.max_scale > 2
