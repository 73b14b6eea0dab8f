r"""Default: study 2's small CNN on the built-in synthetic dataset (no download needed).

Trains in about a minute on 2 CPU cores (test accuracy 1.00 on the built-in data):

  python main.py --config configs/default.py --workdir runs/default

`configs/default.py:tiny` is the same model shrunk to train in seconds (64 images of 32
pixels, 4 steps an epoch, 2 epochs): what the tests run, and a smoke test of a new
setup:

  python main.py --config configs/default.py:tiny --workdir runs/tiny

Any key can be overridden, e.g. `--config.batch_size=64 --config.num_epochs=3`.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The default config, or with arg "tiny" the seconds-long one (`shrink_to_tiny`)."""
  if arg not in ("", "tiny"):
    raise ValueError(f"configs/default.py takes no argument or 'tiny', got {arg!r}")
  config = full_config()
  return shrink_to_tiny(config) if arg == "tiny" else config


def shrink_to_tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """64 training images of 32 pixels with obvious traces, 4 steps an epoch, 2 epochs."""
  config.batch_size = 16
  config.eval_batch_size = 24
  config.num_epochs = 2
  config.log_every_steps = 2
  config.data.image_size = 32
  config.data.synthetic.num_train = 64
  config.data.synthetic.num_validation = 40
  config.data.synthetic.num_test = 40
  config.data.synthetic.difficulty = 0.0
  config.model.features = (8, 8, 8, 8)
  return config


