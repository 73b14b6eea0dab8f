"""Properties of the training-domain warnings: any image size and format, any domain.

The expected warnings are worked out here from the training images' formats themselves
(not from the `TrainingDomain` fields under test), so a domain that `describe` got
wrong, or a check in `image_warnings` that reads the wrong side, bound or threshold,
fails. Sizes and qualities are drawn around the domain's edges (the edge itself, one
beyond it) and distances at the cut-off exactly, where `<` and `<=` part ways.
"""

import io

import numpy as np
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables
from fakeface_jax.serving import domain

IMAGE_SIZES = (8, 16, 32)
FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
MODES = ("RGB", "L", "RGBA", "P", "CMYK")
# The order in which `image_warnings` names its warnings: WARNINGS' order.
ORDER = tuple(domain.WARNINGS)


def image_format(fmt, width, height, mode="RGB", quality=None):
  """An ImageFormat as a file of that kind gives it (a JPEG's standard tables)."""
  tables = jpeg_tables.NO_TABLES if quality is None else jpeg_tables.standard_tables(quality)
  return image_decoding.ImageFormat(fmt, width, height, mode, quality, tables)


@st.composite
def formats(draw, sides=st.integers(1, 96), image_size=None, crop=False):
  """Any ImageFormat; with `image_size`, a JPEG whose own grid decoding keeps."""
  if image_size is not None:
    side = st.integers(image_size, image_size + 40) if crop else st.just(image_size)
    return image_format("JPEG", draw(side), draw(side), draw(st.sampled_from(MODES[:2])),
                        draw(st.integers(1, 100)))
  fmt = draw(st.sampled_from(FORMATS))
  quality = draw(st.integers(1, 100)) if fmt == "JPEG" else None
  return image_format(fmt, draw(sides), draw(sides), draw(st.sampled_from(MODES)), quality)


def aligned(f, image_size, crop):
  """Whether decoding keeps this file's own JPEG grid, from the documented rule."""
  if f.jpeg_quality is None:
    return False
  if crop:
    return f.width >= image_size and f.height >= image_size
  return f.width == image_size and f.height == image_size


def expected_warnings(training, image, distance, cutoff, image_size, crop, reads_tables):
  """The warnings one image should get, from the training images' own formats."""
  sides = [f.width for f in training] + [f.height for f in training]
  qualities = [f.jpeg_quality for f in training if f.jpeg_quality is not None]
  warned = set()
  if image.width < image_size or image.height < image_size:
    warned.add("upscaled")
  if not (min(sides) <= image.width <= max(sides) and min(sides) <= image.height <= max(sides)):
    warned.add("size")
  if image.format not in {f.format for f in training}:
    warned.add("format")
  if image.mode not in {f.mode for f in training}:
    warned.add("mode")
  if (image.jpeg_quality is not None and qualities
      and not min(qualities) <= image.jpeg_quality <= max(qualities)):
    warned.add("jpeg_quality")
  if (reads_tables and all(aligned(f, image_size, crop) for f in training)
      and not aligned(image, image_size, crop)):
    warned.add("jpeg_grid")
  if distance is not None and distance > cutoff:
    warned.add("features")
  return [name for name in ORDER if name in warned]


def embeddings(seed, count, dims):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(count, dims)) * rng.uniform(0.1, 3, dims)
          + rng.normal(size=dims)).astype(np.float32)


@st.composite
def described(draw):
  """(training formats, image_size, crop, TrainingDomain from `describe`)."""
  image_size = draw(st.sampled_from(IMAGE_SIZES))
  crop = draw(st.booleans())
  native = formats(image_size=image_size, crop=crop)
  if draw(st.booleans()):  # Every training image on its own grid: jpeg_grid can fire.
    training = draw(st.lists(native, min_size=1, max_size=6))
  else:
    training = draw(st.lists(st.one_of(formats(), native), min_size=1, max_size=6))
  seed = draw(st.integers(0, 2**16))
  # Few shapes: `describe` computes distances with JAX, which compiles once per shape.
  dims = draw(st.sampled_from([2, 5]))
  known = domain.describe(training, image_size, crop, embeddings(seed, 12, dims),
                          embeddings(seed + 1, draw(st.sampled_from([3, 30])), dims))
  return training, image_size, crop, known


def near(values):
  """Values at and one beyond each of `values`, as positive ints."""
  return sorted({max(v + d, 1) for v in values for d in (-1, 0, 1)})


