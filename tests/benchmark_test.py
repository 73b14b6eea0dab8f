"""Tests of the training-throughput benchmark: what it measures, not how fast it is."""

import pytest

from fakeface_jax.benchmarks import benchmark


@pytest.mark.slow
def test_benchmark_reports_rates_flops_and_the_matmul_ceiling():
  result = benchmark.benchmark_model("mlp", steps=1, repeats=1)
  assert result["model"] == "mlp" and result["batch"] == 2000
  assert result["images_per_s"] > 0 and len(result["runs"]) == 1
  # Forward and weight gradient of the 10000x128 layer dominate: 2 x 2 x 10000 x 128 FLOP.
  assert result["gflop_per_image"] == pytest.approx(2 * 2 * 10000 * 128 / 1e9, rel=0.1)
  assert result["matmul_gflops_per_s"] > 0
  assert result["fraction_of_matmul"] == pytest.approx(
      result["gflops_per_s"] / result["matmul_gflops_per_s"], abs=0.01)


def test_predict_benchmark_times_predict_files_over_every_image(tmp_path, monkeypatch):
  paths = benchmark.write_jpegs(str(tmp_path), 6, size=40)
  assert len(set(open(p, "rb").read() for p in paths)) == 6  # Distinct files.
  calls = []
  real = benchmark.scoring.predict_files

  def counted(predictor, files):
    calls.append(list(files))
    return real(predictor, files)
  monkeypatch.setattr(benchmark.scoring, "predict_files", counted)
  result = benchmark.benchmark_predict("configs/default.py:tiny", paths, repeats=2)
  # One compiling pass over a batch, then the timed passes over all the files.
  assert calls[1:] == [paths, paths]
  assert result["images"] == 6 and len(result["runs"]) == 2
  assert result["predict_images_per_s"] == pytest.approx(sum(result["runs"]) / 2, abs=0.1)
