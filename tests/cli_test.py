"""Tests of the command lines: help, one-line errors, exit statuses and predict's output.

Every entry point runs as a subprocess (`python -m` or main.py, so no reinstall is
needed); the processes of one test start together, so the batch costs about one start.
"""

import csv
import importlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types

import numpy as np
import pytest
from absl import logging as absl_logging
from PIL import Image

from fakeface_jax import cli
from fakeface_jax.data import datasets
from fakeface_jax.data import input_pipeline
from fakeface_jax.evaluation import cross_dataset
from fakeface_jax.evaluation import evaluate
from fakeface_jax.evaluation import split_reports
from fakeface_jax.serving import inference
from fakeface_jax.serving import predict
from fakeface_jax.training import checkpointing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Console script -> how the tests run it without installing.
COMMANDS = {
    "fakeface-train": ["main.py"],
    "fakeface-predict": ["-m", "fakeface_jax.serving.predict"],
    "fakeface-evaluate": ["-m", "fakeface_jax.evaluation.evaluate"],
    "fakeface-sweep": ["-m", "fakeface_jax.experiments.sweep"],
    "fakeface-analysis": ["-m", "fakeface_jax.experiments.analysis"],
    "fakeface-benchmark": ["-m", "fakeface_jax.benchmarks.benchmark"],
    "fakeface-input-benchmark": ["-m", "fakeface_jax.benchmarks.input_benchmark"],
    "fakeface-scale-benchmark": ["-m", "fakeface_jax.benchmarks.scale_benchmark"],
    "fakeface-caches": ["-m", "fakeface_jax.training.caches"],
}
# The first flag each tool's help must list.
FIRST_FLAG = {"fakeface-train": "--config", "fakeface-predict": "--workdir",
              "fakeface-evaluate": "--workdir", "fakeface-sweep": "--sweep",
              "fakeface-analysis": "--config", "fakeface-benchmark": "--model",
              "fakeface-input-benchmark": "--config", "fakeface-scale-benchmark": "--config",
              "fakeface-caches": "--data_dir"}


def run_together(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
  """Runs Python command lines at once (each start imports JAX) and waits for all."""
  env = {**os.environ, "FAKEFACE_NO_REEXEC": "1"}
  processes = [subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for args in commands]
  results = []
  for args, process in zip(commands, processes):
    stdout, stderr = process.communicate(timeout=300)
    results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
  return results


def test_every_console_script_names_an_importable_entry_point():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  assert set(scripts) == set(COMMANDS)
  for target in scripts.values():
    module, function = target.split(":")
    assert callable(getattr(importlib.import_module(module), function))


# Words of a tool's help that name values its code holds elsewhere, written out so that
# help loads no JAX.
HELP_NAMES = {"fakeface-evaluate": f"any of {', '.join(cross_dataset.SHIFTS)}.",
              "fakeface-caches": f"by default {datasets.DEFAULT_DATA_DIR}."}


def test_help_prints_the_tools_usage_flags_and_examples_first():
  names = list(COMMANDS)
  # -h for one tool, --help for the others: both are this tool's help. Python's import
  # log (-X importtime, on stderr) shows which modules each help ran.
  results = run_together([["-X", "importtime"] + COMMANDS[n]
                          + ["-h" if n == "fakeface-benchmark" else "--help"]
                          for n in names] + [["-m", "fakeface_jax.experiments.crossval", "--help"]])
  for name, proc in zip(names, results):
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"usage: {name} "), lines[0]
    flags_at = lines.index("flags:")
    assert lines[flags_at + 1].startswith(f"  {FIRST_FLAG[name]}: ")
    examples = lines[lines.index("examples:") + 1:]
    assert examples[0].startswith(f"  {name} --")
    # The tool's own flags only: absl's and the libraries' stay behind --helpfull.
    assert "--logtostderr" not in proc.stdout and "--helpfull" in lines[-1]
    # No tool's help loads JAX (`cli.lazy_import`): it answers in a fraction of a second.
    assert "jax._src." not in proc.stderr, name
    assert HELP_NAMES.get(name, "") in " ".join(proc.stdout.split()), name
  # Cross-validation is not a command of its own: one line pointing at training's.
  crossval = results[-1]
  assert crossval.returncode == 0
  assert crossval.stdout.count("\n") == 1 and "fakeface-train --folds" in crossval.stdout


