r"""Scale benchmark: a 100k-image dataset in the 140k layout, prepared and streamed once.

  fakeface-scale-benchmark --config configs/cnn.py
  fakeface-scale-benchmark --config configs/mlp.py:gray,taper --num_images 10000 \
      --root /tmp/fakeface_scale_10k

Builds (or reuses) `--root/real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/`
with `--num_images` distinct JPEGs of `--image_size` pixels, split 100:20:20 as the full
download is: seeded random crops, flips and color shifts of the images under
`--source`, each keeping its source's class, or procedural faces (`face_generator`)
where that folder is absent. `scale_tree.json` records the tree's settings: a finished
tree is reused, an interrupted one completed. Then it prepares the tree as the
`real_vs_fake_140k` dataset and streams one training epoch of it
(`config.data.cache="stream"`, `input_pipeline.load_data` and `train_batches`, at the
config's image size and batch size). Each phase runs in a fresh process, so its peak
resident memory (VmHWM) is its own. Prints a summary on stderr and one JSON line.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import sys
import time
from typing import Any

import numpy as np
from absl import flags
from ml_collections import config_flags
from PIL import Image

from fakeface_jax import classes
from fakeface_jax import cli
from fakeface_jax.data import face_generator
from fakeface_jax import errors

FLAGS = flags.FLAGS

LAYOUT = os.path.join("real_vs_fake", "real-vs-fake")
MARKER = "scale_tree.json"
DEFAULT_SOURCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                              "real_vs_fake_140k")
# The full download's train:valid:test proportions (100k:20k:20k).
SPLIT_SHARES = (("train", 5 / 7), ("valid", 1 / 7), ("test", 1 / 7))
CHUNK = 500  # Images per task of the writing pool.
JPEG_QUALITY = 90
MIN_CROP = 0.8  # Smallest crop side, as a fraction of the source's.
MAX_GAIN = 0.05  # Largest per-channel color gain away from 1.


def define_flags() -> None:
  """Defines the command line; called by the entry point, not on import."""
  config_flags.DEFINE_config_file("config", None, "Training config file: the streamed "
                                  "epoch's image size, color and batch size.",
                                  lock_config=True)
  flags.DEFINE_string("root", os.path.join("/tmp", "fakeface_scale"),
                      "Folder of the image tree (built here or reused).")
  flags.DEFINE_integer("num_images", 100_000, "Images in the tree, all splits together.")
  flags.DEFINE_integer("image_size", 256, "Side of the tree's square JPEGs.")
  flags.DEFINE_string("source", DEFAULT_SOURCE, "Images to crop from (any folder with real/ "
                      "and fake/ below it); procedural faces when it does not exist.")
  flags.DEFINE_string("data_dir", None, "Where to prepare the dataset (default: "
                      "ROOT/tensorflow_datasets).")


class ScaleBenchmarkError(errors.UserError, ValueError):
  """A tree or setting the benchmark cannot use; the message says what to do."""


def split_of(index: int, num_images: int) -> str:
  """The split of image `index`: consecutive blocks in SPLIT_SHARES' proportions."""
  end = 0.0
  for split, share in SPLIT_SHARES:
    end += share * num_images
    if index < round(end):
      return split
  return SPLIT_SHARES[-1][0]


def image_path(root: str, index: int, num_images: int) -> str:
  """Where image `index` goes; labels alternate so that every split is balanced."""
  return os.path.join(root, LAYOUT, split_of(index, num_images),
                      classes.NAMES[index % 2], f"{index:06d}.jpg")


def source_files(source: str) -> dict[int, list[str]] | None:
  """Label -> sorted image files under folders named real/fake below `source`."""
  if not os.path.isdir(source):
    return None
  found = {label: [] for label in range(len(classes.NAMES))}
  for folder, dirs, files in os.walk(source):
    dirs.sort()
    name = os.path.basename(folder).lower()
    if name in classes.NAMES:
      found[classes.NAMES.index(name)] += [os.path.join(folder, f) for f in sorted(files)
                                           if f.lower().endswith((".jpg", ".jpeg", ".png"))]
  return found if all(found.values()) else None


