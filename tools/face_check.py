r"""Faces inside larger photos: does predict find them, and judge them as it judges the crops?

  python -m tools.face_check --per_set 100                          # face finding only
  python -m tools.face_check --per_set 100 --workdir runs/general   # and a run's verdicts
  python -m tools.face_check --per_set 100 --packaged               # the shipped model's

From the repository root with ../shared beside it. Each shared set's face images (the
140k subset's `valid`, lfw_faceswap's `valid`, ciplab_256's training images: half real,
half fake, drawn with a fixed seed) are pasted into photo-like canvases (`canvas`): 700
to 1600 px wide, the face image 18-45% of the width at a random place, over another image
of the set scrambled in blocks (its colours without a face), enlarged and blurred, saved
as JPEG at quality 80-95. Reported per set: the
share of canvases with exactly one face found and inside the pasted image, with any face
inside it, faces found outside it, and the detector's median time per canvas; with a
model, the per-image verdict accuracy on the canvases (`fakeface-predict`'s faces) and
on the face images alone, scored as the model was trained (`scoring.image_verdicts`:
whole files, or faces for a run trained on face crops), both also on the real half
alone (`*_real_accuracy`), the share of canvases scored whole (`canvas_scored_whole`,
which should be none), and the shares warned `size` of
the pasted faces, of smaller faces inside the pasted image and of faces outside it
(`size_warned`).
Writes the table to stdout and JSON to --output.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from PIL import ImageFilter

from fakeface_jax import classes
from fakeface_jax.data import faces
from fakeface_jax.serving import inference
from fakeface_jax.serving import scoring

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                      "shared", "data")
# Set name -> its (real, fake) folders under SHARED.
SETS = {
    "140k": ("real_vs_fake_140k/real_vs_fake/real-vs-fake/valid/real",
             "real_vs_fake_140k/real_vs_fake/real-vs-fake/valid/fake"),
    "lfw_faceswap": ("lfw_faceswap/valid/real", "lfw_faceswap/valid/fake"),
    "ciplab": ("ciplab_256/real_and_fake_face/training_real",
               "ciplab_256/real_and_fake_face/training_fake"),
}
# How much of a canvas's width a pasted face image takes, and the canvas's width.
FACE_SHARE, CANVAS_WIDTH, QUALITY = (0.18, 0.45), (700, 1600), (80, 95)

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line; defined when run, not on import (tests import the canvases)."""
  flags.DEFINE_integer("per_set", 100, "Canvases per shared set (half real, half fake).")
  flags.DEFINE_string("workdir", None, "Run whose verdicts to compare (optional).")
  flags.DEFINE_bool("packaged", False, "Compare the verdicts of the packaged model.")
  flags.DEFINE_integer("seed", 0, "Seed of the drawn images and canvases.")
  flags.DEFINE_string("output", None, "JSON file of the table (optional).")


def canvas(faces_rgb: list[np.ndarray], background: np.ndarray, rng: np.random.Generator
           ) -> tuple[bytes, list[tuple[int, int, int, int]]]:
  """A photo-like JPEG with each face image pasted at 18-45% of its width, apart from
  each other, over `background` scrambled, enlarged and blurred; and each pasted region
  (x0, y0, x1, y1)."""
  width = int(rng.integers(*CANVAS_WIDTH, endpoint=True))
  height = int(width * rng.uniform(0.7, 1.3))
  photo = Image.fromarray(_scrambled(background, rng)).resize((width, height),
                                                             Image.Resampling.BICUBIC)
  photo = photo.filter(ImageFilter.GaussianBlur(radius=width / 60))
  regions = []
  for face in faces_rgb:
    for _ in range(100):  # Places that do not overlap the faces already pasted.
      side = int(width * rng.uniform(*FACE_SHARE) / max(1, len(faces_rgb) ** 0.5))
      x0, y0 = (int(rng.integers(0, max(1, limit - side))) for limit in (width, height))
      box = (x0, y0, x0 + side, y0 + side)
      if all(box[2] <= r[0] or r[2] <= box[0] or box[3] <= r[1] or r[3] <= box[1]
             for r in regions):
        break
    photo.paste(Image.fromarray(face).resize((side, side), Image.Resampling.LANCZOS),
                box[:2])
    regions.append(box)
  buffer = io.BytesIO()
  photo.save(buffer, format="JPEG", quality=int(rng.integers(*QUALITY, endpoint=True)))
  return buffer.getvalue(), regions


def _scrambled(image: np.ndarray, rng: np.random.Generator, blocks: int = 8) -> np.ndarray:
  """The image's blocks (blocks x blocks) in a random order: its colours and textures
  without a face's layout, so that the background holds no face to find."""
  side = min(image.shape[:2]) // blocks * blocks
  step = side // blocks
  tiles = [image[y:y + step, x:x + step] for y in range(0, side, step)
           for x in range(0, side, step)]
  order = rng.permutation(len(tiles))
  rows = [np.concatenate([tiles[k] for k in order[r * blocks:(r + 1) * blocks]], axis=1)
          for r in range(blocks)]
  return np.concatenate(rows, axis=0)


def inside(box: np.ndarray, region: tuple[int, int, int, int]) -> bool:
  """Whether a found box is of a pasted region: its centre lies in it. (MTCNN's boxes run
  from brow to chin, so a face that fills its image has a box reaching past it.)"""
  x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
  return bool(region[0] <= x <= region[2] and region[1] <= y <= region[3])