def test_user_mistakes_fail_in_one_error_line_without_traceback(tmp_path):
  missing = str(tmp_path / "no_run")
  cases = [  # (command line, exit status, words of the message)
      (["main.py", "--workdir", missing], cli.USAGE_ERROR, "missing --config"),
      (COMMANDS["fakeface-predict"] + ["--workdir", missing, "x.jpg"], cli.USER_ERROR,
       "does not exist"),
      (COMMANDS["fakeface-predict"] + ["--workdir", missing], cli.USAGE_ERROR,
       "give IMAGE_OR_FOLDER"),
      (COMMANDS["fakeface-evaluate"] + ["--workdir", missing], cli.USER_ERROR,
       "does not exist"),
      (COMMANDS["fakeface-sweep"] + ["--sweep", "nope.py", "--workdir", missing],
       cli.USER_ERROR, "cannot load config file nope.py"),
      (COMMANDS["fakeface-analysis"] + ["--config", "configs/default.py", "--workdir",
                                        missing, "--config.num_epoch=1"],
       cli.USAGE_ERROR, "did you mean"),
      (COMMANDS["fakeface-benchmark"] + ["--model", "cnn", "extra"], cli.USAGE_ERROR,
       "unexpected arguments: extra"),
      (COMMANDS["fakeface-input-benchmark"] + ["--config", "nope.py"], cli.USAGE_ERROR,
       "cannot load --config=nope.py"),
      (COMMANDS["fakeface-scale-benchmark"] + ["--config", "configs/cnn.py", "--root",
                                               "configs"], cli.USER_ERROR,
       "is not empty and holds no scale_tree.json"),
      (["-m", "fakeface_jax.experiments.crossval", "--folds", "5"], cli.USAGE_ERROR, "--folds K"),
      (COMMANDS["fakeface-caches"] + ["--data_dir", missing, "--remove", "0a2f40b2"],
       cli.USER_ERROR, "no feature cache named 0a2f40b2"),
  ]
  for (args, status, words), proc in zip(cases, run_together([c[0] for c in cases])):
    assert proc.returncode == status, (args, proc.stderr[-2000:])
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and words.lower() in line.lower(), line
    assert not os.path.exists(missing)


