r"""Puts known, realistic bugs into a scratch copy one at a time; reports which the tests miss.

  python tools/inject_bugs.py                    # every bug (about 2 minutes on 2 cores)
  python tools/inject_bugs.py --only decoder_returns_bgr,labels_flipped_in_train_step
  python tools/inject_bugs.py --list

Run it before a large refactor and after one: a bug that survives names a behaviour no
test holds. Each bug is one textual edit of one file (`old` must occur exactly once;
otherwise the bug is "stale" and the list needs updating where the code moved), checked
with the test files most likely to catch it, stopping at the first failure. The scratch
copy holds the working tree's tracked and untracked files and a link to ../shared, so
uncommitted work is what is checked. Exit status 0 only when every bug is caught.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Bug:
  name: str
  path: str  # Relative to the repository root.
  old: str
  new: str
  tests: tuple[str, ...]


BUGS = (
    Bug("threshold_by_plain_accuracy", "fakeface_jax/evaluation/metrics.py",
        "return sum(w * balanced_accuracy(labels[m], predictions[m])",
        "return sum(w * accuracy(labels[m], predictions[m])",
        ("tests/metrics_test.py",)),
    Bug("auc_with_real_as_positive", "fakeface_jax/evaluation/metrics.py",
        '"roc_auc": roc_auc(is_fake, p_fake),',
        '"roc_auc": roc_auc(~is_fake, p_fake),',
        ("tests/metrics_test.py",)),
    Bug("labels_flipped_in_train_step", "fakeface_jax/training/steps.py",
        '                                batch["label"], on_features, augmentation)',
        '                                1 - batch["label"], on_features, augmentation)',
        ("tests/train_test.py", "tests/learning_test.py")),
    Bug("best_checkpoint_by_lowest_accuracy", "fakeface_jax/training/checkpointing.py",
        "return max(scored)[1] if scored",
        "return min(scored)[1] if scored",
        ("tests/checkpoint_choice_test.py", "tests/learning_test.py")),
    Bug("decoder_returns_bgr", "fakeface_jax/data/image_decoding.py",
        "array = np.asarray(image, dtype=np.uint8)",
        "array = np.asarray(image, dtype=np.uint8)[..., ::-1]",
        ("tests/image_decoding_test.py",)),
    Bug("inference_skips_rescale", "fakeface_jax/serving/inference.py",
        '{"params": params}, preprocessing.rescale(images), train=False,',
        '{"params": params}, images.astype("float32"), train=False,',
        ("tests/learning_test.py",)),
    Bug("shuffle_ignores_epoch", "fakeface_jax/data/input_pipeline.py",
        "return np.random.default_rng([seed, epoch]).permutation(len(data))",
        "return np.random.default_rng([seed]).permutation(len(data))",
        ("tests/input_pipeline_test.py",)),
    Bug("validation_leaks_into_training", "fakeface_jax/data/selection.py",
        'selected["train"], selected["validation"] = _split_off(\n'
        '        selected["train"], validation_fraction, data_config.split_seed, validation_folds,\n'
        '        data_config.get("validation_fold", 0))',
        'selected["validation"] = _split_off(\n'
        '        selected["train"], validation_fraction, data_config.split_seed, validation_folds,\n'
        '        data_config.get("validation_fold", 0))[1]',
        ("tests/datasets_test.py",)),
    Bug("predict_threshold_reversed", "fakeface_jax/serving/inference.py",
        "return p_fake >= self.threshold",
        "return p_fake < self.threshold",
        ("tests/predict_test.py", "tests/learning_test.py")),
    Bug("every_fold_is_fold_0", "fakeface_jax/experiments/crossval.py",
        "config.data.num_folds, config.data.fold = num_folds, fold",
        "config.data.num_folds, config.data.fold = num_folds, 0",
        ("tests/crossval_test.py",)),
    Bug("feature_cache_key_ignores_feature_settings", "fakeface_jax/training/feature_cache.py",
        '"features": model.feature_settings(),',
        '"features": {},',
        ("tests/feature_cache_test.py",)),
    Bug("cached_features_trained_from_the_wrong_rows", "fakeface_jax/training/feature_cache.py",
        "    return np.asarray(self.features[self.rows[positions]])",
        "    return np.asarray(self.features[self.rows[np.sort(positions)[::-1]]])",
        ("tests/feature_cache_test.py",)),
    # Added with per-image JPEG tables, prediction warnings and data mixtures.
    Bug("jpeg_tables_never_reach_the_model", "fakeface_jax/models/base.py",
        'return {"jpeg_tables": jpeg_tables} if self.reads_jpeg_tables else {}',
        "return {}",
        ("tests/train_test.py",)),
    Bug("feature_warning_ignores_cutoff", "fakeface_jax/serving/domain.py",
        "if distance is not None and distance > domain.distance_cutoff:",
        "if distance is not None and distance > 100 * domain.distance_cutoff:",
        ("tests/prediction_warnings_test.py",)),
    Bug("mixture_ignores_weights", "fakeface_jax/data/mixture.py",
        "chosen = rng.choice(len(self.parts), size=len(self), p=self.weights)",
        "chosen = rng.choice(len(self.parts), size=len(self))",
        ("tests/mixture_test.py",)),
    Bug("native_crop_off_the_jpeg_grid", "fakeface_jax/data/image_decoding.py",
        "return (side - size) // 2 // JPEG_BLOCK * JPEG_BLOCK",
        "return (side - size) // 2",
        ("tests/image_decoding_test.py",)),
    Bug("mixture_crossval_reports_every_source", "fakeface_jax/experiments/crossval.py",
        "  if folded:  # Only the folded sources'",
        "  if False:  # Only the folded sources'",
        ("tests/crossval_test.py",)),
    Bug("source_pairs_merged_by_their_largest_logit", "fakeface_jax/models/base.py",
        "return jax.nn.logsumexp(pairs, axis=1)",
        "return pairs.max(axis=1)",
        ("tests/source_pairs_test.py",)),
    Bug("regions_taken_from_the_corner", "fakeface_jax/models/cooccurrence.py",
        "return images[:, top:top + size, left:left + size]",
        "return images[:, :size, :size]",
        ("tests/texture_test.py",)),
    Bug("mixture_threshold_on_pooled_images", "fakeface_jax/training/final.py",
        "      **mixture.threshold_groups(run.data[\"validation\"]),",
        "",
        ("tests/mixture_test.py",)),
    Bug("threshold_group_weights_ignored", "fakeface_jax/evaluation/metrics.py",
        "weights = weights / weights.sum()",
        "weights = np.ones(len(present)) / len(present)",
        ("tests/metrics_test.py",)),
    Bug("validation_folds_ignored", "fakeface_jax/data/selection.py",
        "selected[\"train\"], validation_fraction, data_config.split_seed, validation_folds,",
        "selected[\"train\"], validation_fraction, data_config.split_seed, 0,",
        ("tests/validation_cv_test.py",)),
    Bug("feature_cache_rows_in_role_order", "fakeface_jax/training/feature_cache.py",
        "return np.searchsorted(paths, np.asarray(split.paths, str))",
        "return np.arange(len(split))",
        ("tests/feature_cache_test.py",)),
    Bug("mixture_batches_name_one_source", "fakeface_jax/data/input_pipeline.py",
        'return {"source": data.source_indices[positions]}',
        'return {"source": 0 * data.source_indices[positions]}',
        ("tests/mixture_test.py", "tests/source_pairs_test.py")),
    Bug("resave_draws_one_copy_for_every_file", "fakeface_jax/data/degradations.py",
        "rng = np.random.default_rng([self.seed, zlib.crc32(path.encode())])",
        "rng = np.random.default_rng([self.seed])",
        ("tests/degradations_test.py",)),
    Bug("feature_cache_key_ignores_resave", "fakeface_jax/training/feature_cache.py",
        '**({"resave": dataclasses.asdict(resave)} if resave else {}),',
        "",
        ("tests/feature_cache_test.py",)),
    Bug("streamed_split_reads_the_files_unsaved", "fakeface_jax/data/input_pipeline.py",
        "_file_bytes(self.source[int(self.indices[position])], self.transform),",
        "_file_bytes(self.source[int(self.indices[position])], None),",
        ("tests/input_pipeline_test.py",)),
    Bug("resaved_format_states_the_source_size", "fakeface_jax/data/degradations.py",
        "width, height = _scaled_size(source.width, source.height, scale)",
        "width, height = source.width, source.height",
        ("tests/degradations_test.py", "tests/input_pipeline_test.py")),
    Bug("role_folders_link_resaved_files_unsaved", "tools/role_folders.py",
        "if files.resave is None:", "if True:", ("tests/role_folders_test.py",)),
    Bug("caches_remove_a_live_passs_folder", "fakeface_jax/training/feature_cache.py",
        "if now - self.last_used < ABANDONED_AFTER_S:", "if False:",
        ("tests/caches_test.py",)),
    Bug("caches_stale_version_kept", "fakeface_jax/training/feature_cache.py",
        'if self.key.get("features_version") != FEATURES_VERSION:',
        'if self.key.get("features_version") is None:',
        ("tests/caches_test.py",)),
    Bug("mixture_checkpoint_chosen_by_pooled_accuracy", "fakeface_jax/training/train.py",
        'metrics={checkpointing.BEST_METRIC: row.get(\n                             "val_weighted_accuracy", row["val_accuracy"])},',
        'metrics={checkpointing.BEST_METRIC: row["val_accuracy"]},',
        ("tests/mixture_test.py",)),
    # Added with whole-file scoring of face images by whole-image runs.
    Bug("whole_scoring_ignores_the_training_sizes", "fakeface_jax/serving/inference.py",
        "if known.holds_size(image_format):",
        "if True:",
        ("tests/predict_faces_test.py",)),
    Bug("pasted_face_image_taken_for_an_original", "fakeface_jax/serving/inference.py",
        "return known.resave_fits(image_format) and share >= ORIGINAL_FACE_SHARE",
        "return known.resave_fits(image_format) and share >= FACE_IMAGE_SHARE",
        ("tests/predict_faces_test.py",)),
    Bug("crops_scored_by_the_whole_image_model", "fakeface_jax/serving/scoring.py",
        "p_fake, distance = cropper.score(found.images[crops])",
        "p_fake, distance = predictor.score(found.images[crops])",
        ("tests/predict_faces_test.py",)),
    Bug("crop_verdict_at_the_whole_image_threshold", "fakeface_jax/serving/scoring.py",
        "\"prediction\": \"fake\" if cropper.is_fake(p_fake[n]) else \"real\",",
        "\"prediction\": \"fake\" if predictor.is_fake(p_fake[n]) else \"real\",",
        ("tests/predict_faces_test.py",)),
    Bug("face_image_share_at_the_crop_margin", "fakeface_jax/serving/scoring.py",
        "found.sides[faces[0]] / margin)]",
        "found.sides[faces[0]])]",
        ("tests/predict_faces_test.py",)),
    Bug("larger_face_image_scored_without_resaving", "fakeface_jax/serving/scoring.py",
        "else as_training_file, \"resaved\"))", "else None, \"resaved\"))",
        ("tests/predict_faces_test.py",)),
    Bug("shift_skipped_before_resaving", "fakeface_jax/serving/scoring.py",
        "(lambda data: as_training_file(transform(data)))", "as_training_file",
        ("tests/predict_faces_test.py",)),
    Bug("photo_scored_by_its_first_face", "fakeface_jax/serving/scoring.py",
        "\"p_fake\": max(scores, default=None),", "\"p_fake\": (scores or [None])[0],",
        ("tests/predict_faces_test.py",)),
    Bug("cross_dataset_scores_whole_files_only", "fakeface_jax/evaluation/cross_dataset.py",
        "score = scoring.predict_faces if faces else scoring.predict_files",
        "score = scoring.predict_files", ("tests/predict_faces_test.py",)),
    Bug("evaluate_ignores_faces_off", "fakeface_jax/evaluation/evaluate.py",
        "FLAGS.shifts, FLAGS.faces == \"on\")", "FLAGS.shifts, True)",
        ("tests/user_paths_test.py",)),
    Bug("summary_hides_the_face_models_threshold", "fakeface_jax/serving/predict.py",
        "if faces and predictor.face_model is not None:",
        "if faces and predictor.face_model is None:", ("tests/packaged_model_test.py",)),
    Bug("faceless_photos_counted_unreadable", "fakeface_jax/evaluation/cross_dataset.py",
        "\"unreadable\": int((~read).sum()),", "\"unreadable\": int((~scored).sum()),",
        ("tests/predict_faces_test.py",)),
    Bug("training_file_loses_its_subsampling", "fakeface_jax/serving/domain.py",
        "return degradations.resave(data, quality, scale, subsampling)",
        "return degradations.resave(data, quality, scale)",
        ("tests/prediction_warnings_test.py",)),
    Bug("whole_score_left_off_the_face_row", "fakeface_jax/serving/scoring.py",
        "for key in (*SCORE_COLUMNS, \"prediction\")}",
        "for key in (*SCORE_COLUMNS, \"prediction\")} | {\"scored\": \"face\"}",
        ("tests/predict_faces_test.py",)),
    Bug("evaluate_ignores_output_dir", "fakeface_jax/evaluation/evaluate.py",
        "outdir = FLAGS.output_dir or os.path.join(", "outdir = None or os.path.join(",
        ("tests/user_paths_test.py",)),
    Bug("recipes_compared_in_row_order", "fakeface_jax/experiments/leave_out.py",
        "= [auc[s] for s in sources]", "= list(auc.values())",
        ("tests/leave_out_test.py",)),
    Bug("help_names_other_shifts", "fakeface_jax/evaluation/evaluate.py",
        "\"any of clean, q90, halved_q90.\")", "\"any of clean, q90.\")",
        ("tests/cli_test.py",)),
)


def check_anchor(bug: Bug, root: str = REPO) -> str | None:
  """None if `bug.old` occurs exactly once in its file, else why the bug is stale."""
  path = os.path.join(root, bug.path)
  if not os.path.exists(path):
    return f"{bug.path} does not exist"
  with open(path) as f:
    count = f.read().count(bug.old)
  return None if count == 1 else f"{bug.old!r} occurs {count} times in {bug.path}"


def working_tree_files() -> list[str]:
  listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                          check=True, capture_output=True, text=True).stdout
  return [p for p in listed.split("\0") if p and os.path.isfile(os.path.join(REPO, p))]


def make_scratch(parent: str) -> str:
  """A copy of the working tree at parent/repo, with parent/shared -> ../shared."""
  scratch = os.path.join(parent, "repo")
  for relative in working_tree_files():
    target = os.path.join(scratch, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(os.path.join(REPO, relative), target)
  shared = os.path.join(os.path.dirname(REPO), "shared")
  if os.path.isdir(shared):
    os.symlink(shared, os.path.join(parent, "shared"))
  return scratch


def run_tests(scratch: str, tests: tuple[str, ...], timeout: int) -> tuple[bool, str]:
  """(whether every test passed, the last line pytest printed)."""
  # The scratch copy's package, not the editable install of this checkout.
  env = dict(os.environ, PYTHONPATH=scratch)
  try:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p",
                           "no:cacheprovider", *tests], cwd=scratch, env=env,
                          capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return False, f"timed out after {timeout}s"
  lines = proc.stdout.strip().splitlines()
  return proc.returncode == 0, lines[-1] if lines else proc.stderr.strip()[-200:]


def check_bug(scratch: str, bug: Bug, timeout: int) -> tuple[str, str]:
  """("caught" | "SURVIVED" | "STALE", detail) for one bug, the file restored after."""
  stale = check_anchor(bug, scratch)
  if stale:
    return "STALE", stale
  path = os.path.join(scratch, bug.path)
  with open(path) as f:
    original = f.read()
  with open(path, "w") as f:
    f.write(original.replace(bug.old, bug.new))
  try:
    passed, last_line = run_tests(scratch, bug.tests, timeout)
  finally:
    with open(path, "w") as f:
      f.write(original)
  return ("SURVIVED" if passed else "caught"), last_line


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--only", default="", help="comma-separated bug names")
  parser.add_argument("--list", action="store_true", help="list the bugs and exit")
  parser.add_argument("--timeout", type=int, default=900, help="seconds per bug")
  args = parser.parse_args()
  if args.list:
    for bug in BUGS:
      print(f"{bug.name:38s} {bug.path}  ({', '.join(bug.tests)})")
    return 0
  wanted = set(filter(None, args.only.split(",")))
  unknown = wanted - {bug.name for bug in BUGS}
  if unknown:
    parser.error(f"unknown bug(s) {sorted(unknown)}; see --list")
  bugs = [bug for bug in BUGS if not wanted or bug.name in wanted]
  outcomes = []
  with tempfile.TemporaryDirectory(prefix="inject_bugs_") as parent:
    scratch = make_scratch(parent)
    for bug in bugs:
      start = time.perf_counter()
      outcome, detail = check_bug(scratch, bug, args.timeout)
      outcomes.append(outcome)
      print(f"{outcome:8s} {bug.name:38s} {time.perf_counter() - start:5.0f}s  {detail}",
            flush=True)
  missed = len(outcomes) - outcomes.count("caught")
  print(f"{outcomes.count('caught')} of {len(outcomes)} bugs caught"
        + (f"; {missed} survived or are stale" if missed else ""))
  return 1 if missed else 0


if __name__ == "__main__":
  sys.exit(main())
