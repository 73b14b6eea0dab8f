"""Tests of the file-based dataset builders, splits, subsets and the bad-files report."""

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from configs import default
from conftest import make_ciplab
from conftest import shared_data
from conftest import write_image
from fakeface_jax import classes
from fakeface_jax.data import datasets
from fakeface_jax.data import folders
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import selection
from fakeface_jax import errors


def data_config(tmp_path, name, manual_dir, **overrides):
  config = default.get_config()
  config.data.name = name
  config.data.manual_dir = str(manual_dir)
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.image_size = 16
  for key, value in overrides.items():
    config.data[key] = value
  return config


def make_140k(root, per_class=3, splits=("train", "valid")):
  base = root / "real_vs_fake" / "real-vs-fake"
  for s, split in enumerate(splits):
    for label in ("real", "fake"):
      for i in range(per_class):
        write_image(str(base / split / label / f"{i:05d}.jpg"), seed=100 * s + i)
  return base


@pytest.mark.parametrize("level", ["root", "real_vs_fake", "real-vs-fake"])
def test_140k_layout_found_from_any_level_and_absent_splits_stay_absent(tmp_path, level):
  base = make_140k(tmp_path / "download")
  manual_dir = {"root": tmp_path / "download", "real_vs_fake": base.parent,
                "real-vs-fake": base}[level]
  builder = datasets.prepare(data_config(tmp_path, "real_vs_fake_140k", manual_dir).data)
  assert sorted(builder.info.splits.keys()) == ["train", "valid"]
  meta = selection.read_metadata(datasets.data_source(builder, "train"))
  assert sorted(meta["label"].tolist()) == [0, 0, 0, 1, 1, 1]
  for path, label in zip(meta["path"], meta["label"]):
    assert path.split(os.sep)[-2] == classes.NAMES[label]