def test_lazy_import_runs_the_module_at_its_first_attribute_access(tmp_path, monkeypatch):
  ran = tmp_path / "ran"
  (tmp_path / "lazy_probe.py").write_text(f"open({str(ran)!r}, 'w').close()\nVALUE = 7\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  module = cli.lazy_import("lazy_probe")
  try:
    assert sys.modules["lazy_probe"] is module and not ran.exists()
    assert module.VALUE == 7 and ran.exists()
    assert cli.lazy_import("lazy_probe") is module
  finally:
    del sys.modules["lazy_probe"]
  with pytest.raises(ModuleNotFoundError, match="lazy_probe_missing"):
    cli.lazy_import("lazy_probe_missing")


def snapshot(directory: str) -> dict[str, float]:
  return {os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
          for root, dirs, files in os.walk(directory) for name in files + dirs}


def test_predict_writes_every_row_to_stdout_and_exits_3_when_a_file_failed(
    learned_run, tmp_path):
  workdir = learned_run[0]
  good, corrupt = tmp_path / "good.png", tmp_path / "corrupt.jpg"
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(good)
  corrupt.write_bytes(b"not an image")
  paths = [str(good), str(corrupt), str(tmp_path / "missing.jpg")]
  before = snapshot(workdir)
  [proc] = run_together([COMMANDS["fakeface-predict"] + ["--workdir", workdir, "--faces",
                                                          "off", *paths]])
  assert proc.returncode == predict.SOME_FILES_FAILED, proc.stderr[-2000:]
  rows = list(csv.DictReader(io.StringIO(proc.stdout)))
  assert [r["path"] for r in rows] == paths
  assert re.fullmatch(r"[01]\.\d{6}", rows[0]["p_fake"]) and not rows[0]["error"]
  assert "ImageDecodeError" in rows[1]["error"]
  assert "FileNotFoundError" in rows[2]["error"]
  assert "3 files: " in proc.stderr and "2 unreadable" in proc.stderr
  assert snapshot(workdir) == before  # Inference never writes into the run.


def test_a_checkpoint_step_that_does_not_exist_lists_the_steps(learned_run):
  steps = checkpointing.usable_steps(learned_run[0])
  with pytest.raises(checkpointing.CheckpointError, match=re.escape(str(steps))):
    inference.load_run(learned_run[0], "999")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_p_fake_has_six_decimals_in_both_formats(tmp_path, fmt):
  rows = [{"path": "a.jpg", "p_fake": 1e-7, "prediction": "real", "error": None},
          {"path": "b.jpg", "p_fake": 1.0, "prediction": "fake", "error": None},
          {"path": "c.jpg", "p_fake": None, "prediction": None, "error": "OSError: x"}]
  output = tmp_path / "out"
  predict.write_rows(rows, str(output), fmt)
  text = output.read_text()
  assert "0.000000" in text and "1.000000" in text and "e-0" not in text
  if fmt == "json":
    parsed = [json.loads(line) for line in text.splitlines()]
    assert [r["p_fake"] for r in parsed] == [0.0, 1.0, None]


def test_evaluate_reports_accuracy_at_half_and_at_the_validation_threshold():
  # "Images" that are their own P(fake), under a predictor that says so.
  split = input_pipeline.ArraySplit(images=np.array([0.9, 0.4, 0.2, 0.1]),
                                    labels=np.array([0, 0, 1, 1]))
  predictor = types.SimpleNamespace(score=lambda images, tables: (images, None))
  report = split_reports.split_report(predictor, split, threshold=0.3)
  assert report["accuracy_at_0.5"] == 0.75 and report["accuracy"] == 1.0
  assert evaluate.accuracy_line("test", report) == (
      "test accuracy: 0.7500 at threshold 0.5, 1.0000 at the validation threshold 0.3000")


def test_tfds_noise_is_dropped_and_other_warnings_kept():
  datasets.quiet_tfds()
  logger = absl_logging.get_absl_logger()
  def record(msg, *args):
    return logging.LogRecord("absl", logging.WARNING, "x.py", 1, msg, args, None)
  assert not logger.filter(record("Using custom data configuration: %s", "cfg"))
  assert not logger.filter(record("Variant folder %s has no %s", "/d", "dataset_info.json"))
  assert logger.filter(record("Leaving out %s: %s", "a.jpg", "bad"))


def test_ctrl_c_outside_the_train_loop_is_one_line_and_status_130(monkeypatch, capsys):
  def interrupted(argv):
    raise KeyboardInterrupt
  monkeypatch.setattr(cli.cpu_runtime, "reexec_with_huge_pages", lambda: None)
  with pytest.raises(SystemExit) as exit_info:
    cli._call(interrupted, ["fakeface-train"])
  assert exit_info.value.code == cli.INTERRUPTED == 130
  assert capsys.readouterr().err.startswith("error: interrupted (Ctrl-C) with nothing to save")


@pytest.mark.skipif(not shutil.which("fakeface-train"),
                    reason="the console scripts are not installed (pip install -e .)")
def test_installed_console_script_loads_config_files_that_import_their_siblings(tmp_path):
  # configs/mlp.py does `from configs import default`; a console script's sys.path[0]
  # is its bin/ folder, not the repository. A bad batch size fails after the load.
  proc = subprocess.run([shutil.which("fakeface-train"), "--config", "configs/mlp.py",
                         "--workdir", str(tmp_path / "run"), "--config.batch_size=0"],
                        cwd=REPO, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, FAKEFACE_NO_REEXEC="1"))
  assert proc.returncode == cli.USER_ERROR, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith("error: config.batch_size=0")
