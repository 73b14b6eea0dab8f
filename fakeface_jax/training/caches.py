"""Lists the feature caches beside prepared datasets, and removes those no run will read.

  fakeface-caches --data_dir=~/tensorflow_datasets
  fakeface-caches --remove_stale
  fakeface-caches --remove=8cb48a9f06a50495eb01acc1 --data_dir=/data/tfds

Training a model with fixed features writes one cache per dataset, set of files and
feature settings (`feature_cache`), and never deletes one: another image size, re-save
or model setting writes another (gigabytes for the larger sets). Stale caches are those
of older feature code (FEATURES_VERSION), damaged ones, and what a feature pass that
stopped more than an hour ago left. Removing any cache costs only its recomputation.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Sequence

from absl import flags

from fakeface_jax import cli
from fakeface_jax import errors

# Loaded on first use: `--help` and usage errors answer without JAX.
datasets = cli.lazy_import("fakeface_jax.data.datasets")
reporting = cli.lazy_import("fakeface_jax.evaluation.reporting")
feature_cache = cli.lazy_import("fakeface_jax.training.feature_cache")

FLAGS = flags.FLAGS


def define_flags() -> None:
  # None stands for datasets.DEFAULT_DATA_DIR, named in the help so that help loads
  # no JAX (a test holds them equal).
  flags.DEFINE_string("data_dir", None, "Where datasets are prepared "
                      "(config.data.data_dir); by default ~/tensorflow_datasets.")
  flags.DEFINE_bool("remove_stale", False, "Remove every stale cache folder.")
  flags.DEFINE_multi_string("remove", [], "Remove this cache folder: its path or its name "
                            "(the key hash the listing shows). Repeatable.")


def settings_text(key: dict | None) -> str:
  """What a cache's features were computed with, in a few words."""
  if key is None:
    return ""
  features = key.get("features", {})
  words = [f"{key.get('image_size')} px", features.get("model", "?")]
  for name, value in sorted(features.items()):
    if name != "model" and value not in ((), [], 0, False, None):
      words.append(f"{name} {'+'.join(map(str, value)) if isinstance(value, list) else value}")
  resave = key.get("resave")
  if resave:
    words.append(f"re-saved scale {resave['min_scale']}-{resave['max_scale']} "
                 f"q{resave['min_quality']}-{resave['max_quality']}")
  return ", ".join(words)


def listing_rows(folders: Sequence[feature_cache.CacheFolder], data_dir: str,
                 now: float) -> list[dict]:
  root = os.path.expanduser(data_dir)
  rows = []
  for folder in folders:
    dataset = os.path.relpath(os.path.dirname(os.path.dirname(folder.path)), root)
    rows.append({
        "dataset": dataset, "name": os.path.basename(folder.path),
        "size": f"{folder.size_bytes / 1e9:.2f} GB",
        "last used": datetime.datetime.fromtimestamp(folder.last_used).strftime(
            "%Y-%m-%d %H:%M"),
        "images x features": "x".join(map(str, folder.shape)) if folder.shape else "",
        "settings": settings_text(folder.key),
        "stale": folder.why_stale(now) or ""})
  return rows


def chosen_for_removal(folders: Sequence[feature_cache.CacheFolder], names: Sequence[str],
                       stale: bool, now: float, data_dir: str
                       ) -> list[feature_cache.CacheFolder]:
  """The folders named (by path or name) and, with `stale`, every stale one; a name
  that matches no folder is an error, so a typo removes nothing."""
  by_name = {}
  for folder in folders:
    by_name[os.path.abspath(folder.path)] = by_name[os.path.basename(folder.path)] = folder
  found = [by_name.get(name) or by_name.get(os.path.abspath(os.path.expanduser(name)))
           for name in names]
  unknown = [name for name, folder in zip(names, found) if folder is None]
  if unknown:
    raise errors.UserError(f"no feature cache named {unknown[0]} under {data_dir} "
                           "(fakeface-caches lists them); nothing removed")
  chosen = {folder.path: folder for folder in found}
  if stale:
    chosen.update({f.path: f for f in folders if f.why_stale(now)})
  return [chosen[path] for path in sorted(chosen)]


def main(argv: list[str]) -> None:
  del argv  # No positional arguments (cli.run checks).
  now = time.time()
  data_dir = FLAGS.data_dir or datasets.DEFAULT_DATA_DIR
  folders = feature_cache.find_caches(data_dir)
  removing = chosen_for_removal(folders, FLAGS.remove, FLAGS.remove_stale, now, data_dir)
  if not removing:
    if not folders:
      print(f"no feature caches under {data_dir}")
      return
    print(reporting.markdown_table(listing_rows(folders, data_dir, now)), end="")
    total = sum(f.size_bytes for f in folders) / 1e9
    stale = [f for f in folders if f.why_stale(now)]
    print(f"{len(folders)} cache folders, {total:.2f} GB; {len(stale)} stale "
          f"({sum(f.size_bytes for f in stale) / 1e9:.2f} GB): --remove_stale removes them")
    return
  for folder in removing:
    feature_cache.remove_cache(folder)
    print(f"removed {folder.path} ({folder.size_bytes / 1e9:.2f} GB)")
  print(f"freed {sum(f.size_bytes for f in removing) / 1e9:.2f} GB")


def run() -> None:
  """Console-script entry point (`fakeface-caches`)."""
  cli.run(main, name="fakeface-caches", doc=__doc__, define_flags=define_flags)


if __name__ == "__main__":
  run()