def test_bad_files_are_left_out_and_reported(tmp_path):
  base = make_140k(tmp_path / "download")
  (base / "train" / "fake" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
  with open(base / "train" / "real" / "00000.jpg", "rb") as f:
    truncated = f.read()[:200]
  (base / "train" / "real" / "truncated.jpg").write_bytes(truncated)
  builder = datasets.prepare(data_config(tmp_path, "real_vs_fake_140k", tmp_path).data)
  assert builder.info.splits["train"].num_examples == 6
  with open(os.path.join(builder.data_dir, folders.BAD_FILES_JSON)) as f:
    bad = json.load(f)
  assert sorted(os.path.basename(b["path"]) for b in bad) == ["broken.jpg", "truncated.jpg"]
  assert all(b["error"] for b in bad)


def test_ciplab_difficulty_filter_and_stratified_holdout(tmp_path):
  make_ciplab(tmp_path, num_real=10, fakes_per_difficulty=5)
  config = data_config(tmp_path, "ciplab", tmp_path)
  data = input_pipeline.load_data(config)
  assert len(data["train"]) + len(data["test"]) == 25
  assert len(data["test"]) == 2 + 1 + 1 + 1  # 20% of each stratum: real, easy, mid, hard.
  assert not set(data["train"].paths) & set(data["test"].paths)
  assert data["validation"] is data["test"] or np.array_equal(data["validation"].paths,
                                                               data["test"].paths)
  fakes = data["train"].difficulty[data["train"].labels == 0]
  assert set(fakes) == set(folders.DIFFICULTIES)

  config.data.fake_difficulties = "hard"
  hard = input_pipeline.load_data(config)
  kept = np.concatenate([hard["train"].difficulty, hard["test"].difficulty])
  assert sorted(set(kept)) == ["hard", "none"] and len(kept) == 15


def test_validation_fraction_holds_out_validation_apart_from_test(tmp_path, caplog):
  make_ciplab(tmp_path, num_real=20, fakes_per_difficulty=10)
  config = data_config(tmp_path, "ciplab", tmp_path, num_folds=5, fold=1)
  with caplog.at_level(logging.WARNING):
    shared = input_pipeline.load_data(config)
  assert "The test split is also the validation split" in caplog.text
  np.testing.assert_array_equal(shared["validation"].paths, shared["test"].paths)

  config.data.validation_fraction = 0.25
  caplog.clear()
  data = input_pipeline.load_data(config)
  assert "also the" not in caplog.text
  np.testing.assert_array_equal(data["test"].paths, shared["test"].paths)
  roles = [set(data[role].paths) for role in ("train", "validation", "test")]
  assert not (roles[0] & roles[1] or roles[0] & roles[2] or roles[1] & roles[2])
  assert roles[0] | roles[1] == set(shared["train"].paths)
  # A quarter of each stratum of the 40 training images: 4 real, 2 of each difficulty.
  assert sorted(data["validation"].difficulty) == ["easy"] * 2 + ["hard"] * 2 + [
      "mid"] * 2 + ["none"] * 4

  del config.data["validation_fraction"]  # The config of a run saved before the key.
  np.testing.assert_array_equal(input_pipeline.load_data(config)["validation"].paths,
                                shared["test"].paths)


def test_validation_fraction_makes_a_validation_split_the_test_split(tmp_path):
  make_140k(tmp_path / "download", per_class=4)
  config = data_config(tmp_path, "real_vs_fake_140k", tmp_path / "download",
                       validation_fraction=0.5)
  data = input_pipeline.load_data(config)
  assert (len(data["train"]), len(data["validation"]), len(data["test"])) == (4, 4, 8)
  assert all("/train/" in p for p in data["validation"].paths)
  assert all("/valid/" in p for p in data["test"].paths)


def test_kfold_folds_partition_the_data(tmp_path):
  strata = np.array(list("aaaaabbbbbbbcc"))
  masks = [selection.stratified_holdout(strata, 0.2, seed=3, num_folds=3, fold=k)
           for k in range(3)]
  np.testing.assert_array_equal(np.sum(masks, axis=0), np.ones(len(strata)))
  for mask in masks:  # Each fold holds about a third of every stratum.
    for stratum in "abc":
      count = mask[strata == stratum].sum()
      assert abs(count - (strata == stratum).sum() / 3) < 1
  again = selection.stratified_holdout(strata, 0.2, seed=3, num_folds=3, fold=0)
  np.testing.assert_array_equal(masks[0], again)


def test_balanced_subset_is_seeded_and_balanced():
  labels = np.array([0] * 30 + [1] * 10)
  subset = selection.balanced_subset(labels, 5, seed=1)
  assert np.bincount(labels[subset]).tolist() == [5, 5]
  np.testing.assert_array_equal(subset, selection.balanced_subset(labels, 5, seed=1))
  assert not np.array_equal(subset, selection.balanced_subset(labels, 5, seed=2))
  assert len(selection.balanced_subset(labels, None, seed=0)) == 40


def test_image_folder_reads_any_format_case_and_depth(tmp_path):
  root = tmp_path / "photos"
  write_image(str(root / "Real" / "a.png"), mode="RGBA", fmt="PNG")
  write_image(str(root / "Real" / "deep" / "er" / "b.bmp"), fmt="BMP")
  write_image(str(root / "FAKE" / "c.webp"), fmt="WEBP")
  write_image(str(root / "fake" / "d.jpeg"), mode="L", fmt="JPEG")
  (root / "fake" / "notes.txt").write_text("not an image")
  (root / "other").mkdir()
  write_image(str(root / "other" / "e.jpg"))  # Neither class: ignored.
  config = data_config(tmp_path, "image_folder", root, test_fraction=0.0)
  data = input_pipeline.load_data(config)
  train = data["train"]
  assert sorted(zip(map(os.path.basename, train.paths), train.labels.tolist())) == [
      ("a.png", 1), ("b.bmp", 1), ("c.webp", 0), ("d.jpeg", 0)]
  assert train.images.shape == (4, 16, 16, 3)


def test_image_folder_with_split_folders(tmp_path):
  root = tmp_path / "photos"
  for split in ("train", "val"):
    for label in ("real", "fake"):
      write_image(str(root / split / label / "x.jpg"))
  builder = datasets.prepare(data_config(tmp_path, "image_folder", root).data)
  assert sorted(builder.info.splits.keys()) == ["train", "valid"]


@pytest.mark.parametrize("name", ["real_vs_fake_140k", "ciplab", "image_folder"])
@pytest.mark.parametrize("problem", ["missing", "empty", "unset"])
def test_missing_or_empty_manual_dir_says_what_to_download(tmp_path, name, problem):
  folder = tmp_path / "nothing_here"
  if problem == "empty":
    folder.mkdir()
  config = data_config(tmp_path, name, folder)
  if problem == "unset":
    config.data.manual_dir = None
  hint = {"real_vs_fake_140k": "kaggle.com/datasets/xhlulu", "ciplab": "kaggle.com/datasets/ciplab",
          "image_folder": "real/ and fake/"}[name]
  with pytest.raises(datasets.DatasetError, match=hint):
    datasets.prepare(config.data)
  # Checked before TFDS runs: nothing is created under the data_dir.
  assert not (tmp_path / "tfds").exists()


def test_unknown_difficulty_is_a_config_error(tmp_path):
  base = tmp_path / "real_and_fake_face"
  write_image(str(base / "training_real" / "r.jpg"))
  write_image(str(base / "training_fake" / "hard_1.jpg"))
  config = data_config(tmp_path, "ciplab", tmp_path, fake_difficulties="hardest")
  with pytest.raises(errors.ConfigError, match="unknown \\['hardest'\\]"):
    input_pipeline.load_data(config)


# --- The real downloads under ../shared/data (skipped when absent, failed under CI).

def test_a_missing_shared_folder_fails_under_ci_and_skips_elsewhere(monkeypatch):
  monkeypatch.setenv("CI", "true")
  with pytest.raises(pytest.fail.Exception, match="no_such_folder is absent.*CI=true"):
    shared_data("no_such_folder")
  monkeypatch.delenv("CI")
  with pytest.raises(pytest.skip.Exception, match="no_such_folder is absent"):
    shared_data("no_such_folder")


def test_shared_140k_counts_and_study1_subset(tmp_path):
  root = shared_data("real_vs_fake_140k")
  config = data_config(tmp_path, "real_vs_fake_140k", root, train_examples_per_class=100,
                       eval_examples_per_class=50)
  builder = datasets.prepare(config.data)
  assert builder.info.splits["train"].num_examples == 703 + 709
  assert builder.info.splits["valid"].num_examples == 102 + 95
  data = input_pipeline.load_data(config)
  assert np.bincount(data["train"].labels).tolist() == [100, 100]
  assert np.bincount(data["validation"].labels).tolist() == [50, 50]
  again = selection.select_examples(config, builder)
  assert sorted(again) == ["test", "train", "validation"]
  manifest = tmp_path / "files.csv"
  input_pipeline.write_manifest(data, str(manifest))
  rows = manifest.read_text().splitlines()
  assert rows[0] == "role,path,label,difficulty" and len(rows) == 1 + 200 + 100 + 100


def test_shared_ciplab_difficulties(tmp_path):
  root = shared_data("ciplab_256")
  builder = datasets.prepare(data_config(tmp_path, "ciplab", root).data)
  meta = selection.read_metadata(datasets.data_source(builder, "train"))
  assert np.bincount(meta["label"]).tolist() == [768, 864]
  fakes = os.listdir(os.path.join(root, "real_and_fake_face", "training_fake"))
  for difficulty in folders.DIFFICULTIES:
    on_disk = sum(name.startswith(difficulty + "_") for name in fakes)
    assert on_disk and int((meta["difficulty"] == difficulty).sum()) == on_disk


def test_preparation_survives_every_kind_of_bad_input(tmp_path):
  root = tmp_path / "photos"
  real, fake = root / "real", root / "fake"
  write_image(str(real / "rgb.jpg"))
  write_image(str(real / "alpha.png"), mode="RGBA", fmt="PNG")
  write_image(str(real / "gray.jpg"), mode="L", fmt="JPEG")
  Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).convert("CMYK").save(real / "cmyk.jpg")
  Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(real / "16bit.png")
  write_image(str(fake / "tiny.png"), size=1, fmt="PNG")
  (fake / "truncated.jpg").write_bytes((real / "rgb.jpg").read_bytes()[:100])
  (fake / "text.jpg").write_text("not an image at all")
  (fake / "empty.jpg").write_bytes(b"")
  (root / "FAKE" / "empty_class_folder").mkdir(parents=True)
  os.symlink(root, real / "loop")  # A symlink loop must not hang the walk.
  config = data_config(tmp_path, "image_folder", root, test_fraction=0.0)
  builder = datasets.prepare(config.data)
  data = input_pipeline.load_data(config)
  names = sorted(map(os.path.basename, data["train"].paths))
  assert names == ["16bit.png", "alpha.png", "cmyk.jpg", "gray.jpg", "rgb.jpg", "tiny.png"]
  with open(os.path.join(builder.data_dir, folders.BAD_FILES_JSON)) as f:
    bad = {os.path.basename(b["path"]): b["error"] for b in json.load(f)}
  assert sorted(bad) == ["empty.jpg", "text.jpg", "truncated.jpg"]
  assert all(bad.values())


