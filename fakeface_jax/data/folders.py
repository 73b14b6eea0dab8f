"""TFDS builders for image files on disk: the two studies' Kaggle downloads and any folder.

- `real_vs_fake_140k`: "140k Real and Fake Faces" (FFHQ real, StyleGAN fake), laid out as
  `real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/*.jpg`.
- `ciplab`: "real and fake face detection" (Photoshop composites), laid out as
  `real_and_fake_face/{training_real,training_fake}/*.jpg`; fakes are named
  `{easy,mid,hard}_*`. One `train` split: the download has no split, so the input
  pipeline holds out a seeded, stratified part (or a k-fold fold) for testing.
- `image_folder`: any tree `root/{real,fake}/...` or `root/{split}/{real,fake}/...`.

Each stores the files' original bytes (no re-encoding) with the label (0 = fake,
1 = real), the path relative to the download, and a `difficulty` (easy/mid/hard for
ciplab fakes, "none" otherwise). Files that do not decode are left out at preparation
and listed in `bad_files.json` next to the prepared data. Splits are written shard by
shard, so preparing holds one shard's files in memory whatever the dataset's size. The prepared data are cached
per download folder (its absolute path is hashed into the builder config name), so
pointing `manual_dir` at another copy prepares that copy instead of reusing a stale one.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds
from absl import logging
from tensorflow_datasets.core import hashing

from fakeface_jax import classes
from fakeface_jax.data import image_decoding
from fakeface_jax import errors

NO_DIFFICULTY = "none"
DIFFICULTIES = ("easy", "mid", "hard")
BAD_FILES_JSON = "bad_files.json"
# Folder names accepted for each split of an image folder, lower-case.
SPLIT_FOLDERS = {"train": "train", "training": "train", "valid": "valid",
                 "validation": "valid", "val": "valid", "test": "test"}
SPLITS_140K = ("train", "valid", "test")
_SEARCH_DEPTH = 3  # How far below manual_dir the expected layout may start.
# Examples per prepared shard: what preparation holds in memory at once (about 15 MB of
# the 140k set's 256 px JPEGs, 100 MB of 600 px ones), in ~100 files for 100k images.
SHARD_EXAMPLES = 1024


class DatasetError(errors.UserError, ValueError):
  """A dataset that cannot be prepared as configured; the message says what to do."""


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
  root: str = ""  # Absolute path of the user's download (config.data.manual_dir).


@dataclasses.dataclass(frozen=True)
class FileExample:
  path: str        # Absolute path of the file.
  label: int       # 0 = fake, 1 = real.
  difficulty: str = NO_DIFFICULTY


def _class_of(name: str) -> int | None:
  name = name.lower()
  return classes.NAMES.index(name) if name in classes.NAMES else None


def is_image_file(name: str) -> bool:
  return name.lower().endswith(image_decoding.IMAGE_EXTENSIONS)


def _image_files(folder: str) -> Iterator[str]:
  """Image files under `folder`, recursively, in a stable order."""
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    yield from (os.path.join(root, name) for name in sorted(files) if is_image_file(name))


def _subdirs(folder: str) -> list[tuple[str, str]]:
  """(lower-cased name, path) of the immediate subfolders; "Fake" and "fake" both count."""
  return [(name.lower(), os.path.join(folder, name)) for name in sorted(os.listdir(folder))
          if os.path.isdir(os.path.join(folder, name))]


def _named(folder: str, name: str) -> list[str]:
  return [path for lower, path in _subdirs(folder) if lower == name]


def _class_folder_examples(folder: str) -> list[FileExample]:
  """Examples from `folder/{real,fake}/**` (class folder names case-insensitive)."""
  examples = []
  for name, path in _subdirs(folder):
    label = _class_of(name)
    if label is not None:
      examples += [FileExample(file, label) for file in _image_files(path)]
  return examples


def _find_layout(root: str, matches) -> str | None:
  """The shallowest folder at or below `root` (up to a few levels) for which `matches`."""
  level = [root]
  for _ in range(_SEARCH_DEPTH + 1):
    for folder in level:
      if matches(folder):
        return folder
    level = [sub for folder in level for _, sub in _subdirs(folder)]
  return None


class FolderBuilder(tfds.core.ShardBasedBuilder):
  """Shared machinery: find files, check they decode, store their bytes."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  BUILDER_CONFIGS = []  # Made per download folder by `make_builder`.
  DOWNLOAD = ""  # What to download and where to put it, for the error message.

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=classes.NAMES),
            "path": tfds.features.Text(),
            "difficulty": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        description=self.__doc__,
    )

  def find_examples(self, root: str) -> dict[str, list[FileExample]]:
    """Split name -> examples found under the download folder `root`."""
    raise NotImplementedError

  def check_download(self) -> dict[str, list[FileExample]]:
    """The examples of the configured download, or DatasetError saying what to fetch."""
    root = self.builder_config.root
    if not os.path.isdir(root):
      raise DatasetError(f"config.data.manual_dir={root} is not a folder. {self.DOWNLOAD}")
    splits = {split: examples for split, examples in self.find_examples(root).items()
              if examples}
    if not splits:
      raise DatasetError(f"no images in the expected layout under config.data.manual_dir="
                         f"{root}. {self.DOWNLOAD}")
    return splits

  def _shard_iterators_per_split(self, dl_manager):
    del dl_manager
    self.bad_files: list[dict[str, str]] = []
    return {split: [functools.partial(self._generate_examples, shard)
                    for shard in _shards(split, examples, self.builder_config.root)]
            for split, examples in self.check_download().items()}

  def _generate_examples(self, examples: list[FileExample]):
    root = self.builder_config.root

    def read(example: FileExample):
      try:
        with open(example.path, "rb") as f:
          data = f.read()
        image_decoding.decode_image(data, 32, grayscale=False)
        return data, None
      except (OSError, image_decoding.ImageDecodeError) as e:
        return None, f"{type(e).__name__}: {e}"

    # PIL releases the GIL while decoding, so threads check files in parallel.
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
      for example, (data, error) in zip(examples, pool.map(read, examples)):
        relative = os.path.relpath(example.path, root)
        if error:
          logging.warning("Leaving out %s: %s", example.path, error)
          self.bad_files.append({"path": relative, "error": error})
          continue
        yield relative, {"image": data, "label": example.label, "path": relative,
                         "difficulty": example.difficulty}