@settings(max_examples=200)
@given(st.data())
def test_warnings_are_exactly_those_the_training_formats_imply(data):
  training, image_size, crop, known = data.draw(described())
  sides = [s for f in training for s in (f.width, f.height)]
  edges = near([min(sides), max(sides), image_size])
  side = st.one_of(st.sampled_from(edges), st.integers(1, 140))
  qualities = [f.jpeg_quality for f in training if f.jpeg_quality is not None]
  quality = st.one_of(st.sampled_from([q for q in near(qualities or [50]) if q <= 100]),
                      st.integers(1, 100))
  fmt = data.draw(st.sampled_from(FORMATS))
  image = image_format(fmt, data.draw(side), data.draw(side), data.draw(st.sampled_from(MODES)),
                       data.draw(quality) if fmt == "JPEG" else None)
  cutoff = known.distance_cutoff
  distance = data.draw(st.sampled_from([
      None, 0.0, cutoff, np.nextafter(cutoff, np.inf), np.nextafter(cutoff, -np.inf),
      2 * cutoff + 1]))
  reads_tables = data.draw(st.booleans())
  assert domain.image_warnings(known, image, distance, image_size, reads_tables, crop) == (
      expected_warnings(training, image, distance, cutoff, image_size, crop, reads_tables))
  # A run trained before domains were recorded: only the image's own size is checked.
  assert domain.image_warnings(None, image, distance, image_size, reads_tables, crop) == (
      ["upscaled"] if min(image.width, image.height) < image_size else [])


@settings(max_examples=150)
@given(described(), st.data())
def test_one_side_alone_beyond_the_domain_is_warned_about(case, data):
  training, image_size, crop, known = case
  sides = [s for f in training for s in (f.width, f.height)]
  lo, hi = min(sides), max(sides)
  inside = data.draw(st.integers(lo, hi))
  outside = data.draw(st.sampled_from([hi + 1] + ([lo - 1] if lo > 1 else [])))
  for width, height in ((inside, outside), (outside, inside), (inside, inside),
                        (lo, hi), (hi, lo)):
    image = image_format(training[0].format, width, height, training[0].mode,
                         training[0].jpeg_quality)
    warned = domain.image_warnings(known, image, None, image_size, False, crop)
    assert ("size" in warned) == (outside in (width, height)), (width, height, lo, hi)
    assert ("upscaled" in warned) == (min(width, height) < image_size)


@pytest.mark.parametrize("width, height, expected", [
    (32, 32, []), (31, 32, ["upscaled"]), (32, 31, ["upscaled"]),
    (48, 32, []), (32, 48, []), (49, 32, ["size"]), (32, 49, ["size"]),
    (20, 48, ["upscaled"]), (48, 20, ["upscaled"]), (19, 48, ["upscaled", "size"]),
    (48, 19, ["upscaled", "size"])])
def test_size_warnings_at_the_domains_edges(width, height, expected):
  # Training images from 20 to 48 px on each side, the model's input 32 px; the widest
  # and the tallest are different images, so each bound comes from one side only.
  training = [image_format("JPEG", 48, 20, quality=80),
              image_format("JPEG", 32, 32, quality=80)]
  known = domain.describe(training, 32, False, embeddings(0, 4, 2), embeddings(1, 4, 2))
  assert (known.min_side, known.max_side) == (20, 48)
  image = image_format("JPEG", width, height, quality=80)
  assert domain.image_warnings(known, image, None, 32, False) == expected


@pytest.mark.parametrize("quality, warned", [
    (69, True), (70, False), (71, False), (94, False), (95, False), (96, True),
    (100, True), (1, True)])
def test_jpeg_quality_warning_at_the_ends_of_the_training_range(quality, warned):
  training = [image_format("JPEG", 32, 32, quality=q) for q in (80, 95, 70, 75)]
  known = domain.describe(training, 32, False, embeddings(0, 4, 2), embeddings(1, 4, 2))
  assert known.jpeg_qualities == [70, 95]
  image = image_format("JPEG", 32, 32, quality=quality)
  assert (domain.image_warnings(known, image, None, 32, False) == ["jpeg_quality"]) == warned


def test_top_quality_training_range_includes_100():
  training = [image_format("JPEG", 32, 32, quality=q) for q in (100, 90)]
  known = domain.describe(training, 32, False, embeddings(0, 4, 2), embeddings(1, 4, 2))
  assert known.jpeg_qualities == [90, 100]
  assert domain.image_warnings(known, image_format("JPEG", 32, 32, quality=100), None, 32,
                               False) == []


