"""predict with faces: one row per face, its numbers those of its own crop, a `no_face`
row for a photo without one, the photo's verdict from any fake face, warnings of the
face's size, bad files among good ones, the command line's summary and --annotate.

The detector is replaced by one that 'finds' faces placed by hand, so that each row can
be checked against the crop it must have scored; tests/faces_test.py checks the real one.
"""

import csv
import dataclasses
import os
import types

import jax
import numpy as np
import pytest
from PIL import Image

from fakeface_jax import classes
from fakeface_jax.data import face_crop
from fakeface_jax.data import faces
from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables
from fakeface_jax.evaluation import cross_dataset
from fakeface_jax.serving import inference
from fakeface_jax.serving import predict
from fakeface_jax.serving import scoring
from tests import image_decoding_test

# Landmarks (left eye, right eye, nose, mouth corners) of a face at (x, y), `scale`
# times the size of LEVEL's: eye distance 20, eye to mouth 30, so its square's side is
# 108 x scale.
LEVEL = np.array([[-10, -15], [10, -15], [0, 0], [-5, 15], [5, 15]], np.float32)


def _face(x, y, scale, score):
  landmarks = LEVEL * scale + [x, y]
  box = np.array([x - 20 * scale, y - 25 * scale, x + 20 * scale, y + 25 * scale], np.float32)
  return box, landmarks, score


# Faces by photo width: the stub tells photos apart by their size.
PLACED = {
    300: [],
    310: [_face(150, 140, 1.0, 0.99)],
    320: [_face(90, 100, 0.8, 0.97), _face(230, 150, 0.25, 0.91)],
    330: [_face(80, 80, 0.6, 0.999), _face(200, 90, 1.2, 0.95), _face(160, 220, 0.5, 0.9)],
    # A face image: its face's square (162 px) spans 0.62 of the 260 px height.
    340: [_face(170, 130, 1.5, 0.99), _face(300, 40, 0.3, 0.9)],
    # An original of a face image: its face's square (238 px) spans 0.91 of its height.
    350: [_face(175, 130, 2.2, 0.99), _face(320, 40, 0.3, 0.9)],
}


def _stub_detect(image, **unused):
  placed = PLACED[image.shape[1]]
  return faces.Faces(
      np.array([b for b, _, _ in placed], np.float32).reshape(-1, 4),
      np.array([lm for _, lm, _ in placed], np.float32).reshape(-1, 5, 2),
      np.array([s for _, _, s in placed], np.float32))


@pytest.fixture
def stub_detector(monkeypatch):
  monkeypatch.setattr(faces, "detect", _stub_detect)


@pytest.fixture(scope="module")
def predictor(learned_run):
  return inference.load_run(learned_run[0])


