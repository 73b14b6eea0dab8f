"""Every file of a source replaced by its face's aligned crop (`config.data.face_crop`).

The faces are found once per prepared dataset: `landmarks` runs the detector over every
file of every split and keeps each file's largest face (its subject) in
`PREPARED_DIR/face_landmarks/KEY.npz` (KEY: `faces.settings_key()`, so landmarks found
with other settings are not reused), so later runs, and a source's re-saved copy, read
them back. `FaceCropFiles` then turns a file's bytes
into its crop (`face_crop.crop` at the model's input size, stored as PNG so that nothing
is lost before decoding): the same crop predict makes of a face in a photo, so training,
validation, evaluation and predict see faces framed alike.

A file in which no face is found is kept whole (resized to the model's input, as without
face crops) and counted in the log and in `KEY.json`. The shared datasets are face
images already, so such a file is still a face at about the crop's framing, and keeping
it leaves every split, fold and cache row the files of a run without crops.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time

import jax
import numpy as np
from absl import logging
from PIL import Image

from fakeface_jax import progress
from fakeface_jax.data import datasets
from fakeface_jax.data import degradations
from fakeface_jax.data import face_crop
from fakeface_jax.data import faces
from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables
from fakeface_jax.data import selection

LANDMARKS_DIR = "face_landmarks"


@dataclasses.dataclass(frozen=True)
class Landmarks:
  """Each file's largest face: landmarks (N, 5, 2) in the file's pixels (NaN where
  none was found) and the size they refer to (N, 2: width, height), by path."""
  paths: np.ndarray
  points: np.ndarray
  sizes: np.ndarray

  def __post_init__(self):
    object.__setattr__(self, "_row", {str(p): i for i, p in enumerate(self.paths)})

  def of(self, path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(landmarks (5, 2), (width, height)) of `path`'s face, None without one."""
    row = self._row.get(path)
    if row is None or np.isnan(self.points[row]).any():
      return None
    return self.points[row], self.sizes[row]

  @property
  def found(self) -> int:
    return int((~np.isnan(self.points).any(axis=(1, 2))).sum())


def _find(builder) -> Landmarks:
  """Runs the detector over every record of every split, logging progress and ETA."""
  sources = [datasets.data_source(builder, split) for split in builder.info.splits]
  total = sum(len(source) for source in sources)
  paths, points, sizes = [], np.full((total, 5, 2), np.nan, np.float32), []
  shown = progress.Progress(f"Finding faces in {builder.info.full_name}", total, "files")
  for source in sources:
    for index in range(len(source)):
      record = source[index]
      row = len(paths)
      paths.append(selection.record_fields(record)[1])
      try:
        photo, _ = image_decoding.decode_photo(record["image"])
      except image_decoding.ImageDecodeError:
        sizes.append((0, 0))  # Prepared files decode; a bad one simply has no face.
        continue
      sizes.append((photo.shape[1], photo.shape[0]))
      found = faces.detect(photo)
      if len(found.scores):
        points[row] = found.landmarks[0]
      shown.update(row + 1)
  return Landmarks(np.array(paths, str), points, np.array(sizes, np.int32).reshape(-1, 2))


def _save(landmarks: Landmarks, path: str, seconds: float) -> None:
  """Writes the landmarks and their summary, each file whole or not at all."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    np.savez(f, paths=landmarks.paths, points=landmarks.points, sizes=landmarks.sizes)
  os.replace(path + ".tmp", path)
  summary = {"files": len(landmarks.paths), "faces_found": landmarks.found,
             "kept_whole": len(landmarks.paths) - landmarks.found,
             "detector": faces.settings_key(), "seconds": round(seconds, 1)}
  with open(path[:-len(".npz")] + ".json", "w") as f:
    json.dump(summary, f, indent=2)


def landmarks(builder) -> Landmarks:
  """Each file's face in the prepared dataset of `builder`, found once and cached beside
  it; on several hosts process 0 finds them and the others read them."""
  path = os.path.join(builder.data_dir, LANDMARKS_DIR, faces.settings_key() + ".npz")
  if jax.process_index() == 0 and not os.path.exists(path):
    logging.info("Finding the face in every file of %s (once) into %s.",
                 builder.info.full_name, path)
    start = time.perf_counter()
    found = _find(builder)
    _save(found, path, time.perf_counter() - start)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"face landmarks {builder.info.full_name}")
  with np.load(path) as saved:
    read = Landmarks(saved["paths"], saved["points"], saved["sizes"])
  missing = len(read.paths) - read.found
  if missing:
    logging.warning("No face found in %d of the %d files of %s: kept whole (%s).", missing,
                    len(read.paths), builder.info.full_name, path[:-len(".npz")] + ".json")
  return read


def _png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class FaceCropFiles:
  """A file's bytes -> its face's aligned crop as PNG bytes, after `resave` (the
  source's re-saved copy, whose landmarks are the original file's, scaled to it)."""
  faces: Landmarks
  settings: face_crop.CropSettings
  resave: degradations.FileResave | None = None

  def _landmarks(self, path: str, width: int, height: int) -> np.ndarray | None:
    """The file's face landmarks in a copy of it (width, height), None without a face."""
    face = self.faces.of(path)
    if face is None:
      return None
    points, (found_width, found_height) = face
    return points * np.array([width / found_width, height / found_height], np.float32)

  def __call__(self, data: bytes, path: str) -> bytes:
    if self.resave is not None:
      data = self.resave(data, path)
    if self.faces.of(path) is None:
      return data
    photo, _ = image_decoding.decode_photo(data)
    points = self._landmarks(path, photo.shape[1], photo.shape[0])
    return _png(face_crop.crop(photo, points, self.settings)[0])

  def copy_format(self, data: bytes, path: str) -> image_decoding.ImageFormat:
    """What the file was (re-saved, where it is), its size the face's square: what
    predict's warnings compare a face with."""
    image_format = (image_decoding.read_header(data) if self.resave is None
                    else self.resave.copy_format(data, path))
    points = self._landmarks(path, image_format.width, image_format.height)
    if points is None:
      return image_format
    side = round(face_crop.side(face_crop.square(points, self.settings.margin)))
    return dataclasses.replace(image_format, width=side, height=side,
                               tables=jpeg_tables.NO_TABLES)
