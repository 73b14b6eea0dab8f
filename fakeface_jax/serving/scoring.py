"""Rows of predictions for image files: one per face found in each (`predict_faces`), or
one per whole file (`predict_files`), with the columns `fakeface-predict` writes (its
docstring says what each holds); and a file's rows merged into one (`image_rows`).

The library behind `fakeface-predict`, `fakeface-evaluate --folder` and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables
from fakeface_jax.serving import inference

COLUMNS = ("path", "face", "x0", "y0", "x1", "y1", "face_score", "p_fake", "prediction",
           "image_prediction", "scored", "warnings", "format", "width", "height",
           "jpeg_quality", "jpeg_grid", "feature_distance", "error")
FACE_COLUMNS = ("face", "x0", "y0", "x1", "y1", "face_score")
# A face row's fields that come from what was scored: its crop, or its whole file.
SCORE_COLUMNS = ("p_fake", "scored", "warnings", "jpeg_grid", "feature_distance")


def _grid(image_format: image_decoding.ImageFormat, tables: np.ndarray) -> str:
  """`jpeg_grid` of a file from the tables decoding gave it (`inference.decode_files`)."""
  if image_format.jpeg_quality is None:
    return "none"
  return "aligned" if tables.any() else "moved"


def predict_files(predictor: inference.Predictor, paths: list[str],
                  transform: Callable[[bytes], bytes] | None = None) -> list[dict]:
  """One row per path, in order (COLUMNS); rows of unreadable files carry only path and
  error. `transform` changes each file's bytes before decoding (evaluate's shifts)."""
  files = inference.decode_files(predictor, paths, transform)
  ok = [i for i, error in enumerate(files.errors) if error is None]
  p_fake, distance = predictor.score(files.images[ok], files.jpeg_tables[ok])
  rows = [dict.fromkeys(COLUMNS) | {"path": path, "error": error}
          for path, error in zip(paths, files.errors)]
  for k, (i, p) in enumerate(zip(ok, p_fake)):
    image_format = files.formats[i]
    d = None if distance is None else float(distance[k])
    verdict = "fake" if predictor.is_fake(p) else "real"
    rows[i].update(
        p_fake=float(p), prediction=verdict, image_prediction=verdict, scored="file",
        warnings=";".join(predictor.warnings(image_format, d)),
        format=image_format.format, width=image_format.width, height=image_format.height,
        jpeg_quality=image_format.jpeg_quality,
        jpeg_grid=_grid(image_format, files.jpeg_tables[i]),
        feature_distance=None if d is None else round(d, 4))
  return rows


def predict_faces(predictor: inference.Predictor, paths: list[str],
                  transform: Callable[[bytes], bytes] | None = None) -> list[dict]:
  """One row per face found (COLUMNS), files in order and each file's faces the largest
  first; one row without a face for a file with none, and one with only path and error
  for a file that could not be read. A face image that `Predictor.scores_whole` takes
  gives its largest face's row the whole file's score; the other faces are scored by
  their crops, with the predictor's `crop_model`. `transform` changes each file's bytes
  before anything else (evaluate's shifts)."""
  cropper = predictor.crop_model
  found = inference.decode_faces(cropper, paths, transform)
  faces_of = [np.flatnonzero(found.file_index == i) for i in range(len(paths))]
  whole = _scored_whole(predictor, paths, found, faces_of, cropper.crop_settings.margin,
                        transform)
  # A file scored whole gives its largest face that score instead of its crop's.
  crops = np.array([k for i, faces in enumerate(faces_of)
                    for k in (faces[1:] if i in whole else faces)], np.int64)
  p_fake, distance = cropper.score(found.images[crops])
  scores = {}
  for n, k in enumerate(crops):
    d = None if distance is None else float(distance[n])
    image_format = found.formats[found.file_index[k]]
    scores[k] = {
        "p_fake": float(p_fake[n]), "scored": "face",
        "prediction": "fake" if cropper.is_fake(p_fake[n]) else "real",
        "warnings": ";".join(cropper.face_warnings(image_format, found.sides[k], d)),
        "jpeg_grid": _grid(image_format, jpeg_tables.NO_TABLES),
        "feature_distance": None if d is None else round(d, 4)}
  for i, file_row in whole.items():
    scores[faces_of[i][0]] = {key: file_row[key] for key in (*SCORE_COLUMNS, "prediction")}
  rows = []
  for i, (path, image_format, error) in enumerate(zip(paths, found.formats, found.errors)):
    row = dict.fromkeys(COLUMNS) | {"path": path, "error": error}
    faces = faces_of[i]
    if error is None:
      row.update(format=image_format.format, width=image_format.width,
                 height=image_format.height, jpeg_quality=image_format.jpeg_quality)
    if error is not None or not len(faces):
      rows.append(row | ({} if error else {"warnings": "no_face",
                                           "jpeg_grid": _grid(image_format,
                                                              jpeg_tables.NO_TABLES)}))
      continue
    verdict = "fake" if any(scores[k]["prediction"] == "fake" for k in faces) else "real"
    for face, k in enumerate(faces):
      x0, y0, x1, y1 = (round(float(v), 1) for v in found.boxes[k])
      rows.append(row | scores[k] | {
          "face": face, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
          "face_score": round(float(found.scores[k]), 4), "image_prediction": verdict})
  return rows


def _scored_whole(predictor: inference.Predictor, paths: list[str],
                  found: inference.DecodedFaces, faces_of: list[np.ndarray],
                  margin: float, transform: Callable[[bytes], bytes] | None
                  ) -> dict[int, dict]:
  """`predict_files`' rows, by file index, of the files that `Predictor.scores_whole`
  scores whole (face images of the kind a whole-image run was trained on), given each
  file's faces, the largest first, cropped at `margin` times FFHQ's side, and each
  file's bytes after `transform`."""
  # A file with a face was read; its square at FFHQ's framing is its crop's / margin.
  chosen = [i for i, faces in enumerate(faces_of) if len(faces)
            and predictor.scores_whole(found.formats[i], found.sides[faces[0]] / margin)]
  resaved = [i for i in chosen if predictor.resaves_whole(found.formats[i])]
  as_is = [i for i in chosen if i not in resaved]
  groups = [(as_is, transform, "file")]
  if resaved:
    as_training_file = predictor.training_domain.as_training_file
    groups.append((resaved, (lambda data: as_training_file(transform(data))) if transform
                   else as_training_file, "resaved"))
  rows = {}
  for files, read, scored in groups:
    for i, row in zip(files, predict_files(predictor, [paths[i] for i in files], read)
                      if files else []):
      # A file that changed between the two reads keeps its crop's score.
      if row["error"] is None:
        rows[i] = row | {"scored": scored}
  return rows


def image_verdicts(predictor: inference.Predictor, paths: list[str]) -> list[str | None]:
  """Each file's verdict (`image_prediction`) as the run was trained to give it: of its
  faces for a run trained on face crops, of the whole file otherwise; None where there
  is none (no face, or unreadable)."""
  by_file = rows_by_file((predict_faces if predictor.trained_on_faces else predict_files)(
      predictor, paths))
  return [by_file[path][0]["image_prediction"] for path in paths]


def rows_by_file(rows: list[dict]) -> dict[str, list[dict]]:
  """Each file's rows (one per face, or one), files in order; a file's first row carries
  what is the file's (its verdict, format, error)."""
  by_file = {}
  for row in rows:
    by_file.setdefault(row["path"], []).append(row)
  return by_file


def image_rows(rows: list[dict]) -> list[dict]:
  """One row per file, files in order: its first row (its verdict, format, error), with
  `p_fake` the highest of its faces' (None for a file with none, or unreadable) and
  `warnings` each of its faces' once: a photo is as fake as its fakest face, as
  `image_prediction` says, and as doubtful as its most doubtful."""
  merged = []
  for own in rows_by_file(rows).values():
    scores = [r["p_fake"] for r in own if r["p_fake"] is not None]
    warned = dict.fromkeys(w for r in own if r["warnings"] for w in r["warnings"].split(";"))
    merged.append(own[0] | {"p_fake": max(scores, default=None),
                            "warnings": ";".join(warned)})
  return merged