def full_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 64
  config.eval_batch_size = 256
  config.num_epochs = 8
  config.learning_rate = 1e-3
  # "constant", "inverse_time" (Keras' lr / (1 + decay * step), study 2) or "cosine".
  config.lr_schedule = "constant"
  # Inverse-time decay per step; None means study 2's lr / num_epochs.
  config.lr_decay = config_dict.placeholder(float)
  # > 0: L2 penalty on kernels, its gradient added before Adam (train.optimizer).
  config.weight_decay = 0.0
  config.log_every_steps = 50
  # "auto": a model with fixed features (cooccurrence, spectral) computes each image's
  # features once and trains its head on them, unless an augmentation changes the
  # images (fakeface_jax/training/feature_cache.py); "off": features in every step.
  config.features_cache = "auto"
  # The decision threshold (threshold.json) has the best balanced accuracy on validation
  # among those calling at most this share of the real validation images fake (of each
  # source, in a data mixture): an operating point for users who must not accuse real
  # photos. 1.0: no cap.
  config.max_real_fpr = 1.0

  config.data = ml_collections.ConfigDict()
  config.data.name = "synthetic"
  config.data.image_size = 64
  # Images at least image_size on each side: a centred crop at native resolution, on the
  # JPEG grid, instead of a resize (pixel-level traces survive; image_decoding).
  config.data.native_crop = False
  config.data.grayscale = False
  # Every file re-saved once before decoding, as copies passed around online are:
  # rescaled by a factor drawn from `scale` and JPEG-encoded at a quality drawn from
  # `quality`, per file from (seed, path), so each file has one fixed copy and cached
  # features stay valid (degradations.FileResave). quality (0, 0): files as they are.
  # A mixture source with it beside the same source without it trains on both.
  config.data.resave = ml_collections.ConfigDict()
  config.data.resave.quality = (0, 0)
  config.data.resave.scale = (1.0, 1.0)
  config.data.resave.seed = 0
  # Every file cut to its face, aligned as FFHQ aligns faces, at image_size: the crop
  # predict makes of each face in a photo (data/face_files.py). The faces are found once
  # per prepared dataset. margin scales the square (1.0: FFHQ's framing, the whole head).
  config.data.face_crop = ml_collections.ConfigDict()
  config.data.face_crop.enabled = False
  config.data.face_crop.margin = 1.0
  # Every fake file replaced by a pseudo-fake of a real file of its split (kinds of
  # data/artifacts.py: up-sampling layers, a random decoder, self_blend; weights: their
  # proportions, () for equal), made once per file, as the files are re-saved: no real
  # fake in training where every source has them (data/pseudo_fake_files.py).
  config.data.pseudo_fakes = ml_collections.ConfigDict()
  config.data.pseudo_fakes.kinds = ()
  config.data.pseudo_fakes.weights = ()
  config.data.pseudo_fakes.seed = 0
  config.data.manual_dir = config_dict.placeholder(str)
  config.data.data_dir = config_dict.placeholder(str)  # None: ~/tensorflow_datasets
  # "memory": decode once into RAM; "stream": decode every batch; "auto": memory if it fits.
  config.data.cache = "auto"
  # Subsets, as the studies used them (None: everything). examples_per_class caps the
  # pool before a holdout split; the other two cap the train and the evaluation roles.
  config.data.examples_per_class = config_dict.placeholder(int)
  config.data.train_examples_per_class = config_dict.placeholder(int)
  config.data.eval_examples_per_class = config_dict.placeholder(int)
  config.data.fake_difficulties = config_dict.placeholder(str)  # ciplab: e.g. "hard".
  # Datasets without a test split hold out a stratified part of train as test:
  # test_fraction of it, or fold `fold` of `num_folds` for cross-validation.
  config.data.test_fraction = 0.2
  config.data.num_folds = 0
  config.data.fold = 0
  # Datasets still without a validation split after that (ciplab, the 140k subset's
  # train/valid) hold out this stratified fraction of train as validation, so the best
  # checkpoint and the threshold are not chosen on the test images; 0: test validates.
  config.data.validation_fraction = 0.0
  # > 1: validation is fold `validation_fold` of this many of that part of train instead
  # of validation_fraction of it: the folds of a choice's cross-validation on training
  # images (python -m tools.validation_cv), the test images untouched.
  config.data.validation_folds = 0
  config.data.validation_fold = 0
  config.data.split_seed = 0
  # Several datasets in one run (data/mixture.py): name -> a dict of config.data keys
  # for that source (name, manual_dir, ...) and its sampling `weight`. Empty: one dataset.
  config.data.mixture = ml_collections.ConfigDict()
  config.data.synthetic = ml_collections.ConfigDict()
  config.data.synthetic.difficulty = 0.5  # 0: obvious generator traces, 1: very subtle.
  config.data.synthetic.seed = 0
  config.data.synthetic.num_train = 2000
  config.data.synthetic.num_validation = 400
  config.data.synthetic.num_test = 400

  config.model = ml_collections.ConfigDict()
  config.model.name = "cnn"
  config.model.features = (16, 16, 32, 32)
  config.model.dense_features = ()
  config.model.conv_impl = "auto"

  # Training augmentations, each drawn from (seed, epoch, step): on the host, in the
  # input pipeline (input_pipeline.train_batches), and on the device, in the compiled
  # train step (preprocessing.augment).
  config.augment = ml_collections.ConfigDict()
  config.augment.host = ml_collections.ConfigDict()
  # Host degradations apply in the order images meet them online: downscale, blur,
  # noise, JPEG. Each is drawn from a random stream of its own, so turning one on leaves
  # the others' draws as they were. All of them on (JPEG over a wide quality range, some
  # downscaling, blur, noise) give both classes the same resolution, compression, blur
  # and noise, so that file format cannot carry the label (fakeface_jax/experiments/format_probe.py
  # checks that on a run's batches).
  config.augment.host.jpeg_prob = 0.0  # JPEG re-encoding at a quality in [min, max].
  config.augment.host.jpeg_min_quality = 30
  config.augment.host.jpeg_max_quality = 95  # At most 95: PIL's highest useful quality.
  # Shrink and re-enlarge (degradations.downscale) by a factor in [min_factor, 1): the
  # image loses its JPEG grid (its tables become none, until a JPEG re-encode).
  config.augment.host.downscale_prob = 0.0
  config.augment.host.downscale_min_factor = 0.5
  # Gaussian blur with a sigma in [0.1, max] pixels, and Gaussian noise with a sigma in
  # [0, max] (0-255 units). Both keep each image's JPEG tables (the grid stays where it
  # was) unless a JPEG re-encode follows and sets its own.
  config.augment.host.blur_prob = 0.0
  config.augment.host.blur_max_sigma = 1.5
  config.augment.host.noise_prob = 0.0
  config.augment.host.noise_max_sigma = 5.0
  config.augment.device = ml_collections.ConfigDict()
  config.augment.device.flip = True
  config.augment.device.rotation_degrees = 0.0
  config.augment.device.crop_size = 0  # > 0: train on random native-resolution crops this big.
  config.augment.device.crop_min_scale = 1.0  # < 1: random resized crops of that area or more.
  config.augment.device.blur_prob = 0.0
  config.augment.device.blur_max_sigma = 2.0
  config.augment.device.color_jitter = 0.0
  # Self-blended pseudo-fakes (self_blend.py): this share of the real images of each
  # batch blended with a perturbed copy of themselves through a mask of these kinds,
  # and labelled fake. 0: off.
  config.augment.device.self_blend_share = 0.0
  config.augment.device.self_blend_kinds = ("face", "eyes", "nose", "mouth", "convex")

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_epochs = 1
  config.checkpoint.max_to_keep = 2  # Latest ones; the best by validation accuracy is kept too.
  config.resume = True
  return config
