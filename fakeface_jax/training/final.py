"""The stage after training: the best checkpoint tested at a threshold chosen on
validation, the training data described for predict's warnings, and the outputs written;
and a finished run's saved results, so that it is not trained again."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import numpy as np
from absl import logging

from fakeface_jax import classes
from fakeface_jax.data import input_pipeline
from fakeface_jax.data import mixture
from fakeface_jax.evaluation import metrics
from fakeface_jax.evaluation import reporting
from fakeface_jax import rundir
from fakeface_jax.serving import domain
from fakeface_jax.serving import inference
from fakeface_jax.training import checkpointing
from fakeface_jax.training import feature_cache
from fakeface_jax.training import run_state
from fakeface_jax.training import steps


def per_source_text(per_source: dict[str, dict[str, float]] | None,
                     weighted: float | None = None) -> str:
  """" (source acc A, ...[; weighted W])" of `metrics.per_source_metrics` and their
  `weighted_accuracy`, or "" for one dataset."""
  if per_source is None:
    return ""
  weighted_text = "" if weighted is None else f"; weighted {weighted:.3f}"
  return (" (" + ", ".join(f"{name} {m['accuracy']:.3f}" for name, m in per_source.items())
          + weighted_text + ")")


def _test_accuracies(results: dict[str, Any]) -> str:
  return (f"test accuracy {results['test_accuracy']:.4f} at threshold 0.5, "
          f"{results['test_accuracy_at_threshold']:.4f} at the validation-chosen "
          f"threshold {results['threshold']:.4f} ({results['num_test']} images)")


def _embeddings(compiled_embed, params: Any, split: input_pipeline.Split,
                positions: np.ndarray, batch_size: int) -> np.ndarray:
  """Embeddings of `split`'s images at `positions`, in fixed-size (padded) batches."""
  out = []
  for start in range(0, len(positions), batch_size):
    chunk = positions[start:start + batch_size]
    padded = np.resize(chunk, batch_size)  # Repeats the chunk: one compiled shape.
    batch = input_pipeline.batch_of(*split.take_batch(padded))
    out.append(np.asarray(compiled_embed(params, batch))[:len(chunk)])
  return np.concatenate(out)


def _describe_training_data(run: run_state.Run, state: steps.TrainState) -> None:
  """Records what the model was trained on (`domain.TrainingDomain`), for `predict`'s
  warnings: on process 0, with its own copy of the (replicated) parameters."""
  train_split, validation = run.data["train"], run.data["validation"]
  formats = train_split.take_formats(np.arange(len(train_split)))
  if formats is None:  # Arrays made in memory: nothing to describe.
    return
  params = jax.tree.map(lambda x: x.addressable_data(0), state.params)
  compiled_embed = jax.jit(functools.partial(
      steps.embed_step, apply_fn=state.apply_fn,
      on_features=feature_cache.holds_features(train_split)))
  sample = np.sort(np.random.default_rng(run.config.seed).permutation(len(train_split))[
      :domain.MAX_DESCRIBED_IMAGES])
  batch_size = run.config.eval_batch_size
  described = domain.describe(
      formats, run.config.data.image_size, run.config.data.native_crop,
      _embeddings(compiled_embed, params, train_split, sample, batch_size),
      _embeddings(compiled_embed, params, validation, np.arange(len(validation)),
                  batch_size))
  domain.write(run.workdir, described)
  logging.info("Training data described for predict's warnings: %s, sides %d-%d px, "
               "JPEG qualities %s; feature distance cut-off %.2f.",
               "/".join(described.formats), described.min_side, described.max_side,
               described.jpeg_qualities, described.distance_cutoff)


