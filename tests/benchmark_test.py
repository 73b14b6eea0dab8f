"""Tests of the training-throughput benchmark: what it measures, not how fast it is."""

import pytest

from fakeface_jax import benchmark


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