def test_shared_ciplab_originals_sample(tmp_path):
  root = shared_data("ciplab_originals_sample")
  builder = datasets.prepare(data_config(tmp_path, "ciplab", root).data)
  meta = selection.read_metadata(datasets.data_source(builder, "train"))
  files = {label: os.listdir(os.path.join(root, "real_and_fake_face", f"training_{label}"))
           for label in ("real", "fake")}
  assert np.bincount(meta["label"]).tolist() == [len(files["fake"]), len(files["real"])]
  for difficulty in folders.DIFFICULTIES:
    on_disk = sum(name.startswith(difficulty + "_") for name in files["fake"])
    assert int((meta["difficulty"] == difficulty).sum()) == on_disk


def test_shared_lfw_faceswap_layout_is_an_image_folder_with_its_own_splits(tmp_path):
  root = shared_data("lfw_faceswap")
  config = data_config(tmp_path, "image_folder", root)
  builder = folders.make_builder("image_folder", config.data, str(tmp_path / "tfds"))
  examples = builder.check_download()
  counts = {split: np.bincount([e.label for e in found]).tolist()
            for split, found in examples.items()}
  # [fake, real], as ../shared/data/README.md lists them.
  assert counts == {"train": [4219, 5319], "valid": [527, 665]}
  for found in examples.values():
    for example in found[::1000]:  # Both classes alike: 224 px JPEG.
      with Image.open(example.path) as image:
        assert (image.format, image.size) == ("JPEG", (224, 224)), example.path