def test_best_checkpoint(run: run_state.Run, state: steps.TrainState) -> dict[str, Any]:
  """Tests the best checkpoint by validation accuracy (a mixture's: weighted over its
  sources); writes and returns the results."""
  run.checkpoints.wait_until_finished()
  best = run.checkpoints.best_step()
  state, best_meta = run.checkpoints.restore(best, state)
  test = run.evaluate(state.params, "test")
  validation = run.evaluate(state.params, "validation")
  threshold, val_balanced = metrics.best_threshold(
      run.data["validation"].labels, validation["p_fake"],
      **mixture.threshold_groups(run.data["validation"]),
      max_real_fpr=run.config.max_real_fpr)
  test_labels = run.data["test"].labels
  predictions = np.where(test["p_fake"] >= threshold, classes.FAKE, classes.REAL)
  results = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
             "confusion_matrix": test["confusion_matrix"], "num_test": len(test_labels),
             "val_accuracy": validation["accuracy"],
             "num_validation": len(run.data["validation"]),
             "train_accuracy": run.log.rows[-1]["train_accuracy"] if run.log.rows else None,
             "num_train": len(run.data["train"]), "best_epoch": best_meta["epoch"],
             "best_step": best, "threshold": float(threshold),
             "test_accuracy_at_threshold": metrics.accuracy(test_labels, predictions),
             "test_roc_auc": metrics.roc_auc(test_labels == classes.FAKE, test["p_fake"])}
  for role, evaluated in (("test", test), ("validation", validation)):
    per_source = metrics.per_source_metrics(run.data[role], evaluated["p_fake"], threshold)
    if per_source is not None:
      results[f"{role}_per_source"] = per_source
      logging.info("%s per source, at the validation threshold:%s", role,
                   per_source_text(per_source))
  run.log.close()
  run.checkpoints.close()
  if jax.process_index() == 0:
    inference.write_threshold(run.workdir, float(threshold), best, float(val_balanced))
    _describe_training_data(run, state)
    outputs = write_outputs(run.workdir, run.log.rows, results)
    logging.info("Best epoch %d: %s. Outputs: %s", results["best_epoch"],
                 _test_accuracies(results), ", ".join(outputs))
  return results


def finished_results(config: Any, workdir: str) -> dict[str, Any] | None:
  """The saved results of a run of exactly `config` that trained and tested to the end.

  Cross-validation and sweeps rerun finished runs on purpose; with these they load no
  data and compile nothing. Any other config goes through the loop, which trains what
  is missing (nothing, if only evaluation settings changed) and tests again.
  """
  paths = [rundir.path(workdir, name) for name in (rundir.CONFIG_JSON,
                                                   rundir.TEST_METRICS_JSON)]
  try:
    saved_config, results = (_read_json(path) for path in paths)
    # A run writes its config first and its results last: older results come from
    # an earlier run, whose successor stopped before testing.
    tested_after = os.path.getmtime(paths[1]) >= os.path.getmtime(paths[0])
  except (OSError, ValueError):
    return None
  if not (config.resume and tested_after and "test_accuracy_at_threshold" in results
          and saved_config == json.loads(config.to_json_best_effort())
          and checkpointing.newest_progress(workdir)
          == checkpointing.Progress(config.num_epochs)):
    return None
  logging.info("Run complete: %d/%d epochs, best step %d; raise --config.num_epochs to "
               "train further. Saved results: %s.", config.num_epochs, config.num_epochs,
               results["best_step"], _test_accuracies(results))
  return results


def _read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_outputs(workdir: str, rows, results: dict[str, Any]) -> list[str]:
  """Writes final metrics and figures into the workdir; returns their paths."""
  paths = [os.path.join(workdir, name) for name in
           (rundir.TEST_METRICS_JSON, rundir.CURVES_PNG, rundir.CONFUSION_PNG)]
  with open(paths[0], "w") as f:
    json.dump(results, f, indent=2)
  reporting.plot_curves(rows, paths[1])
  # Training's matrix is at 0.5 (argmax), as its test_accuracy.
  metrics.plot_confusion_matrix(np.asarray(results["confusion_matrix"]), paths[2],
                                split="test", threshold=0.5)
  return paths + [os.path.join(workdir, n) for n in
                  (rundir.METRICS_CSV, rundir.METRICS_JSONL, rundir.TENSORBOARD_DIR,
                   rundir.CHECKPOINTS_DIR, rundir.MANIFEST_CSV)]
