"""Tests of tools/role_folders.py: a run's held-out files laid out as folders."""

import csv
import json
import os

from tools import role_folders


def _workdir(tmp_path, mixture, rows):
  workdir = tmp_path / "run"
  workdir.mkdir()
  config = {"data": {"manual_dir": str(tmp_path / "single"), "mixture": mixture}}
  (workdir / "config.json").write_text(json.dumps(config))
  with open(workdir / "data_files.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["role", "path", "label", "difficulty"])
    writer.writerows(rows)
  return str(workdir)


def test_a_mixture_runs_test_files_go_under_their_source_and_class(tmp_path):
  mixture = {"a": {"manual_dir": str(tmp_path / "data_a")},
             "b": {"manual_dir": str(tmp_path / "data_b")},
             # Its files as the run read them are re-saved copies, which no link shows.
             "b_resaved": {"manual_dir": str(tmp_path / "data_b"),
                           "resave": {"quality": [60, 95]}}}
  workdir = _workdir(tmp_path, mixture, [
      ["train", "a:train/real/1.jpg", "real", "none"],
      ["test", "a:valid/real/2.jpg", "real", "none"],
      ["test", "b:fake/3.jpg", "fake", "hard"],
      ["test", "b_resaved:fake/3.jpg", "fake", "hard"]])
  counts = role_folders.link_role(workdir, "test", str(tmp_path / "out"))
  assert counts == {"a": 1, "b": 1}
  assert os.readlink(tmp_path / "out" / "a" / "real" / "valid__real__2.jpg") == str(
      tmp_path / "data_a" / "valid" / "real" / "2.jpg")
  assert os.listdir(tmp_path / "out" / "b" / "fake") == ["fake__3.jpg"]
  assert not os.path.exists(tmp_path / "out" / "b_resaved")


def test_a_single_dataset_runs_files_go_under_their_class(tmp_path):
  workdir = _workdir(tmp_path, {}, [["test", "valid/fake/9.jpg", "fake", "none"]])
  assert role_folders.link_role(workdir, "test", str(tmp_path / "out")) == {"": 1}
  assert os.readlink(tmp_path / "out" / "fake" / "valid__fake__9.jpg") == str(
      tmp_path / "single" / "valid" / "fake" / "9.jpg")