def draw_files(name: str, per_set: int, rng: np.random.Generator) -> tuple[list[str], list[int]]:
  """`per_set` files of a set, half real (label 1) and half fake (label 0)."""
  paths, labels = [], []
  for label, folder in zip((1, 0), SETS[name]):
    folder = os.path.join(SHARED, folder)
    names = sorted(os.listdir(folder))
    chosen = rng.choice(len(names), min(len(names), per_set // 2), replace=False)
    paths += [os.path.join(folder, names[i]) for i in sorted(chosen)]
    labels += [label] * len(chosen)
  return paths, labels


def _read_rgb(path: str) -> np.ndarray:
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def check_set(name: str, per_set: int, seed: int, folder: str,
              predictor: inference.Predictor | None) -> dict:
  """One set's row: face finding on its canvases, and a model's verdicts if given."""
  rng = np.random.default_rng([seed, len(name)])
  paths, labels = draw_files(name, per_set, rng)
  canvases, regions, found_one, found_inside, outside, seconds = [], [], 0, 0, 0, []
  for i, path in enumerate(paths):
    background = _read_rgb(paths[(i + 1) % len(paths)])
    data, [region] = canvas([_read_rgb(path)], background, rng)
    regions.append(region)
    canvases.append(os.path.join(folder, f"{name}_{i:04d}.jpg"))
    with open(canvases[-1], "wb") as f:
      f.write(data)
    photo = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    start = time.perf_counter()
    found = faces.detect(photo)
    seconds.append(time.perf_counter() - start)
    hits = [inside(box, region) for box in found.boxes]
    found_one += len(found) == 1 and hits[0]
    found_inside += any(hits)
    outside += len(hits) - sum(hits)
  row = {"set": name, "canvases": len(paths), "one_face_inside": found_one / len(paths),
         "any_face_inside": found_inside / len(paths), "faces_outside": outside,
         "detect_ms_median": 1000 * float(np.median(seconds))}
  if predictor is not None:
    row.update(_verdicts(predictor, canvases, regions, paths, np.array(labels)))
  return row


def _verdicts(predictor: inference.Predictor, canvases: list[str],
              regions: list[tuple[int, int, int, int]], originals: list[str],
              labels: np.ndarray) -> dict:
  """Accuracy of the photos' verdicts on the canvases and on the face images alone, and
  the shares of faces warned `size` (`size_warned`)."""
  by_file = scoring.rows_by_file(scoring.predict_faces(predictor, canvases))
  truth = np.array([classes.NAMES[y] for y in labels], object)
  on_canvas = np.array([by_file[p][0]["image_prediction"] for p in canvases], object)
  alone = np.array(scoring.image_verdicts(predictor, originals), object)
  real = labels == classes.REAL
  return {"canvas_accuracy": float((on_canvas == truth).mean()),
          "alone_accuracy": float((alone == truth).mean()),
          "canvas_real_accuracy": float((on_canvas == truth)[real].mean()),
          "alone_real_accuracy": float((alone == truth)[real].mean()),
          "canvas_no_face": float(np.mean([v is None for v in on_canvas])),
          # A canvas is a photo with a face image in it, never itself one to score whole.
          "canvas_scored_whole": float(np.mean([by_file[p][0]["scored"] in ("file", "resaved")
                                                for p in canvases])),
          **size_warned([by_file[p] for p in canvases], regions)}


def size_warned(faces_of_canvases: list[list[dict]], regions: list[tuple[int, int, int, int]]
                ) -> dict:
  """Of each canvas's predict rows and the region its face image was pasted in: the share
  warned `size` of the pasted faces (the largest face found inside each region), of the
  other faces inside a region (people behind the subject of a face image, often a tenth
  of its size) and of the faces outside, with the counts of the last two."""
  warned = {"pasted": [], "inner": [], "outside": []}
  for rows, region in zip(faces_of_canvases, regions):
    found = [r for r in rows if r["face"] is not None]
    within = [r for r in found if inside(np.array([r[k] for k in ("x0", "y0", "x1", "y1")],
                                                  float), region)]
    pasted = max(within, key=lambda r: r["x1"] - r["x0"], default=None)
    for r in found:
      kind = "pasted" if r is pasted else "inner" if any(r is w for w in within) else "outside"
      warned[kind].append("size" in (r["warnings"] or "").split(";"))
  share = {kind: float(np.mean(flags)) if flags else 0.0 for kind, flags in warned.items()}
  return {"pasted_size_warned": share["pasted"], "inner_faces": len(warned["inner"]),
          "inner_size_warned": share["inner"], "other_faces": len(warned["outside"]),
          "other_size_warned": share["outside"]}


def main(argv: list[str]) -> None:
  del argv
  if not os.path.isdir(SHARED):
    raise SystemExit(f"no shared data at {SHARED}")
  predictor = (inference.load_run(FLAGS.workdir) if FLAGS.workdir else
               inference.load_packaged() if FLAGS.packaged else None)
  with tempfile.TemporaryDirectory() as folder:
    rows = [check_set(name, FLAGS.per_set, FLAGS.seed, folder, predictor) for name in SETS]
  columns = list(rows[0])
  print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
  for row in rows:
    print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v)
                            for v in row.values()) + " |")
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
