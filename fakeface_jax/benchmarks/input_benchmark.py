r"""Input-pipeline throughput: images/s delivered as training batches, streamed and cached.

  fakeface-input-benchmark --config configs/cnn.py \
      --config.data.name=real_vs_fake_140k \
      --config.data.manual_dir=../shared/data/real_vs_fake_140k

Prints one JSON line: `stream_images_per_s` (decode every batch from the prepared
ArrayRecord data, as `config.data.cache="stream"` trains), `cache_build_images_per_s`
(the one-time decode into memory) and `cache_images_per_s` (batches gathered from
memory, as `"memory"` trains). Each is the median over `--repeats` epochs of the train
split at `config.data.image_size`, with `config.batch_size`; the batches are consumed
but not sent to a device, so this is the ceiling the input puts on training.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from absl import flags
from ml_collections import config_flags

from fakeface_jax import cli

# Loaded on first use: `--help` and usage errors answer without JAX.
jax = cli.lazy_import("jax")
input_pipeline = cli.lazy_import("fakeface_jax.data.input_pipeline")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command line; called by the entry point, not on import."""
  config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
  flags.DEFINE_integer("repeats", 3, "Timed epochs per mode; the median is reported.")


def _epoch_rate(split, config, epoch: int) -> float:
  start = time.perf_counter()
  count = 0
  for batch in input_pipeline.train_batches(split, config.batch_size, seed=config.seed,
                                            epoch=epoch):
    count += len(batch["label"])
  return count / (time.perf_counter() - start)


def benchmark(config, repeats: int) -> dict:
  streamed = input_pipeline.load_data(config, cache="stream")["train"]
  stream = [_epoch_rate(streamed, config, epoch) for epoch in range(1, repeats + 1)]
  build = []
  for _ in range(repeats):
    start = time.perf_counter()
    cached = input_pipeline.load_data(config, cache="memory")["train"]
    build.append(len(cached) / (time.perf_counter() - start))
  cache = [_epoch_rate(cached, config, epoch) for epoch in range(1, repeats + 1)]
  return {
      "dataset": config.data.name,
      "image_size": config.data.image_size,
      "grayscale": config.data.grayscale,
      "batch_size": config.batch_size,
      "train_images": len(streamed),
      "stream_images_per_s": round(statistics.median(stream), 1),
      "cache_build_images_per_s": round(statistics.median(build), 1),
      "cache_images_per_s": round(statistics.median(cache), 1),
      "cpu_count": os.cpu_count(),
      "device": str(jax.devices()[0].device_kind),
  }


def main(argv: list[str]) -> None:
  del argv  # No positional arguments (cli.run checks).
  print(json.dumps(benchmark(FLAGS.config, FLAGS.repeats)))


def run() -> None:
  """Console-script entry point (`fakeface-input-benchmark`)."""
  cli.run(main, name="fakeface-input-benchmark", doc=__doc__, define_flags=define_flags,
          required=("config",))


if __name__ == "__main__":
  run()
