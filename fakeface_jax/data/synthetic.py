"""The built-in dataset: procedurally generated real-like and generator-like faces.

A TFDS builder around `fakeface_jax.data.face_generator`; nothing is downloaded. Its builder
config carries every generation parameter, so changing the size, difficulty, seed or
split sizes prepares a new, separately cached version instead of reusing a stale one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from fakeface_jax import classes
from fakeface_jax.data import face_generator


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  image_size: int = 64
  difficulty: float = 0.5
  seed: int = 0
  num_train: int = 2000
  num_validation: int = 400
  num_test: int = 400


class FakefaceSynthetic(tfds.core.GeneratorBasedBuilder):
  """Seeded, deterministic synthetic real/fake faces, JPEG-encoded."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=classes.NAMES),
            "path": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    sizes = {"train": config.num_train, "validation": config.num_validation,
             "test": config.num_test}
    # Disjoint index ranges keep the splits' images distinct under one seed.
    offsets = np.cumsum([0] + list(sizes.values()))
    return {split: self._generate_examples(split, int(start), n)
            for (split, n), start in zip(sizes.items(), offsets) if n > 0}

  def _generate_examples(self, split: str, start: int, count: int):
    config = self.builder_config
    for index in range(start, start + count):
      jpeg, label = face_generator.make_example(
          config.seed, index, config.image_size, config.difficulty)
      path = f"synthetic/{split}/{index:07d}.jpg"
      yield path, {"image": jpeg, "label": label, "path": path}


def make_builder(data_config: Any, data_dir: str) -> FakefaceSynthetic:
  synth = data_config.synthetic
  config = SyntheticConfig(
      name=(f"s{data_config.image_size}_d{synth.difficulty:g}_seed{synth.seed}_"
            f"n{synth.num_train}-{synth.num_validation}-{synth.num_test}"),
      image_size=data_config.image_size, difficulty=synth.difficulty, seed=synth.seed,
      num_train=synth.num_train, num_validation=synth.num_validation,
      num_test=synth.num_test)
  return FakefaceSynthetic(config=config, data_dir=data_dir,
                           file_format="array_record")
