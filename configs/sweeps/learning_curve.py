r"""Learning curves: validation accuracy and AUC against training-set size, per model.

  fakeface-sweep --sweep configs/sweeps/learning_curve.py --workdir runs/learning_curve
  fakeface-sweep --sweep configs/sweeps/learning_curve.py:lfw_faceswap,mlp \
      --workdir runs/learning_curve     # one dataset and model at a time, same workdir

The argument picks datasets and models (comma-separated; default all), and `one_seed`
runs seed 0 alone at every size (the CNNs' curves take hours on 2 cores): datasets
lfw_faceswap (sizes 250, 500, 1k, 2k, 4k and all 9.5k of its train split) and 140k (250,
500, 1k and all 1.4k of the shared subset); models mlp (study 1, color, taper), cnn
(study 2), residual_cnn and detector. Sizes under 2,000 run with three seeds (each seed
draws its own subset, initialisation and order). Every run holds out a stratified tenth
of its training images for the checkpoint and threshold choices
(`data.validation_fraction`) and reports on the dataset's own `valid` split, so the
curves are not chosen on the images they report. Datasets are read from
`../shared/data`; point `--set data.manual_dir=` elsewhere only with one dataset
selected. Besides the sweep's tables this writes `learning_curve.{md,png,json}`
(`fakeface_jax.experiments.learning_curve`): mean and spread over seeds per model and size.
"""

from typing import NamedTuple

import ml_collections

SHARED = "../shared/data"


class Dataset(NamedTuple):
  """A shared dataset: where it is, the sizes to train on, and its images' format."""
  manual_dir: str
  sizes: tuple[int | None, ...]  # None: the whole training split.
  name: str  # config.data.name
  native_size: int
  jpeg_quality: int


DATASETS = {
    "lfw_faceswap": Dataset(f"{SHARED}/lfw_faceswap", (250, 500, 1000, 2000, 4000, None),
                            "image_folder", native_size=224, jpeg_quality=90),
    "140k": Dataset(f"{SHARED}/real_vs_fake_140k", (250, 500, 1000, None),
                    "real_vs_fake_140k", native_size=256, jpeg_quality=75),
}
MODELS = {
    "mlp": "configs/mlp.py:color,taper",
    "cnn": "configs/cnn.py",
    "residual_cnn": "configs/residual_cnn.py",
    "detector": "configs/detector.py",
}
# Models that read the images at their native size: resizing would blur the traces
# (and, for the detector, move the JPEG grid) they look at.
NATIVE_SIZE_MODELS = ("residual_cnn", "detector")
SEEDS_BELOW_2K = (0, 1, 2)
ONE_SEED = "one_seed"


def _run(dataset: str, model: str, size: int | None, seed: int) -> dict:
  data = DATASETS[dataset]
  overrides = {"data.name": data.name, "data.manual_dir": data.manual_dir}
  if model in NATIVE_SIZE_MODELS:
    overrides["data.image_size"] = data.native_size
  if model == "detector":
    overrides["model.jpeg_quality"] = data.jpeg_quality
  return {
      "name": f"{dataset}_{model}_n{size or 'all'}_seed{seed}",
      "config": MODELS[model],
      "overrides": {
          **overrides,
          "data.validation_fraction": 0.1,
          # Per class: the size counts both classes.
          "data.train_examples_per_class": size // 2 if size else None,
          "data.split_seed": seed,
          "seed": seed,
      },
      "curve": {"dataset": dataset, "model": model, "train_size": size or "all",
                "seed": seed},
  }


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  wanted = {part.strip() for part in arg.split(",") if part.strip()}
  unknown = wanted - set(DATASETS) - set(MODELS) - {ONE_SEED}
  if unknown:
    raise ValueError(f"configs/sweeps/learning_curve.py: unknown {sorted(unknown)}; choose "
                     f"from {', '.join([*DATASETS, *MODELS, ONE_SEED])}")
  datasets = [d for d in DATASETS if d in wanted] or list(DATASETS)
  models = [m for m in MODELS if m in wanted] or list(MODELS)
  seeds_below_2k = (0,) if ONE_SEED in wanted else SEEDS_BELOW_2K
  sweep = ml_collections.ConfigDict()
  sweep.name = "learning_curve"
  sweep.runs = [_run(dataset, model, size, seed)
                for dataset in datasets for model in models
                for size in DATASETS[dataset].sizes
                for seed in (seeds_below_2k if size and size < 2000 else (0,))]
  return sweep
