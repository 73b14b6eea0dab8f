"""Benchmarks: training, input pipeline and multi-device throughput."""
