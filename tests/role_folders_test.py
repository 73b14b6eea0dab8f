"""Tests of tools/role_folders.py: a run's held-out files laid out as folders."""

import csv
import io
import json
import os

import numpy as np
from PIL import Image

from configs import default
from fakeface_jax.data import degradations
from tools import role_folders

RESAVE = {"scale": [0.4, 0.6], "quality": [60, 80], "seed": 2}


def _workdir(tmp_path, mixture, rows):
  """A run directory with a config.json as main.py writes it and a data_files.csv."""
  config = default.get_config()
  config.data.manual_dir = str(tmp_path / "single")
  config.data.mixture = mixture
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(config.to_dict()))
  with open(workdir / "data_files.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["role", "path", "label", "difficulty"])
    writer.writerows(rows)
  return str(workdir)


def _image_file(path, seed=0) -> bytes:
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), np.uint8)
  Image.fromarray(pixels).save(path, format="PNG")
  return path.read_bytes()


def test_a_mixture_runs_test_files_go_under_their_source_and_class(tmp_path):
  data = _image_file(tmp_path / "data_b" / "fake" / "3.png")
  mixture = {"a": {"manual_dir": str(tmp_path / "data_a")},
             "b": {"manual_dir": str(tmp_path / "data_b")},
             "b_resaved": {"manual_dir": str(tmp_path / "data_b"), "resave": RESAVE}}
  workdir = _workdir(tmp_path, mixture, [
      ["train", "a:train/real/1.jpg", "real", "none"],
      ["test", "a:valid/real/2.jpg", "real", "none"],
      ["test", "b:fake/3.png", "fake", "hard"],
      ["test", "b_resaved:fake/3.png", "fake", "hard"]])
  counts = role_folders.lay_out_role(workdir, "test", str(tmp_path / "out"))
  assert counts == {"a": 1, "b": 1, "b_resaved": 1}
  assert os.readlink(tmp_path / "out" / "a" / "real" / "valid__real__2.jpg") == str(
      tmp_path / "data_a" / "valid" / "real" / "2.jpg")
  assert os.readlink(tmp_path / "out" / "b" / "fake" / "fake__3.png") == str(
      tmp_path / "data_b" / "fake" / "3.png")
  # The re-saved source's file is the copy the run read (the pipeline re-saves the
  # same bytes under the same path), as a JPEG.
  copy = tmp_path / "out" / "b_resaved" / "fake" / "fake__3.png.jpg"
  resave = degradations.FileResave(0.4, 0.6, 60, 80, seed=2)
  assert not copy.is_symlink() and copy.read_bytes() == resave(data, "fake/3.png")
  with Image.open(io.BytesIO(copy.read_bytes())) as image:
    assert image.format == "JPEG" and image.width < 40


def test_a_single_dataset_runs_files_go_under_their_class(tmp_path):
  workdir = _workdir(tmp_path, {}, [["test", "valid/fake/9.jpg", "fake", "none"]])
  assert role_folders.lay_out_role(workdir, "test", str(tmp_path / "out")) == {"": 1}
  assert os.readlink(tmp_path / "out" / "fake" / "valid__fake__9.jpg") == str(
      tmp_path / "single" / "valid" / "fake" / "9.jpg")


def test_a_re_saved_single_dataset_gets_its_copies(tmp_path):
  data = _image_file(tmp_path / "single" / "valid" / "real" / "4.jpg", seed=1)
  workdir = _workdir(tmp_path, {}, [["test", "valid/real/4.jpg", "real", "none"]])
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  config["data"]["resave"] = RESAVE
  (tmp_path / "run" / "config.json").write_text(json.dumps(config))
  role_folders.lay_out_role(workdir, "test", str(tmp_path / "out"))
  copy = tmp_path / "out" / "real" / "valid__real__4.jpg"
  assert copy.read_bytes() == degradations.FileResave(0.4, 0.6, 60, 80, seed=2)(
      data, "valid/real/4.jpg")