def _shards(split: str, examples: list[FileExample], root: str) -> list[list[FileExample]]:
  """A split's examples in TFDS's hashed record order, cut into shards of bounded size.

  TFDS's own writer holds a whole split's bytes in memory (and needs TensorFlow past
  1 GB); written shard by shard, preparation holds one shard. The order is the one that
  writer gave (its hash of each path, salted with the split name), so data prepared
  before and after select the same files for the same seeds.
  """
  hasher = hashing.Hasher(split)
  ordered = sorted(examples,
                   key=lambda e: hasher.hash_key(os.path.relpath(e.path, root)))
  return [ordered[start:start + SHARD_EXAMPLES]
          for start in range(0, len(ordered), SHARD_EXAMPLES)]


class RealVsFake140k(FolderBuilder):
  """140k Real and Fake Faces: FFHQ real (label 1) vs StyleGAN fake (label 0)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = DOWNLOAD = (
      "Download '140k Real and Fake Faces' from "
      "https://www.kaggle.com/datasets/xhlulu/140k-real-and-fake-faces, unzip it, and set "
      "config.data.manual_dir to the unzipped folder (or any folder down to "
      "real_vs_fake/real-vs-fake/, which holds train/, valid/ and test/ with real/ and "
      "fake/ inside).")

  def find_examples(self, root):
    def has_splits(folder):
      return any(_named(path, "real") or _named(path, "fake")
                 for split in SPLITS_140K for path in _named(folder, split))
    folder = _find_layout(root, has_splits)
    if folder is None:
      return {}
    return {split: [e for path in _named(folder, split) for e in _class_folder_examples(path)]
            for split in SPLITS_140K}


class Ciplab(FolderBuilder):
  """ciplab real and fake face detection: Photoshop composites (easy/mid/hard) vs real."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = DOWNLOAD = (
      "Download 'Real and Fake Face Detection' from "
      "https://www.kaggle.com/datasets/ciplab/real-and-fake-face-detection, unzip it, and "
      "set config.data.manual_dir to the unzipped folder (or to real_and_fake_face/, "
      "which holds training_real/ and training_fake/).")

  def find_examples(self, root):
    def has_classes(folder):
      return bool(_named(folder, "training_real") or _named(folder, "training_fake"))
    folder = _find_layout(root, has_classes)
    if folder is None:
      return {}
    examples = []
    for name, label in (("training_fake", 0), ("training_real", 1)):
      for path in (f for sub in _named(folder, name) for f in _image_files(sub)):
        prefix = os.path.basename(path).split("_")[0].lower()
        difficulty = prefix if label == 0 and prefix in DIFFICULTIES else NO_DIFFICULTY
        examples.append(FileExample(path, label, difficulty))
    return {"train": examples}


class ImageFolder(FolderBuilder):
  """Any folder of real and fake images: root/{real,fake}/** or root/{split}/{real,fake}/**."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = DOWNLOAD = (
      "Set config.data.manual_dir to a folder holding real/ and fake/ subfolders (names "
      "case-insensitive, searched recursively for .jpg .jpeg .png .webp .bmp), or "
      "train/, valid/ and test/ folders that each hold real/ and fake/.")

  def find_examples(self, root):
    splits = {}
    for name, path in _subdirs(root):
      if name in SPLIT_FOLDERS:
        splits.setdefault(SPLIT_FOLDERS[name], []).extend(_class_folder_examples(path))
    if any(splits.values()):
      return splits
    return {"train": _class_folder_examples(root)}


_BUILDER_CLASSES = {"real_vs_fake_140k": RealVsFake140k, "ciplab": Ciplab,
                    "image_folder": ImageFolder}


def make_builder(name: str, data_config: Any, data_dir: str) -> FolderBuilder:
  cls = _BUILDER_CLASSES[name]
  if not data_config.get("manual_dir"):
    raise DatasetError(f"config.data.manual_dir is not set for dataset {name!r}. "
                       f"{cls.DOWNLOAD}")
  root = os.path.abspath(os.path.expanduser(data_config.manual_dir))
  digest = hashlib.sha256(root.encode()).hexdigest()[:12]
  config = FolderConfig(name=f"dir_{digest}", description=f"Files under {root}", root=root)
  return cls(config=config, data_dir=data_dir, file_format="array_record")


def write_bad_files(builder: FolderBuilder) -> None:
  """Records the files left out at preparation next to the prepared data."""
  bad = getattr(builder, "bad_files", None)
  if bad is not None:
    with open(os.path.join(builder.data_dir, BAD_FILES_JSON), "w") as f:
      json.dump(bad, f, indent=2)


def read_bad_files(builder: tfds.core.DatasetBuilder) -> list[dict[str, str]]:
  path = os.path.join(builder.data_dir, BAD_FILES_JSON)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)
