"""A trained run, loaded for inference with exactly the preprocessing it was trained with.

`load_run(workdir)` reads the run's saved `config.json` (image size, gray or color,
model) and restores parameters from one of its checkpoints, so a caller has no way to
feed the model differently from training. `Predictor.score` runs compiled, fixed-size
batches (the last one padded), so any number of images compiles exactly once; besides
P(fake) it gives each image's distance from the training images in the model's own
embedding (`domain`), which predict's warnings read.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np
from absl import logging

from fakeface_jax.data import face_crop
from fakeface_jax.data import faces
from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables
from fakeface_jax.data import preprocessing
from fakeface_jax import models
from fakeface_jax import rundir
from fakeface_jax.serving import domain
from fakeface_jax.training import checkpointing
from fakeface_jax.training import run_config

DEFAULT_THRESHOLD = 0.5
# A photo is a face image, as a run trained on whole face images saw them, when its
# largest face's square (FFHQ's framing) spans at least this share of its shorter side:
# 0.55 to 1.3 in the shared sets' files (1st and 95th percentiles). A face image pasted
# at 18-45% of a larger photo's width (tools/face_check.py's canvases) can reach 1.3 x
# 0.45 / 0.7 = 0.84 by their geometry (0.64 the most measured), but such a photo is
# larger than the training images, and those need `ORIGINAL_FACE_SHARE`.
FACE_IMAGE_SHARE = 0.5
# A photo larger than every training image is one of the originals such images are made
# from (a 600 px ciplab original, a 1024 px StyleGAN face) when its face fills it as the
# 140k and ciplab faces fill theirs, 0.82 to 1.29 of the shorter side (1st and 95th
# percentiles), and more than a pasted face image can.
ORIGINAL_FACE_SHARE = 0.85


@dataclasses.dataclass
class Predictor:
  """P(fake) for images, with the run's preprocessing and decision threshold."""
  config: ml_collections.ConfigDict
  params: Any
  threshold: float
  step: int
  batch_size: int = 64
  # What the run was trained on; None for a run trained before it was recorded.
  training_domain: domain.TrainingDomain | None = None
  # A run trained on face crops that scores the faces inside larger photos for this
  # one, trained on whole face images (the packaged pair); None: this one scores them.
  face_model: Predictor | None = None

  def __post_init__(self):
    self.model = models.create_model(self.config.model)

    def score(params, images, jpeg_tables, mean, scale):
      logits, embedding = domain.with_embedding(lambda: self.model.apply(
          {"params": params}, preprocessing.rescale(images), train=False,
          **self.model.table_inputs(jpeg_tables)))
      return jax.nn.softmax(logits)[:, 0], domain.distances(embedding, mean, scale)

    self._score = jax.jit(score)
    known = self.training_domain
    self._mean = np.zeros(1, np.float32) if known is None else known.embedding_mean
    self._scale = np.ones(1, np.float32) if known is None else known.embedding_scale

  @property
  def image_size(self) -> int:
    return self.config.data.image_size

  @property
  def grayscale(self) -> bool:
    return self.config.data.grayscale

  @property
  def native_crop(self) -> bool:
    return self.config.data.native_crop

  def score(self, images: np.ndarray, jpeg_tables: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 images (N, S, S, C) as the run's pipeline makes them, and their JPEG tables
    (N, 2, 8, 8) (`ImageFormat.grid_tables`; None: the model's fallback for every image)
    -> P(fake) (N,), and each image's embedding distance from the training images (N,)
    if the run recorded them (`domain.distances`), else None."""
    p_fake, distance = [np.zeros((0,), np.float32)], [np.zeros((0,), np.float32)]
    for start in range(0, len(images), self.batch_size):
      batch = images[start:start + self.batch_size]
      tables = (None if jpeg_tables is None else
                _padded(jpeg_tables[start:start + self.batch_size], self.batch_size))
      out = self._score(self.params, _padded(batch, self.batch_size), tables, self._mean,
                        self._scale)
      p_fake.append(np.asarray(out[0])[:len(batch)])
      distance.append(np.asarray(out[1])[:len(batch)])
    return (np.concatenate(p_fake),
            None if self.training_domain is None else np.concatenate(distance))

  def p_fake(self, images: np.ndarray, jpeg_tables: np.ndarray | None = None) -> np.ndarray:
    """P(fake) of `score`."""
    return self.score(images, jpeg_tables)[0]

  def warnings(self, image_format: image_decoding.ImageFormat,
               distance: float | None) -> list[str]:
    """`domain.image_warnings` of one image for this run."""
    return domain.image_warnings(self.training_domain, image_format, distance,
                                 self.image_size, self.model.reads_jpeg_tables,
                                 self.native_crop)

  def is_fake(self, p_fake: np.ndarray) -> np.ndarray:
    return p_fake >= self.threshold

  def decode(self, data: bytes) -> tuple[np.ndarray, image_decoding.ImageFormat]:
    return image_decoding.decode_with_format(data, self.image_size, self.grayscale,
                                             self.native_crop)

  @property
  def trained_on_faces(self) -> bool:
    """Whether the run was trained on face crops (config.data.face_crop), not whole files."""
    return face_crop.settings_of(self.config.data) is not None

  @property
  def crop_model(self) -> Predictor:
    """The predictor that scores faces by their crops: `face_model` where there is one."""
    return self.face_model or self

  @property
  def crop_settings(self) -> face_crop.CropSettings:
    """How a found face becomes this model's input: at its image size, with the margin
    it was trained with (FFHQ's framing for a run trained on whole images)."""
    return (face_crop.settings_of(self.config.data)
            or face_crop.CropSettings(self.image_size))

  def scores_whole(self, image_format: image_decoding.ImageFormat, side: float) -> bool:
    """Whether predict scores a photo whole rather than its largest face's crop, whose
    square is `side` pixels: where the run was trained on whole files and the photo is
    one of the kind it saw, a face image (`FACE_IMAGE_SHARE`) of its training images'
    sizes, or an original of one (`ORIGINAL_FACE_SHARE`), larger, that re-saving makes
    one of them (`resaves_whole`). A crop resamples the pixel-level traces a whole-image
    run reads."""
    known = self.training_domain
    if self.trained_on_faces or known is None:
      return False
    share = side / min(image_format.width, image_format.height)
    if known.holds_size(image_format):
      return share >= FACE_IMAGE_SHARE
    return known.resave_fits(image_format) and share >= ORIGINAL_FACE_SHARE

  def resaves_whole(self, image_format: image_decoding.ImageFormat) -> bool:
    """Whether a photo scored whole is first made the size and kind of a training file
    (`TrainingDomain.as_training_file`): one larger than them, as a 1024 px StyleGAN
    face is beside the 256 px copies the 140k set made of such faces."""
    return not self.training_domain.holds_size(image_format)

  def face_warnings(self, image_format: image_decoding.ImageFormat, side: float,
                    distance: float | None) -> list[str]:
    """`warnings` of one face, whose square is `side` pixels in the photo: its size
    against the training images', `small_face` where its crop is upscaled."""
    if self.training_domain is not None:
      # A face larger than every training image is downscaled into its crop as they
      # were: only a smaller one is outside what training saw.
      side = min(side, self.training_domain.max_side)
    face_format = dataclasses.replace(image_format, width=round(side), height=round(side),
                                      tables=jpeg_tables.NO_TABLES)
    return ["small_face" if w == "upscaled" else w
            for w in self.warnings(face_format, distance)]


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
  """`batch` with zero rows appended up to `size`: one compiled shape for every batch, so
  an image scores the same, to the last bit, alone or among others."""
  padded = np.zeros((size, *batch.shape[1:]), batch.dtype)
  padded[:len(batch)] = batch
  return padded


def _checkpoint_step(workdir: str, checkpoint: str) -> int:
  """The step `checkpoint` (best, last or a step number) names among the usable ones."""
  directory = os.path.join(os.path.abspath(workdir), rundir.CHECKPOINTS_DIR)
  steps = checkpointing.usable_steps(workdir)
  if not steps:
    raise checkpointing.CheckpointError(
        f"no usable checkpoint in {directory}; train the run (again) with main.py")
  if checkpoint == "last":
    return steps[0]
  if checkpoint == "best":
    return checkpointing.best_step(directory, steps)
  if checkpoint.isdigit() and int(checkpoint) in steps:
    return int(checkpoint)
  raise checkpointing.CheckpointError(
      f"--checkpoint must be best, last or one of the usable steps {steps}; got "
      f"{checkpoint!r}")


def _read_threshold(workdir: str, step: int) -> float:
  """The decision threshold chosen on validation for checkpoint `step`, else the default.

  A threshold fits the checkpoint it was chosen for; another checkpoint, or a damaged
  file, gets the default with a warning (training and `evaluate` choose it anew).
  """
  path = os.path.join(workdir, rundir.THRESHOLD_JSON)
  if not os.path.exists(path):
    return DEFAULT_THRESHOLD
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
    chosen_for, threshold = int(saved["checkpoint_step"]), float(saved["threshold"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    logging.warning("%s is damaged (%s); using threshold %.1f. Rerun main.py on the run to "
                    "choose it again.", path, " ".join(str(e).split())[:80] or
                    type(e).__name__, DEFAULT_THRESHOLD)
    return DEFAULT_THRESHOLD
  if chosen_for != step:
    logging.warning("%s was chosen for checkpoint %d, not %d; using threshold %.1f.",
                    path, chosen_for, step, DEFAULT_THRESHOLD)
    return DEFAULT_THRESHOLD
  return threshold


def load_run(workdir: str, checkpoint: str = "best", batch_size: int = 64) -> Predictor:
  """Loads a run directory written by `train.train_and_evaluate`, without writing to it.

  Damaged checkpoints are skipped with a warning; `CheckpointError` (one line) when the
  workdir does not exist, or its config or every checkpoint is unusable.
  """
  if not os.path.isdir(workdir):
    raise checkpointing.CheckpointError(
        f"run directory {workdir} does not exist; give the --workdir of a run trained "
        "with fakeface-train")
  config = ml_collections.ConfigDict(run_config.read_config(workdir))
  step = _checkpoint_step(workdir, checkpoint)
  state = checkpointing.restore_state_here(workdir, step)
  return Predictor(config, state["params"], _read_threshold(workdir, step), step, batch_size,
                   domain.read(workdir))


# The recommended detector, shipped inside the package (docs/model_card.md): a run's
# config, threshold and training domain as a workdir holds them, and its parameters.
PACKAGED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "pretrained")
PARAMS_FILE = "params.msgpack"
# The packaged `face_model`, as a packaged model of its own inside the first.
FACES_DIR = "faces"
# Each source's test files, labels and accuracy as predict scores them, at packaging.
FIGURES_JSON = "figures.json"
REBUILD_PACKAGED = ("reinstall fakeface_jax, or rebuild the model with "
                    "`python -m tools.package_model` (docs/model_card.md)")


def load_packaged(batch_size: int = 64, directory: str = PACKAGED_DIR) -> Predictor:
  """The detector shipped in the package, with its `face_model` where `FACES_DIR` holds
  one; CheckpointError (one line) when a file of either is missing or damaged."""
  try:
    config = ml_collections.ConfigDict(run_config.read_config(directory, REBUILD_PACKAGED))
    with open(os.path.join(directory, PARAMS_FILE), "rb") as f:
      params = flax.serialization.msgpack_restore(f.read())
    with open(os.path.join(directory, rundir.THRESHOLD_JSON), encoding="utf-8") as f:
      saved = json.load(f)
    threshold, step = float(saved["threshold"]), int(saved["checkpoint_step"])
    with open(os.path.join(directory, rundir.DOMAIN_JSON), encoding="utf-8") as f:
      training_domain = domain.TrainingDomain.from_json(json.load(f))
  except checkpointing.CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Whatever a truncated or missing shipped file raises, the install is what is wrong.
    raise checkpointing.CheckpointError(
        f"the packaged model in {directory} is missing or damaged "
        f"({type(e).__name__}: {' '.join(str(e).split())[:80]}); {REBUILD_PACKAGED}") from e
  faces_dir = os.path.join(directory, FACES_DIR)
  face_model = load_packaged(batch_size, faces_dir) if os.path.isdir(faces_dir) else None
  return Predictor(config, params, threshold, step, batch_size, training_domain, face_model)


def write_packaged(predictor: Predictor, directory: str) -> None:
  """Writes a loaded run as `load_packaged` reads it: config, parameters, threshold and
  training domain (the run must have recorded its domain)."""
  if predictor.training_domain is None:
    raise checkpointing.CheckpointError("the run records no training domain; retrain it")
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, rundir.CONFIG_JSON), "w", encoding="utf-8") as f:
    f.write(predictor.config.to_json(indent=2))
  with open(os.path.join(directory, PARAMS_FILE), "wb") as f:
    f.write(flax.serialization.msgpack_serialize(jax.device_get(predictor.params)))
  with open(os.path.join(directory, rundir.THRESHOLD_JSON), "w", encoding="utf-8") as f:
    json.dump({"threshold": predictor.threshold, "checkpoint_step": predictor.step}, f)
  domain.write(directory, predictor.training_domain)


def write_threshold(workdir: str, threshold: float, checkpoint_step: int,
                    balanced_accuracy: float) -> None:
  """Records the decision threshold chosen on the validation split for a checkpoint."""
  with open(os.path.join(workdir, rundir.THRESHOLD_JSON), "w") as f:
    json.dump({"threshold": threshold, "checkpoint_step": checkpoint_step,
               "chosen_on": "validation", "balanced_accuracy": balanced_accuracy}, f,
              indent=2)


def find_images(paths: Iterable[str]) -> list[str]:
  """Image files among `paths`, folders searched recursively, in a stable order.

  Files named explicitly are kept whatever their extension, so that a file the user
  asked about gets a row (with an error if it is not an image) rather than vanishing.
  """
  found = []
  for path in paths:
    if os.path.isdir(path):
      for root, dirs, files in os.walk(path):
        dirs.sort()
        found.extend(os.path.join(root, name) for name in sorted(files)
                     if name.lower().endswith(image_decoding.IMAGE_EXTENSIONS))
    else:
      found.append(path)
  return found


@dataclasses.dataclass(frozen=True)
class DecodedFiles:
  """Files decoded for a Predictor: images (N, S, S, C), each one's JPEG tables aligned
  with its pixels (N, 2, 8, 8), and per file its `ImageFormat` and error (None where
  it decoded; its image is then zeros and its format None)."""
  images: np.ndarray
  jpeg_tables: np.ndarray
  formats: list[image_decoding.ImageFormat | None]
  errors: list[str | None]


def _read(path: str, transform: Callable[[bytes], bytes] | None = None) -> bytes:
  with open(path, "rb") as f:
    data = f.read()
  return transform(data) if transform else data


def _error_text(e: Exception) -> str:
  return f"{type(e).__name__}: {' '.join(str(e).split())}"


def decode_files(predictor: Predictor, paths: Sequence[str],
                 transform: Callable[[bytes], bytes] | None = None,
                 num_threads: int | None = None) -> DecodedFiles:
  """Decodes files in threads (PIL releases the GIL), after `transform` of each file's
  bytes if given (evaluate's format shifts).

  A file that cannot be read or decoded gets an error message and a zero image, so one
  bad file never stops the rest.
  """
  def load(path):
    try:
      return predictor.decode(_read(path, transform)), None
    except Exception as e:  # pylint: disable=broad-except
      # Any failure to read or decode (PIL raises many types) is this file's error.
      return None, _error_text(e)

  channels = 1 if predictor.grayscale else 3
  size = predictor.image_size
  images = np.zeros((len(paths), size, size, channels), np.uint8)
  tables = np.zeros((len(paths), *jpeg_tables.NO_TABLES.shape), jpeg_tables.TABLES_DTYPE)
  formats, errors = [], []
  with concurrent.futures.ThreadPoolExecutor(num_threads or os.cpu_count()) as pool:
    for i, (decoded, error) in enumerate(pool.map(load, paths)):
      if decoded is not None:
        images[i], image_format = decoded
        tables[i] = image_format.grid_tables(size, predictor.native_crop)
      formats.append(None if decoded is None else decoded[1])
      errors.append(error)
  return DecodedFiles(images, tables, formats, errors)


@dataclasses.dataclass(frozen=True)
class DecodedFaces:
  """The faces found in files, cropped for a Predictor: per face its crop (F, S, S, C),
  the file it came from (`file_index`), the detector's box (x0, y0, x1, y1) and score,
  and the side of its aligned square in the photo's pixels (`face_crop.square`); per
  file its `ImageFormat` and error, as in `DecodedFiles`."""
  images: np.ndarray
  file_index: np.ndarray
  boxes: np.ndarray
  scores: np.ndarray
  sides: np.ndarray
  formats: list[image_decoding.ImageFormat | None]
  errors: list[str | None]


# Photos decoded at once: whole photos are large (a 12 MP one is 36 MB), so a folder is
# decoded a few at a time, and only their face crops are kept.
PHOTOS_IN_FLIGHT = 8


def _faces_of(data: bytes, settings: face_crop.CropSettings, grayscale: bool):
  """One photo's bytes -> its format and, per face, (crop, box, score, square side)."""
  photo, image_format = image_decoding.decode_photo(data)
  found = faces.detect(photo)
  cropped = []
  for box, landmarks, score in zip(found.boxes, found.landmarks, found.scores):
    crop, corners = face_crop.crop(photo, landmarks, settings)
    cropped.append(((preprocessing.to_grayscale_uint8(crop) if grayscale else crop),
                    box, score, face_crop.side(corners)))
  return image_format, cropped


def decode_faces(predictor: Predictor, paths: Sequence[str],
                 transform: Callable[[bytes], bytes] | None = None) -> DecodedFaces:
  """Finds and crops every face of each file, reading a few files at a time in threads;
  a file that cannot be read or decoded gets an error, and the others go on."""
  settings = predictor.crop_settings

  def load(path):
    try:
      return _faces_of(_read(path, transform), settings, predictor.grayscale), None
    except Exception as e:  # pylint: disable=broad-except
      return None, _error_text(e)

  channels = 1 if predictor.grayscale else 3
  crops, index, boxes, scores, sides, formats, errors = [], [], [], [], [], [], []
  with concurrent.futures.ThreadPoolExecutor(PHOTOS_IN_FLIGHT) as pool:
    for start in range(0, len(paths), PHOTOS_IN_FLIGHT):
      for decoded, error in pool.map(load, paths[start:start + PHOTOS_IN_FLIGHT]):
        formats.append(None if decoded is None else decoded[0])
        errors.append(error)
        for crop, box, score, side in ([] if decoded is None else decoded[1]):
          crops.append(crop.reshape(settings.size, settings.size, channels))
          index.append(len(formats) - 1)
          boxes.append(box)
          scores.append(score)
          sides.append(side)
  size = settings.size
  return DecodedFaces(
      np.stack(crops) if crops else np.zeros((0, size, size, channels), np.uint8),
      np.array(index, np.int64), np.array(boxes, np.float32).reshape(-1, 4),
      np.array(scores, np.float32), np.array(sides, np.float32), formats, errors)