def _photos(folder, widths=(300, 310, 320, 330), quality=92):
  """Photos of smooth noise (JPEG), one per width, 260 px high; paths in width order."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  paths = []
  for i, width in enumerate(widths):
    small = rng.integers(0, 256, (26, width // 10, 3), dtype=np.uint8)
    photo = Image.fromarray(small).resize((width, 260), Image.Resampling.BICUBIC)
    path = str(folder / f"p{i}_{width}.jpg")
    photo.save(path, quality=quality)
    paths.append(path)
  return paths


def _train_on_sides(predictor, monkeypatch, min_side, max_side):
  """The predictor as if its training images had been min_side-max_side px."""
  monkeypatch.setattr(predictor, "training_domain", dataclasses.replace(
      predictor.training_domain, min_side=min_side, max_side=max_side))


def _own_crop_scores(predictor, path):
  """P(fake) of each placed face, from its crop made directly from the decoded photo."""
  with open(path, "rb") as f:
    photo = np.asarray(Image.open(f).convert("RGB"))
  crops = [face_crop.crop(photo, landmarks, predictor.crop_settings)[0]
           for _, landmarks, _ in PLACED[photo.shape[1]]]
  return predictor.score(np.stack(crops))[0] if crops else np.zeros(0)


def test_each_face_gets_a_row_scored_from_its_own_crop_and_a_faceless_photo_one_row(
    stub_detector, predictor, tmp_path):
  paths = _photos(tmp_path / "in")
  rows = scoring.predict_faces(predictor, paths)
  assert [(r["path"], r["face"]) for r in rows] == [
      (paths[0], None), (paths[1], 0), (paths[2], 0), (paths[2], 1),
      (paths[3], 0), (paths[3], 1), (paths[3], 2)]
  faceless = rows[0]
  assert faceless["warnings"] == "no_face"
  assert faceless["p_fake"] is faceless["prediction"] is faceless["image_prediction"] is None
  assert (faceless["format"], faceless["width"], faceless["height"]) == ("JPEG", 300, 260)
  assert faceless["error"] is None
  for path in paths[1:]:
    mine = [r for r in rows if r["path"] == path]
    expected = _own_crop_scores(predictor, path)
    np.testing.assert_allclose([r["p_fake"] for r in mine], expected, atol=1e-6)
    verdicts = ["fake" if p >= predictor.threshold else "real" for p in expected]
    assert [r["prediction"] for r in mine] == verdicts
    assert {r["image_prediction"] for r in mine} == {"fake" if "fake" in verdicts else "real"}
    for row, (box, _, score) in zip(mine, PLACED[int(path[-7:-4])]):
      assert [row[k] for k in ("x0", "y0", "x1", "y1")] == pytest.approx(box, abs=0.06)
      assert row["face_score"] == pytest.approx(score, abs=1e-4)
      assert row["jpeg_grid"] == "moved" and row["width"] == int(path[-7:-4])


def test_a_photo_is_fake_when_any_one_of_its_faces_is(
    stub_detector, predictor, monkeypatch, tmp_path):
  paths = _photos(tmp_path / "in", widths=(330,))
  scores = _own_crop_scores(predictor, paths[0])
  # Thresholds between the faces' scores: at each, exactly the faces above it are fake,
  # and the photo is fake as long as one is.
  for threshold in [*np.sort(scores)[:-1] + 1e-4, scores.max() + 1e-4]:
    monkeypatch.setattr(predictor, "threshold", float(threshold))
    rows = scoring.predict_faces(predictor, paths)
    assert [r["prediction"] for r in rows] == ["fake" if p >= threshold else "real"
                                               for p in scores]
    expected = "fake" if (scores >= threshold).any() else "real"
    assert {r["image_prediction"] for r in rows} == {expected}


def test_small_face_and_size_are_about_the_faces_square_not_the_file(
    stub_detector, predictor, tmp_path):
  paths = _photos(tmp_path / "in", widths=(320,))
  rows = scoring.predict_faces(predictor, paths)
  domain = predictor.training_domain
  for row, (_, landmarks, _) in zip(rows, PLACED[320]):
    side = face_crop.side(face_crop.square(landmarks, predictor.crop_settings.margin))
    warned = row["warnings"].split(";")
    assert ("small_face" in warned) == (side < predictor.image_size)
    # Larger than every training image is no warning: the crop downscales it as they were.
    assert ("size" in warned) == (round(side) < domain.min_side)
    assert "upscaled" not in warned
  # The second face (side 27 px) is below the 32 px input and images; the first (86 px)
  # is not, though its 320 x 260 file is outside the training images' 32 px.
  assert [("small_face" in r["warnings"], "size" in r["warnings"]) for r in rows] == [
      (False, False), (True, True)]
  assert "size" in scoring.predict_files(predictor, paths)[0]["warnings"]


def test_a_whole_image_run_scores_a_face_image_whole_and_other_photos_by_their_faces(
    stub_detector, predictor, monkeypatch, tmp_path):
  # Training images of 250-350 px: both photos are of their sizes, and only the 340 px
  # one is a face image (its largest face spans at least half its shorter side).
  _train_on_sides(predictor, monkeypatch, 250, 350)
  paths = _photos(tmp_path / "in", widths=(310, 340))
  rows = scoring.predict_faces(predictor, paths)
  whole = scoring.predict_files(predictor, paths[1:])[0]
  crops = [_own_crop_scores(predictor, path) for path in paths]
  assert [(r["face"], r["scored"]) for r in rows] == [(0, "face"), (0, "file"), (1, "face")]
  np.testing.assert_allclose([r["p_fake"] for r in rows],
                             [crops[0][0], whole["p_fake"], crops[1][1]], atol=1e-6)
  assert rows[1]["p_fake"] == whole["p_fake"]
  for key in ("warnings", "jpeg_grid", "feature_distance"):
    assert rows[1][key] == whole[key], key
  # Not the face's crop: its score differs from the whole file's.
  assert abs(crops[1][0] - whole["p_fake"]) > 1e-4
  verdict = ("fake" if predictor.is_fake(np.array([rows[1]["p_fake"], rows[2]["p_fake"]])).any()
             else "real")
  assert rows[1]["image_prediction"] == rows[2]["image_prediction"] == verdict


def test_a_face_model_scores_the_crops_at_its_own_framing_and_threshold(
    stub_detector, predictor, monkeypatch, tmp_path):
  # The packaged pair: a whole-image run, and a face-crop run (here at half FFHQ's
  # side, with other parameters and threshold) for the faces not in a face image scored
  # whole.
  _train_on_sides(predictor, monkeypatch, 250, 350)
  faces_run = predictor.config.copy_and_resolve_references()
  with faces_run.unlocked():
    faces_run.data.face_crop.enabled = True
    faces_run.data.face_crop.margin = 0.5
  face_model = inference.Predictor(faces_run, jax.tree.map(lambda x: -2 * x, predictor.params),
                                   predictor.threshold, predictor.step,
                                   training_domain=predictor.training_domain)
  paths = _photos(tmp_path / "in", widths=(320, 340))
  crops = [_own_crop_scores(face_model, path) for path in paths]
  scored = np.array([*crops[0], crops[1][1]])
  # A threshold whose verdicts differ from the whole-image run's on at least one crop.
  face_model.threshold = float(scored.min() - 1e-4 if (scored < predictor.threshold).any()
                               else scored.max() + 1e-4)
  pair = dataclasses.replace(predictor, face_model=face_model)
  rows = scoring.predict_faces(pair, paths)
  # The 340 px face image is still scored whole: its share is measured at FFHQ's framing.
  assert [(r["face"], r["scored"]) for r in rows] == [
      (0, "face"), (1, "face"), (0, "file"), (1, "face")]
  assert rows[2]["p_fake"] == scoring.predict_files(predictor, paths[1:])[0]["p_fake"]
  assert face_model.crop_settings.margin == 0.5
  np.testing.assert_allclose([r["p_fake"] for r in (rows[0], rows[1], rows[3])], scored,
                             atol=1e-6)
  assert not np.allclose(scored, [*_own_crop_scores(predictor, paths[0]),
                                  _own_crop_scores(predictor, paths[1])[1]], atol=1e-4)
  for row in (rows[0], rows[1], rows[3]):
    assert row["prediction"] == ("fake" if face_model.is_fake(row["p_fake"]) else "real")
  assert rows[2]["prediction"] == ("fake" if predictor.is_fake(rows[2]["p_fake"]) else "real")


def test_a_face_image_larger_than_the_training_images_is_scored_as_one_of_them(
    stub_detector, predictor, monkeypatch, tmp_path):
  # Training images of 100-300 px: the 350 x 260 face image is larger, so it is scored
  # whole as the training files were made (300 x 223), and its other face by its crop;
  # the 340 px photo's face fills it only as a pasted face image would, so its crop.
  _train_on_sides(predictor, monkeypatch, 100, 300)
  paths = _photos(tmp_path / "in", widths=(340, 350))
  rows = scoring.predict_faces(predictor, paths)
  as_training = scoring.predict_files(predictor, paths[1:],
                                      predictor.training_domain.as_training_file)[0]
  assert [(r["face"], r["scored"]) for r in rows] == [
      (0, "face"), (1, "face"), (0, "resaved"), (1, "face")]
  for key in ("p_fake", "warnings", "jpeg_grid", "feature_distance"):
    assert rows[2][key] == as_training[key], key
  assert as_training["width"] == 300 and "size" not in as_training["warnings"]
  # The row tells the file as it is, and the re-saved copy scores unlike the file.
  assert (rows[2]["width"], rows[2]["height"]) == (350, 260)
  assert rows[2]["p_fake"] != scoring.predict_files(predictor, paths[1:])[0]["p_fake"]
  crops = [_own_crop_scores(predictor, path) for path in paths]
  np.testing.assert_allclose([r["p_fake"] for r in rows[:2]] + [rows[3]["p_fake"]],
                             [*crops[0], crops[1][1]], atol=1e-6)


def test_scores_whole_takes_face_images_of_or_above_the_training_sizes_of_a_whole_image_run(
    predictor, monkeypatch):
  domain = dataclasses.replace(predictor.training_domain, min_side=100, max_side=300)
  monkeypatch.setattr(predictor, "training_domain", domain)
  image = image_decoding.ImageFormat("JPEG", 300, 200, "RGB", 90, jpeg_tables.NO_TABLES)
  share = inference.FACE_IMAGE_SHARE * 200
  assert predictor.scores_whole(image, share)
  assert not predictor.scores_whole(image, share - 0.01)
  # A larger photo is an original only where its face fills it more than when pasted.
  larger = dataclasses.replace(image, width=600, height=400)
  original = inference.ORIGINAL_FACE_SHARE * 400
  assert predictor.scores_whole(larger, original)
  assert not predictor.scores_whole(larger, original - 0.01)
  # (width, height, scored whole, re-saved first): the range's ends are inside it; one
  # pixel below is not; a larger image is, re-saved, where its shorter side, scaled with
  # its longer one to 300, stays at least 100 (1000 x 334 -> 300 x 100).
  for width, height, whole, resaved in [
      (100, 100, True, False), (300, 99, False, True), (301, 200, True, True),
      (1000, 334, True, True), (1000, 330, False, True), (99, 300, False, True)]:
    sized = dataclasses.replace(image, width=width, height=height)
    assert predictor.scores_whole(sized, height) == whole, (width, height)
    assert predictor.resaves_whole(sized) == resaved, (width, height)
  monkeypatch.setattr(predictor, "training_domain", None)
  assert not predictor.scores_whole(image, 300)
  monkeypatch.setattr(predictor, "training_domain", domain)
  faces_run = predictor.config.copy_and_resolve_references()
  with faces_run.unlocked():
    faces_run.data.face_crop.enabled = True
  monkeypatch.setattr(predictor, "config", faces_run)
  assert predictor.trained_on_faces and not predictor.scores_whole(image, 300)


def test_unreadable_files_among_photos_keep_every_other_row_in_place(
    stub_detector, predictor, tmp_path):
  paths = _photos(tmp_path / "in")
  broken = str(tmp_path / "in" / "broken.jpg")
  with open(paths[2], "rb") as f:
    open(broken, "wb").write(f.read()[:300])  # A truncated JPEG.
  missing = str(tmp_path / "missing.jpg")
  mixed = [broken, paths[1], missing, paths[3], paths[0]]
  rows = scoring.predict_faces(predictor, mixed)
  alone = {p: scoring.predict_faces(predictor, [p]) for p in paths}
  assert [r["path"] for r in rows] == [broken, paths[1], missing] + [paths[3]] * 3 + [paths[0]]
  for row in rows:
    if row["path"] in (broken, missing):
      assert row["error"] and row["p_fake"] is None and row["face"] is None
      assert row["warnings"] is None
  assert [r for r in rows if r["path"] in paths] == [
      r for p in (paths[1], paths[3], paths[0]) for r in alone[p]]


def test_a_shift_comes_before_the_faces_are_found_and_before_a_file_is_resaved(
    stub_detector, predictor, monkeypatch, tmp_path):
  # Training images of 100-300 px: the 350 px face image is re-saved as one of them,
  # the 320 px photo scored by its crops; the shift (re-saved at q90) comes first on both.
  _train_on_sides(predictor, monkeypatch, 100, 300)
  paths = _photos(tmp_path / "in", widths=(320, 350), quality=98)
  shift = cross_dataset.SHIFTS["q90"]
  shifted = []
  for path in paths:
    with open(path, "rb") as f:
      data = shift(f.read())
    shifted.append(str(tmp_path / os.path.basename(path)))
    open(shifted[-1], "wb").write(data)
  rows = scoring.predict_faces(predictor, paths, shift)
  expected = scoring.predict_faces(predictor, shifted)
  assert [r["scored"] for r in rows] == ["face", "face", "resaved", "face"]
  for row, own in zip(rows, expected):
    for key in ("p_fake", "prediction", "scored", "warnings", "jpeg_quality"):
      assert row[key] == own[key], key
  assert rows[0]["jpeg_quality"] == 90
  assert rows[2]["p_fake"] != scoring.predict_faces(predictor, paths)[2]["p_fake"]


def test_cross_dataset_scores_each_photo_by_its_faces_and_counts_faceless_ones_apart(
    stub_detector, predictor, monkeypatch, tmp_path):
  _photos(tmp_path / "set" / "real", widths=(300, 310, 320, 330), quality=92)
  fake = _photos(tmp_path / "set" / "fake", widths=(310, 320, 330), quality=80)
  open(tmp_path / "set" / "fake" / "broken.jpg", "wb").write(open(fake[0], "rb").read()[:300])
  folder = cross_dataset.parse_folder(str(tmp_path / "set"))
  by_file = scoring.rows_by_file(scoring.predict_faces(predictor, folder.paths))
  # The photos with a face: each one's fakest face and verdict; a threshold between
  # their scores, so that both verdicts occur.
  scored = [(p, label) for p, label in zip(folder.paths, folder.labels)
            if by_file[p][0]["p_fake"] is not None]
  fakest = np.array([max(r["p_fake"] for r in by_file[p]) for p, _ in scored])
  monkeypatch.setattr(predictor, "threshold", float(np.median(fakest)))
  [row] = cross_dataset.report(predictor, [folder])
  called_fake = fakest >= predictor.threshold
  labels = np.array([label for _, label in scored])
  is_fake = labels == classes.FAKE
  assert 0 < called_fake.sum() < len(called_fake)
  assert (row["images"], row["real"], row["fake"], row["no_face"], row["unreadable"]) == (
      6, 3, 3, 1, 1)
  assert row["accuracy"] == pytest.approx(np.mean(called_fake == is_fake))
  pairs = [(f > r) + 0.5 * (f == r) for f in fakest[is_fake] for r in fakest[~is_fake]]
  assert row["roc_auc"] == pytest.approx(np.mean(pairs))
  # Whole files: the faceless photo is scored too, and the figures are the files'.
  [whole] = cross_dataset.report(predictor, [folder], faces=False)
  assert (whole["images"], whole["no_face"], whole["unreadable"]) == (7, 0, 1)
  # Each 300-330 px file is outside the 32 px training images; only the two photos with
  # a 27 px face are warned `size` by their faces, each once.
  assert "size:7" in whole["warnings"].split() and "size:2" in row["warnings"].split()


def test_a_photos_row_carries_its_fakest_face_and_every_faces_warnings_once():
  rows = [{"path": "a", "p_fake": 0.2, "warnings": "size;small_face", "image_prediction": "x"},
          {"path": "a", "p_fake": 0.7, "warnings": "", "image_prediction": "x"},
          {"path": "a", "p_fake": 0.4, "warnings": "small_face;features"},
          {"path": "b", "p_fake": None, "warnings": "no_face", "image_prediction": None},
          {"path": "c", "p_fake": None, "warnings": None, "error": "OSError: x"}]
  assert scoring.image_rows(rows) == [
      {"path": "a", "p_fake": 0.7, "warnings": "size;small_face;features",
       "image_prediction": "x"},
      {"path": "b", "p_fake": None, "warnings": "no_face", "image_prediction": None},
      {"path": "c", "p_fake": None, "warnings": "", "error": "OSError: x"}]


def _flags(workdir, output, faces_mode="on", annotate=None):
  return types.SimpleNamespace(workdir=workdir, output=output, checkpoint="best",
                               format="csv", batch_size=4, faces=faces_mode,
                               annotate=annotate)


def test_the_command_counts_files_by_verdict_and_annotates_each_readable_photo(
    stub_detector, predictor, learned_run, monkeypatch, capsys, tmp_path):
  paths = _photos(tmp_path / "in")
  (tmp_path / "in" / "zz_bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
  output, drawn = str(tmp_path / "out.csv"), str(tmp_path / "drawn")
  monkeypatch.setattr(predict, "FLAGS", _flags(learned_run[0], output, annotate=drawn))
  assert predict.main(["fakeface-predict", str(tmp_path / "in")]) == predict.SOME_FILES_FAILED
  with open(output, newline="") as f:
    read = list(csv.DictReader(f))
  assert tuple(read[0]) == scoring.COLUMNS
  assert [r["face"] for r in read] == ["", "0", "0", "1", "0", "1", "2", ""]
  verdicts = {r["path"]: r["image_prediction"] for r in read if r["face"]}
  fake = list(verdicts.values()).count("fake")
  assert (f"5 files (6 faces, 1 without a face): {fake} fake, {3 - fake} real, "
          "1 unreadable") in capsys.readouterr().err
  # One PNG per readable input, the photo's own size, each face's box drawn in the
  # colour of its verdict.
  assert sorted(os.listdir(drawn)) == [f"{i:04d}_{os.path.basename(p)[:-4]}.png"
                                       for i, p in enumerate(paths)]
  for i, path in enumerate(paths):
    with Image.open(os.path.join(drawn, f"{i:04d}_{os.path.basename(path)[:-4]}.png")) as im:
      annotated = np.asarray(im.convert("RGB")).astype(int)
    assert annotated.shape[:2] == (260, int(path[-7:-4]))
    for row in (r for r in read if r["path"] == path and r["face"]):
      x, y = round(float(row["x0"])), round((float(row["y0"]) + float(row["y1"])) / 2)
      red = annotated[y, x, 0] > 200 and annotated[y, x, 1] < 80
      green = annotated[y, x, 1] > 180 and annotated[y, x, 0] < 80
      assert (red, green) == ((True, False) if row["prediction"] == "fake" else (False, True))


def test_faces_off_scores_each_whole_file_with_the_face_columns_empty(
    stub_detector, predictor, learned_run, monkeypatch, tmp_path):
  paths = _photos(tmp_path / "in")
  output = str(tmp_path / "out.csv")
  monkeypatch.setattr(predict, "FLAGS", _flags(learned_run[0], output, faces_mode="off"))
  assert predict.main(["fakeface-predict", *paths]) == 0
  with open(output, newline="") as f:
    read = list(csv.DictReader(f))
  whole = scoring.predict_files(predictor, paths)
  assert [r["path"] for r in read] == paths
  assert all(r[k] == "" for r in read for k in scoring.FACE_COLUMNS)
  assert [float(r["p_fake"]) for r in read] == pytest.approx([r["p_fake"] for r in whole],
                                                             abs=1e-6)
  assert [r["image_prediction"] for r in read] == [r["prediction"] for r in read]


def test_bad_and_odd_photos_give_rows_never_a_traceback(predictor, tmp_path):
  """With the real detector: what cannot be read is an error row, what can is scored or
  said to have no face."""
  good = _photos(tmp_path / "in", widths=(300,))[0]
  with open(good, "rb") as f:
    data = f.read()
  cases = {"truncated.jpg": data[:len(data) // 2],
           "huge.png": image_decoding_test.png_header_claiming(20000, 20000)}
  for name, payload in cases.items():
    (tmp_path / "in" / name).write_bytes(payload)
  Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "in" / "one_pixel.png")
  gray = Image.open(good).convert("L")
  gray.save(tmp_path / "in" / "gray.jpg")
  gray.convert("CMYK").save(tmp_path / "in" / "cmyk.jpg")
  paths = [str(tmp_path / "in" / n) for n in
           ("truncated.jpg", "huge.png", "one_pixel.png", "gray.jpg", "cmyk.jpg")]
  rows = {r["path"]: r for r in scoring.predict_faces(predictor, paths)}
  assert "truncated" in rows[paths[0]]["error"] or "cannot decode" in rows[paths[0]]["error"]
  assert "Bomb" in rows[paths[1]]["error"]  # Refused from its header, nothing decoded.
  for path in paths[2:]:
    assert rows[path]["error"] is None and rows[path]["warnings"] == "no_face", path
  assert rows[paths[4]]["format"] == "JPEG"
