#!/usr/bin/env bash
# Mutation testing with mutmut (configured in pyproject.toml's [tool.mutmut]) over the
# functions where behaviour at the edges matters: metrics, degradations, the training-domain
# warnings, mixtures, cross-validation, the cross-dataset report, the feature cache's key
# and rows, predict, evaluate's reports, and the train step's inputs and metrics. Plotting,
# flags, file writing and the train loop's checkpoint and preemption plumbing are out of
# scope: the tests that hold those train for seconds to minutes a mutant.
#
#   pip install -e '.[test,mutation]'
#   nohup tools/mutation.sh > mutation.log 2>&1 &     # background, both cores
#   mutmut results                                     # the survivors, then `mutmut show NAME`
#
# Extra arguments replace the scope, e.g. `tools/mutation.sh 'fakeface_jax.evaluation.metrics.*'`.
set -euo pipefail
cd "$(dirname "$0")/.."
m=fakeface_jax
SCOPE=(
  "$m.metrics.x_confusion_matrix*" "$m.metrics.x_accuracy*" "$m.metrics.x_balanced_accuracy*"
  "$m.metrics.x_roc_auc*" "$m.metrics.x_average_precision*" "$m.metrics.x_reliability_curve*"
  "$m.metrics.x_expected_calibration_error*" "$m.metrics.x_best_threshold*"
  "$m.metrics.x_classification_report*"
  "$m.data.degradations.x_[!_]*" "$m.data.degradations.x__scaled_size*"
  "$m.data.degradations.x__gaussian_kernel*" "$m.data.degradations.xǁFileResaveǁ*"
  "$m.domain.x_distances*" "$m.domain.x_describe*" "$m.domain.x_image_warnings*"
  "$m.domain.xǁTrainingDomainǁ*"
  "$m.data.mixture.*"
  "$m.crossval.x_folded_sources*" "$m.crossval.x_fold_config*" "$m.crossval.x_fold_report*"
  "$m.crossval.x_summarise*" "$m.crossval.x__own_eval_splits*"
  "$m.cross_dataset.x_folder_row*" "$m.cross_dataset.x_report*" "$m.cross_dataset.x__share*"
  "$m.feature_cache.x_cache_key*" "$m.feature_cache.x_cached_paths*"
  "$m.feature_cache.x__rows_of*" "$m.feature_cache.x__cache_rows*"
  "$m.feature_cache.xǁ_CacheRowsǁ*" "$m.feature_cache.xǁFeatureSplitǁ*"
  "$m.inference.x_decode_files*" "$m.inference.x_find_images*" "$m.inference.x__padded*"
  "$m.inference.xǁPredictorǁscore*" "$m.inference.xǁPredictorǁp_fake*"
  "$m.inference.xǁPredictorǁwarnings*" "$m.inference.xǁPredictorǁis_fake*"
  "$m.predict.x__grid*" "$m.predict.x_predict_files*" "$m.predict.x__p_fake_text*"
  "$m.evaluate.x_choose_threshold*" "$m.evaluate.x_split_report*"
  "$m.evaluate.x_robustness_report*"
  "$m.train.x_model_inputs*" "$m.train.x_train_step*" "$m.train.x_init_totals*"
  "$m.train.x__mean_metrics*" "$m.train.x_cross_entropy*"
)
if (($#)); then SCOPE=("$@"); fi
# The tests' shared trained runs are trained once (by the unmutated clean run) and read
# back by every mutant's session (tests/conftest.py); compiled functions are kept on disk,
# keyed by their HLO, so a mutant compiles only what it changed (about 3x faster).
rm -rf mutants/test_runs
export FAKEFACE_TEST_RUN_CACHE="$PWD/mutants/test_runs"
export JAX_COMPILATION_CACHE_DIR="$PWD/mutants/jax_cache"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
exec mutmut run --max-children "${MUTMUT_CHILDREN:-2}" "${SCOPE[@]}"
