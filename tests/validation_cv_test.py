"""Tests of tools/validation_cv.py and config.data.validation_folds: choices
cross-validated on the training images, the test images untouched."""

import numpy as np
import pytest

from conftest import make_ciplab
from crossval_test import ciplab_config
from crossval_test import manifest_roles
from fakeface_jax import config_checks
from fakeface_jax import errors
from fakeface_jax.training import train
from tools import validation_cv


@pytest.mark.slow
def test_validation_folds_cover_the_training_images_once_and_keep_the_test_images(
    tiny_config, tmp_path):
  make_ciplab(tmp_path / "download", num_real=16, fakes_per_difficulty=8, size=32)
  config = ciplab_config(tiny_config, tmp_path / "download")
  config.data.mixture.ciplab = {"name": "ciplab", "manual_dir": str(tmp_path / "download")}
  config.data.mixture.synthetic = {"name": "synthetic"}
  config.lock()  # As the tool's flags leave it.
  workdirs = [tmp_path / f"validation_fold_{k}" for k in range(2)]
  results = [train.train_and_evaluate(validation_cv.fold_config(config, 2, k), str(w))
             for k, w in enumerate(workdirs)]

  folds = [manifest_roles(w) for w in workdirs]
  ciplab = [{role: {p for p in paths if p.startswith("ciplab:")}
             for role, paths in roles.items()} for roles in folds]
  assert not ciplab[0]["validation"] & ciplab[1]["validation"]
  assert (ciplab[0]["validation"] | ciplab[1]["validation"]
          == ciplab[0]["train"] | ciplab[0]["validation"])
  assert ciplab[0]["test"] == ciplab[1]["test"]
  assert len(ciplab[0]["validation"] | ciplab[1]["validation"] | ciplab[0]["test"]) == 40
  # A source with a validation split of its own keeps it in every fold.
  synthetic = [{p for p in roles["validation"] if p.startswith("synthetic:")} for roles in folds]
  assert synthetic[0] == synthetic[1] and synthetic[0]

  summary = validation_cv.summarise(results)
  assert list(summary) == ["ciplab", "synthetic"]
  accuracies = [r["validation_per_source"]["ciplab"]["accuracy"] for r in results]
  assert summary["ciplab"]["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
  assert summary["ciplab"]["num_images"] == 40 - len(ciplab[0]["test"])
  assert validation_cv.summary_markdown(summary).startswith(
      "2-fold cross-validation on the training images")


def test_a_validation_fold_outside_the_folds_is_refused(tiny_config):
  tiny_config.data.validation_folds = 3
  tiny_config.data.validation_fold = 3
  with pytest.raises(errors.ConfigError,
                     match=r"^config.data.validation_fold=3 must be in \[0, "
                           r"config.data.validation_folds=3\)$"):
    config_checks.check_config(tiny_config)
