"""Preparing and streaming a dataset take memory that does not grow with its size.

Runs the scale benchmark's own code (`fakeface_jax.benchmarks.scale_benchmark`: the 140k-layout
tree, preparation, one epoch through `load_data(cache="stream")` and `train_batches`) on
two datasets three times apart in size, each phase in a fresh process, and bounds how
much more the larger one's peak resident memory may be.
"""

import concurrent.futures

from configs import default
from fakeface_jax.benchmarks import scale_benchmark
from fakeface_jax.data import folders

# Both have more than one shard of training images (SHARD_EXAMPLES), so that what one
# shard holds during preparation is the same for both.
SMALL, LARGE = 1_500, 4_500
TREE_SIZE = 128   # Pixels of the tree's JPEGs: about 8 KB each.
STREAM_SIZE = 64  # Pixels the epoch decodes to: 12 KiB per image as uint8.
# What holding the 3,000 extra images would add: their serialized records (about 25 MB;
# TFDS's own writer, which did, measured +38 MB for 4,500) during preparation, or their
# decoded array (3,000 x 64 x 64 x 3 = 37 MB) during the epoch. Measured on 2 cores, the
# larger dataset's peaks were 1.5-2.5 MB above the smaller's.
ALLOWANCE_MB = 12


def _measure(tmp_path, num_images: int) -> dict:
  root = str(tmp_path / f"tree_{num_images}")
  scale_benchmark.build_tree(root, num_images, TREE_SIZE, scale_benchmark.DEFAULT_SOURCE)
  config = default.get_config()
  config.batch_size = 32
  config.data.image_size = STREAM_SIZE
  return scale_benchmark.measure(config, root, str(tmp_path / f"tfds_{num_images}"))


def test_peak_memory_of_preparing_and_streaming_does_not_grow_with_the_dataset(tmp_path):
  assert SMALL * 5 / 7 > folders.SHARD_EXAMPLES
  # Side by side: each measurement's processes are its own, and 2 cores halve the wait.
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    small, large = pool.map(lambda n: _measure(tmp_path, n), (SMALL, LARGE))
  assert (small["prepared_images"], large["prepared_images"]) == (SMALL, LARGE)
  assert large["stream_images"] > 3 * small["stream_images"] - 2 * 32
  for phase in ("prepare", "stream"):
    growth = large[f"{phase}_peak_rss_mb"] - small[f"{phase}_peak_rss_mb"]
    assert growth < ALLOWANCE_MB, (phase, small, large)