def test_features_warning_fires_strictly_beyond_the_cutoff():
  known = domain.describe([image_format("PNG", 32, 32)], 32, False, embeddings(0, 8, 3),
                          embeddings(1, 200, 3))
  cutoff = known.distance_cutoff
  png = image_format("PNG", 32, 32)
  assert domain.image_warnings(known, png, cutoff, 32, True) == []
  assert domain.image_warnings(known, png, np.nextafter(cutoff, np.inf), 32, True) == [
      "features"]
  assert domain.image_warnings(known, png, None, 32, True) == []


@pytest.mark.parametrize("crop, training_sides, grid_share", [
    (False, [(32, 32), (32, 32)], 1.0), (False, [(32, 32), (40, 40)], 0.5),
    (False, [(32, 32), (32, 40)], 0.5), (False, [(40, 32), (32, 32)], 0.5),
    (True, [(32, 32), (40, 33)], 1.0), (True, [(40, 33), (33, 31)], 0.5)])
def test_jpeg_grid_warning_needs_every_training_image_on_its_grid(crop, training_sides,
                                                                   grid_share):
  training = [image_format("JPEG", w, h, quality=80) for w, h in training_sides]
  known = domain.describe(training, 32, crop, embeddings(0, 4, 2), embeddings(1, 4, 2))
  assert known.grid_share == grid_share
  moved = image_format("JPEG", 33, 31, quality=80)  # Resized either way: its grid moved.
  png = image_format("PNG", 32, 32)
  on_grid = image_format("JPEG", 32, 32, quality=80)
  expected = ["jpeg_grid"] if grid_share == 1.0 else []
  for image in (moved, png):
    assert [w for w in domain.image_warnings(known, image, None, 32, True, crop)
            if w == "jpeg_grid"] == expected
    assert "jpeg_grid" not in domain.image_warnings(known, image, None, 32, False, crop)
  assert "jpeg_grid" not in domain.image_warnings(known, on_grid, None, 32, True, crop)
  # With crop, a JPEG at least the input's size on both sides keeps its grid too;
  # without, one side other than the input's is enough to move it.
  for width, height in ((64, 40), (32, 40), (40, 32)):
    larger = image_format("JPEG", width, height, quality=80)
    assert ("jpeg_grid" in domain.image_warnings(known, larger, None, 32, True, crop)) == (
        grid_share == 1.0 and not crop), (width, height)


@settings(max_examples=100)
@given(described())
def test_describe_records_the_training_formats_and_embeddings(case):
  training, image_size, crop, known = case
  sides = [f.width for f in training] + [f.height for f in training]
  qualities = [f.jpeg_quality for f in training if f.jpeg_quality is not None]
  assert known.formats == sorted({f.format for f in training})
  assert known.modes == sorted({f.mode for f in training})
  assert (known.min_side, known.max_side) == (min(sides), max(sides))
  assert known.jpeg_qualities == ([min(qualities), max(qualities)] if qualities else None)
  assert known.grid_share == pytest.approx(
      np.mean([aligned(f, image_size, crop) for f in training]))


@settings(max_examples=50)
@given(seed=st.integers(0, 2**16), count=st.integers(2, 9),
       validation=st.sampled_from([2, 7, 40]), dims=st.sampled_from([2, 5]))
def test_describe_calibrates_the_cutoff_on_validation_embeddings(seed, count, validation,
                                                                  dims):
  train, valid = embeddings(seed, count, dims), embeddings(seed + 7, validation, dims)
  known = domain.describe([image_format("PNG", 8, 8)], 8, False, train, valid)
  spread = train.astype(np.float64).std(axis=0)
  scale = spread + domain.SCALE_FLOOR * max(np.median(spread), 1e-6)
  np.testing.assert_allclose(known.embedding_mean, train.mean(axis=0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(known.embedding_scale, scale, rtol=1e-4)
  by_hand = np.array([np.mean(((v - train.mean(axis=0)) / scale) ** 2) for v in valid])
  assert known.distance_cutoff == pytest.approx(np.quantile(by_hand, 0.99), rel=1e-4)
  assert known.validation_distances["1.0"] == pytest.approx(by_hand.max(), rel=1e-4)
  assert known.validation_distances["0.5"] == pytest.approx(np.median(by_hand), rel=1e-4)
  # The distance of each validation image, as predict computes it, against the cut-off.
  computed = np.asarray(domain.distances(valid, known.embedding_mean, known.embedding_scale))
  np.testing.assert_allclose(computed, by_hand, rtol=1e-4)
  assert np.sum(computed > known.distance_cutoff) <= max(1, int(0.01 * validation) + 1)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**16), count=st.integers(1, 7), dims=st.integers(1, 7))