def variant(image: Image.Image, size: int, rng: np.random.Generator) -> np.ndarray:
  """A seeded crop (side MIN_CROP..1, anywhere), flip and color gain of `image`."""
  width, height = image.size
  side = int(min(width, height) * rng.uniform(MIN_CROP, 1.0))
  left, top = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
  crop = image.convert("RGB").crop((left, top, left + side, top + side))
  pixels = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR), np.float32)
  if rng.random() < 0.5:
    pixels = pixels[:, ::-1]
  gain = 1 + rng.uniform(-MAX_GAIN, MAX_GAIN, 3)
  return np.clip(pixels * gain, 0, 255).round().astype(np.uint8)


def write_images(root: str, indices: range, num_images: int, size: int,
                 sources: dict[int, list[str]] | None) -> int:
  """Writes the images at `indices` that are not there yet; returns how many it wrote."""
  written = 0
  for index in indices:
    path = image_path(root, index, num_images)
    if os.path.exists(path):
      continue
    label = index % 2
    rng = np.random.default_rng([0, index])
    if sources:
      pool = sources[label]
      with Image.open(pool[(index // 2) % len(pool)]) as image:
        pixels = variant(image, size, rng)
    else:
      pixels = face_generator.render_example(0, index, label, size, difficulty=0.5)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path + ".tmp", format="JPEG", quality=JPEG_QUALITY)
    os.replace(path + ".tmp", path)  # A killed build leaves no truncated JPEG behind.
    written += 1
  return written


def _read_marker(root: str, settings: dict) -> bool:
  """Whether the tree at `root` is complete; an error if it has other settings."""
  path = os.path.join(root, MARKER)
  if not os.path.exists(path):
    if os.path.isdir(root) and os.listdir(root):
      raise ScaleBenchmarkError(f"--root={root} is not empty and holds no {MARKER}: "
                                "pass an empty or new folder")
    return False
  with open(path) as f:
    marker = json.load(f)
  if {k: marker.get(k) for k in settings} != settings:
    raise ScaleBenchmarkError(
        f"--root={root} holds a tree built with {json.dumps(marker)}; pass another --root "
        f"for {json.dumps(settings)}")
  return marker.get("complete", False)


def _write_marker(root: str, settings: dict, complete: bool) -> None:
  with open(os.path.join(root, MARKER), "w") as f:
    json.dump({**settings, "complete": complete}, f)


def build_tree(root: str, num_images: int, image_size: int, source: str) -> dict:
  """Builds the image tree (or completes or reuses it); returns what it did."""
  sources = source_files(source)
  settings = {"num_images": num_images, "image_size": image_size,
              "source": os.path.abspath(source) if sources else "face_generator"}
  if _read_marker(root, settings):
    return {"built_images": 0, "build_images_per_s": None, **settings}
  os.makedirs(root, exist_ok=True)
  _write_marker(root, settings, complete=False)
  start = time.perf_counter()
  chunks = [range(i, min(i + CHUNK, num_images)) for i in range(0, num_images, CHUNK)]
  # Processes: PIL's resize and JPEG encoding of small images hold the GIL too long.
  with concurrent.futures.ProcessPoolExecutor(
      os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
    written = sum(pool.map(write_images, *zip(*[
        (root, chunk, num_images, image_size, sources) for chunk in chunks])))
  seconds = time.perf_counter() - start
  _write_marker(root, settings, complete=True)
  return {"built_images": written,
          "build_images_per_s": round(written / seconds, 1) if written else None,
          **settings}


def _peak_rss_mb() -> float:
  """This process's peak resident memory since it started (VmHWM).

  Not `ru_maxrss`: Linux carries that over from the parent through fork and exec, so a
  child of a large process (pytest with JAX loaded) would report its parent's size.
  """
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return round(int(line.split()[1]) / 1024, 1)  # kB.
  raise ScaleBenchmarkError("no VmHWM in /proc/self/status: peak memory is measured on "
                            "Linux only")


def prepare_phase(data_config: Any) -> dict:
  """Prepares (or finds prepared) the dataset; run in a fresh process."""
  from fakeface_jax.data import datasets  # pylint: disable=g-import-not-at-top
  baseline = _peak_rss_mb()
  prepared_before = datasets.BUILDERS[data_config.name](
      data_config, datasets.data_dir(data_config)).is_prepared()
  start = time.perf_counter()
  builder = datasets.prepare(data_config)
  seconds = time.perf_counter() - start
  images = sum(split.num_examples for split in builder.info.splits.values())
  size = sum(os.path.getsize(os.path.join(builder.data_dir, f))
             for f in os.listdir(builder.data_dir))
  return {"prepared_now": not prepared_before, "prepare_seconds": round(seconds, 1),
          "prepare_images_per_s": None if prepared_before else round(images / seconds, 1),
          "prepared_images": images, "prepared_gb": round(size / 1e9, 3),
          "prepare_baseline_rss_mb": baseline, "prepare_peak_rss_mb": _peak_rss_mb()}


def stream_phase(config: Any) -> dict:
  """Streams one training epoch as `config.data.cache="stream"` trains; in a fresh process."""
  from fakeface_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  baseline = _peak_rss_mb()
  start = time.perf_counter()
  train = input_pipeline.load_data(config, cache="stream")["train"]
  loaded = time.perf_counter()
  count = 0
  for batch in input_pipeline.train_batches(train, config.batch_size, seed=config.seed,
                                            epoch=1):
    count += len(batch["label"])
  seconds = time.perf_counter() - loaded
  return {"stream_load_seconds": round(loaded - start, 1),
          "stream_images": count, "stream_images_per_s": round(count / seconds, 1),
          "stream_baseline_rss_mb": baseline, "stream_peak_rss_mb": _peak_rss_mb()}


def _call(function, argument):
  flags.FLAGS.mark_as_parsed()  # grain and absl logging read flags outside app.run.
  return function(argument)


def in_fresh_process(function, argument) -> dict:
  """`function(argument)` in a new process, so that its peak memory is its own."""
  with concurrent.futures.ProcessPoolExecutor(
      1, mp_context=multiprocessing.get_context("spawn")) as pool:
    return pool.submit(_call, function, argument).result()


def measure(config: Any, root: str, data_dir: str) -> dict:
  """Prepares the tree at `root` into `data_dir` and streams one epoch, each measured."""
  config.data.name = "real_vs_fake_140k"
  config.data.manual_dir = root
  config.data.data_dir = data_dir
  config.data.cache = "stream"
  prepared = in_fresh_process(prepare_phase, config.data)
  return {**prepared, **in_fresh_process(stream_phase, config),
          "stream_image_size": config.data.image_size,
          "stream_grayscale": config.data.grayscale, "batch_size": config.batch_size}


def cpu_model() -> str:
  with open("/proc/cpuinfo") as f:
    names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
  return names[0] if names else "unknown"


def main(argv: list[str]) -> None:
  del argv  # No positional arguments (cli.run checks).
  root = os.path.abspath(os.path.expanduser(FLAGS.root))
  data_dir = FLAGS.data_dir or os.path.join(root, "tensorflow_datasets")
  tree = build_tree(root, FLAGS.num_images, FLAGS.image_size, FLAGS.source)
  result = {**tree, **measure(FLAGS.config, root, data_dir),
            "cpu_count": os.cpu_count(), "cpu_model": cpu_model()}
  prepared = (f"prepared at {result['prepare_images_per_s']:,} img/s"
              if result["prepared_now"] else "already prepared")
  print(f"{result['num_images']:,} images of {result['image_size']} px "
        f"({result['built_images']:,} built now) in {root}: {prepared} "
        f"into {result['prepared_gb']} GB, peak RSS "
        f"{result['prepare_peak_rss_mb']:,} MB; one epoch of {result['stream_images']:,} "
        f"streamed at {result['stream_images_per_s']:,} img/s, peak RSS "
        f"{result['stream_peak_rss_mb']:,} MB.", file=sys.stderr)
  print(json.dumps(result))


def run() -> None:
  """Console-script entry point (`fakeface-scale-benchmark`)."""
  cli.run(main, name="fakeface-scale-benchmark", doc=__doc__, define_flags=define_flags,
          required=("config",))


if __name__ == "__main__":
  run()
