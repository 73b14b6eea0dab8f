r"""Study 1's grid: the tapering MLP on 140k Real and Fake Faces, every row of its tables.

  python -m fakeface_jax.experiments.sweep --sweep configs/sweeps/study1.py --workdir runs/study1 \
      --set data.manual_dir=/path/to/140k [--max_epochs 100]

Models as the study named them: model_g, model_g2, model_g3 (gray; node structures
same, taper, double) and model_c, model_c2 (color; same, taper); 100x100 input; Adam,
sparse categorical cross-entropy, accuracy. 2,000 training images with batch 2000 at
1, 10, 100 and 1000 epochs; 20,000 with batch 10000 for the color models at 800
epochs (the study's best, 73.5% validation accuracy); 200 validation images.
"""

import ml_collections

MODELS = {  # name: (color, node structure)
    "model_g": ("gray", "same"),
    "model_g2": ("gray", "taper"),
    "model_g3": ("gray", "double"),
    "model_c": ("color", "same"),
    "model_c2": ("color", "taper"),
}
STUDY_BEST = 0.735  # Color, 20,000 images, 800 epochs.


def _run(model: str, images: int, epochs: int, batch: int, reported=None) -> dict:
  color, structure = MODELS[model]
  return {
      "name": f"{model}_{images}img_{epochs}ep",
      "config": f"configs/mlp.py:{color},{structure}",
      "overrides": {
          "data.name": "real_vs_fake_140k",
          "data.train_examples_per_class": images // 2,
          "data.eval_examples_per_class": 100,
          "batch_size": batch,
          "eval_batch_size": 200,
          "num_epochs": epochs,
      },
      "reported": reported,
  }


def get_config() -> ml_collections.ConfigDict:
  sweep = ml_collections.ConfigDict()
  sweep.name = "study1"
  sweep.runs = (
      [_run(model, 2000, epochs, 2000) for model in MODELS for epochs in (1, 10, 100, 1000)]
      + [_run(model, 20000, 800, 10000, STUDY_BEST) for model in ("model_c", "model_c2")])
  return sweep