def test_distances_are_per_image_means_over_dimensions(seed, count, dims):
  rng = np.random.default_rng(seed)
  points = rng.normal(size=(count, dims)).astype(np.float32)
  mean = rng.normal(size=dims).astype(np.float32)
  scale = rng.uniform(0.5, 2, dims).astype(np.float32)
  expected = [sum(((p[d] - mean[d]) / scale[d]) ** 2 for d in range(dims)) / dims
              for p in points]
  np.testing.assert_allclose(np.asarray(domain.distances(points, mean, scale)), expected,
                             rtol=1e-5)


def encoded(width, height, fmt, mode, quality, subsampling, seed):
  rng = np.random.default_rng(seed)
  array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  kwargs = {"quality": quality, "subsampling": subsampling} if fmt == "JPEG" else {}
  buffer = io.BytesIO()
  Image.fromarray(array).convert(mode).save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


FILE_KINDS = st.one_of(
    st.tuples(st.just("JPEG"), st.sampled_from(["RGB", "L"])),
    st.tuples(st.just("PNG"), st.sampled_from(["RGB", "L", "RGBA", "P", "LA"])),
    st.tuples(st.just("WEBP"), st.just("RGB")),
    st.tuples(st.just("BMP"), st.sampled_from(["RGB", "L"])))


@settings(max_examples=60)
@given(width=st.integers(1, 72), height=st.integers(1, 72), kind=FILE_KINDS,
       quality=st.integers(1, 100), subsampling=st.sampled_from([0, 1, 2]),
       image_size=st.sampled_from(IMAGE_SIZES), crop=st.booleans(), grayscale=st.booleans(),
       seed=st.integers(0, 1000))
@example(width=40, height=24, kind=("JPEG", "RGB"), quality=100, subsampling=0,
         image_size=32, crop=True, grayscale=False, seed=0)
@example(width=24, height=40, kind=("JPEG", "L"), quality=100, subsampling=2,
         image_size=32, crop=True, grayscale=True, seed=0)
@example(width=32, height=40, kind=("JPEG", "RGB"), quality=75, subsampling=2,
         image_size=32, crop=False, grayscale=False, seed=0)
@example(width=40, height=32, kind=("JPEG", "RGB"), quality=1, subsampling=1,
         image_size=32, crop=True, grayscale=False, seed=0)
def test_files_of_any_size_and_format_are_described_and_warned_about_as_they_are(
    width, height, kind, quality, subsampling, image_size, crop, grayscale, seed):
  fmt, mode = kind
  data = encoded(width, height, fmt, mode, quality, subsampling, seed)
  pixels, found = image_decoding.decode_with_format(data, image_size, grayscale, crop)
  assert pixels.shape == (image_size, image_size, 1 if grayscale else 3)
  assert (found.format, found.width, found.height, found.mode) == (fmt, width, height, mode)
  assert found.jpeg_quality == (quality if fmt == "JPEG" else None)
  header = image_decoding.read_header(data)
  assert (header.format, header.width, header.height, header.jpeg_quality) == (
      fmt, width, height, found.jpeg_quality)
  keeps_grid = aligned(found, image_size, crop)
  assert found.native(image_size, crop) == (
      min(width, height) >= image_size if crop else width == height == image_size)
  np.testing.assert_array_equal(found.grid_tables(image_size, crop),
                                found.tables if keeps_grid else jpeg_tables.NO_TABLES)
  if fmt == "JPEG":
    np.testing.assert_array_equal(found.tables[0], jpeg_tables.quantization_table(quality))
    # A gray JPEG has one table, which stands for its chrominance too.
    np.testing.assert_array_equal(found.tables[1], jpeg_tables.quantization_table(
        quality, chroma=mode != "L"))
  # Against a domain of 32 px RGB JPEGs of qualities 70-95, all read on their own grid.
  training = [image_format("JPEG", image_size, image_size, "RGB", q) for q in (70, 95)]
  known = domain.describe(training, image_size, crop, embeddings(0, 4, 2),
                          embeddings(1, 4, 2))
  for reads_tables in (False, True):
    assert domain.image_warnings(known, found, 0.0, image_size, reads_tables, crop) == (
        expected_warnings(training, found, 0.0, known.distance_cutoff, image_size, crop,
                          reads_tables))
