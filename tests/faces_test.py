"""The face detector: MTCNN's shipped weights, its box arithmetic, and faces found in
photo-like canvases built from the shared sets (skipped without ../shared)."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from fakeface_jax.data import faces
from fakeface_jax.serving import inference
from fakeface_jax.serving import scoring
from tests.conftest import shared_data
from tools import face_check


def test_the_shipped_weights_have_the_networks_shapes():
  pnet, rnet, onet = (faces._weights(n) for n in ("pnet", "rnet", "onet"))
  assert (len(pnet), len(rnet), len(onet)) == (13, 16, 21)
  assert pnet[0].shape == (3, 3, 3, 10) and rnet[9].shape == (576, 128)
  assert onet[12].shape == (1152, 256) and onet[17].shape == (256, 10)
  assert all(w.dtype == np.float32 for w in pnet + rnet + onet)


def test_each_network_gives_its_outputs_shapes():
  offsets, probability = faces.pnet(faces._weights("pnet"), np.zeros((2, 64, 96, 3), np.float32))
  # 64 px: conv 62, pool 31, conv 29, conv 27; stride 2 windows of 12 px over 64 px.
  assert offsets.shape == (2, 27, 43, 4) and probability.shape == (2, 27, 43)
  offsets, probability = faces.rnet(faces._weights("rnet"), np.zeros((5, 24, 24, 3), np.float32))
  assert offsets.shape == (5, 4) and probability.shape == (5,)
  offsets, landmarks, probability = faces.onet(faces._weights("onet"),
                                               np.zeros((3, 48, 48, 3), np.float32))
  assert (offsets.shape, landmarks.shape, probability.shape) == ((3, 4), (3, 10), (3,))
  assert np.all((0 <= probability) & (probability <= 1))


def test_nms_keeps_the_best_of_each_overlapping_group_and_every_separate_box():
  boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10],
                    [2, 0, 12, 10]], np.float64)
  scores = np.array([0.8, 0.9, 0.5, 0.7, 0.95])
  # Box 4 (the best) overlaps 1 by 81/119 and 0 and 3 by 80/120; 0 and 3 are twins.
  assert faces.nms(boxes, scores, 0.5).tolist() == [4, 2]
  assert faces.nms(boxes, scores, 0.7).tolist() == [4, 1, 0, 2]
  assert faces.nms(boxes, scores, 1.0).tolist() == [4, 1, 0, 3, 2]
  assert faces.nms(boxes[:0], scores[:0], 0.5).tolist() == []
  assert faces.nms(boxes[:1], scores[:1], 0.5).tolist() == [0]


def test_min_overlap_removes_a_box_inside_a_larger_one():
  boxes = np.array([[0, 0, 100, 100], [40, 40, 60, 60]], np.float64)
  scores = np.array([0.9, 0.8])
  assert faces.nms(boxes, scores, 0.7, "union").tolist() == [0, 1]
  assert faces.nms(boxes, scores, 0.7, "min").tolist() == [0]
  with pytest.raises(ValueError, match="union' or 'min"):
    faces.nms(boxes, scores, 0.7, "max")


def test_calibration_moves_each_edge_by_its_share_of_the_box():
  boxes = np.array([[10, 20, 30, 60]], np.float64)  # 20 wide, 40 high.
  moved = faces.calibrate(boxes, np.array([[0.1, -0.25, 0.5, 0.0]]))
  np.testing.assert_allclose(moved, [[12, 10, 40, 60]])


def test_squares_grow_the_shorter_side_about_the_centre():
  squares = faces.to_square(np.array([[10, 20, 30, 60], [0, 0, 8, 4]], np.float64))
  np.testing.assert_allclose(squares, [[0, 20, 40, 60], [0, -2, 8, 6]])


def test_the_pyramid_starts_at_the_smallest_face_and_stops_at_the_window():
  scales = faces.pyramid_scales(400, 300, min_face=24)
  assert scales[0] == 0.5 and np.allclose(scales[1:] / scales[:-1], faces.PYRAMID_FACTOR)
  assert 300 * scales[-1] >= 12 > 300 * scales[-1] * faces.PYRAMID_FACTOR
  # Never above the image's own scale, and nothing for an image under the window.
  assert faces.pyramid_scales(400, 300, min_face=6)[0] == 1.0
  assert len(faces.pyramid_scales(11, 50, min_face=12)) == 0


def test_a_featureless_image_has_no_face_and_bad_arrays_are_refused():
  rng = np.random.default_rng(0)
  noise = Image.fromarray(rng.integers(0, 256, (40, 50, 3), np.uint8)).resize((800, 640))
  assert len(faces.detect(np.asarray(noise))) == 0
  assert len(faces.detect(np.zeros((5, 5, 3), np.uint8))) == 0
  with pytest.raises(ValueError, match="uint8"):
    faces.detect(np.zeros((50, 50, 3), np.float32))
  with pytest.raises(ValueError, match="image, got shape"):
    faces.detect(np.zeros((50, 50, 2), np.uint8))


def _shared_faces(count: int, seed: int = 0):
  folder = shared_data("real_vs_fake_140k", "real_vs_fake", "real-vs-fake", "valid", "real")
  names = sorted(os.listdir(folder))
  chosen = np.random.default_rng(seed).choice(len(names), count, replace=False)
  return [face_check._read_rgb(os.path.join(folder, names[i])) for i in chosen]


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_photos_with_0_to_3_faces_get_as_many_face_rows(count, learned_run, tmp_path):
  images = _shared_faces(count + 1, seed=count)
  rng = np.random.default_rng(count)
  data, regions = face_check.canvas(images[:count], images[-1], rng)
  path = str(tmp_path / f"{count}.jpg")
  with open(path, "wb") as f:
    f.write(data)
  rows = scoring.predict_faces(inference.load_run(learned_run[0]), [path])
  if count == 0:
    assert [(r["face"], r["warnings"], r["p_fake"]) for r in rows] == [(None, "no_face", None)]
    return
  assert [r["face"] for r in rows] == list(range(count))
  found = np.array([[r["x0"], r["y0"], r["x1"], r["y1"]] for r in rows])
  # Each pasted face is found once, largest first.
  assert sorted(next(k for k, region in enumerate(regions) if face_check.inside(box, region))
                for box in found) == list(range(count))
  assert np.all(np.diff((found[:, 2] - found[:, 0])) <= 0)


def test_each_set_pasted_into_canvases_is_found_inside_its_place():
  found = 0
  for name in face_check.SETS:
    rng = np.random.default_rng([1, len(name)])
    paths, _ = face_check.draw_files(name, 4, rng)
    for i, path in enumerate(paths):
      data, [region] = face_check.canvas([face_check._read_rgb(path)],
                                         face_check._read_rgb(paths[i - 1]), rng)
      photo = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
      result = faces.detect(photo)
      hits = [face_check.inside(box, region) for box in result.boxes]
      assert any(hits), (name, path)
      landmarks = result.landmarks[hits.index(True)]
      # Eyes above the nose, the nose above the mouth, the left eye left of the right.
      assert landmarks[0, 1] < landmarks[2, 1] < landmarks[3, 1]
      assert landmarks[0, 0] < landmarks[1, 0] and landmarks[3, 0] < landmarks[4, 0]
      found += 1
  assert found == 12


def _row(face, x0, x1, warnings=""):
  return {"face": face, "x0": x0, "y0": 10.0, "x1": x1, "y1": 40.0, "warnings": warnings}


def test_size_warnings_of_the_pasted_face_and_of_smaller_faces_inside_it_are_told_apart():
  region = (0, 0, 100, 100)
  canvases = [
      # A small background face inside the pasted image, listed first, warned; the
      # pasted face itself not: it is the largest face inside the region.
      [_row(0, 10, 25, "small_face;size"), _row(1, 30, 90)],
      [_row(0, 200, 260, "size"), _row(1, 20, 80, "size")],  # One face outside.
      [_row(None, 0, 0, "no_face")],
  ]
  shares = face_check.size_warned(canvases, [region] * 3)
  assert shares == {"pasted_size_warned": 0.5, "inner_faces": 1, "inner_size_warned": 1.0,
                    "other_faces": 1, "other_size_warned": 1.0}
