"""Random draws of degradations, augmentations and self-blends over their whole ranges.

What each draw promises, checked from what it produces: each named degradation at its
own setting and with the JPEG tables it leaves; a file's re-saved copy at the scale
and quality drawn for its path (both ends, single-value ranges, the config's fields in
their places); device augmentations whose boxes, angles, sigmas and factors stay in
their documented ranges and spread over both ends, on non-square images (height !=
width) so that one axis used for the other shows; self-blend masks, JPEG qualities,
blend ratios and warps drawn as documented, against references written out here.
"""

import io

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

from fakeface_jax.data import preprocessing
from fakeface_jax.data import self_blend
from tests.conftest import centre_of_mass
from fakeface_jax.data import degradations
from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables


def _batch(height=12, width=20, channels=3, n=2, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, height, width, channels), np.uint8)


def _png(width, height, seed=0) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(_batch(height, width, n=1, seed=seed)[0]).save(buffer, format="PNG")
  return buffer.getvalue()


# ----------------------------------------------------------------------------------------
# Named degradations and FileResave.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, reference", [
    ("jpeg90", lambda x, seed: degradations.jpeg(x, 90)),
    ("jpeg75", lambda x, seed: degradations.jpeg(x, 75)),
    ("jpeg50", lambda x, seed: degradations.jpeg(x, 50)),
    ("downscale0.5", lambda x, seed: degradations.downscale(x, 0.5)),
    ("blur1", lambda x, seed: degradations.gaussian_blur(x, 1.0)),
    ("blur2", lambda x, seed: degradations.gaussian_blur(x, 2.0)),
    ("noise5", lambda x, seed: degradations.gaussian_noise(x, 5.0, seed)),
    ("clean", lambda x, seed: x),
])
def test_each_named_degradation_is_the_setting_its_name_states(name, reference):
  images = _batch(11, 18)
  for seed in (0, 9):
    np.testing.assert_array_equal(degradations.DEGRADATIONS[name](images, seed),
                                  reference(images, seed))
  # The settings of one name are not another's (jpeg75 is not jpeg90, blur1 not blur2).
  for other, fn in degradations.DEGRADATIONS.items():
    if other != name:
      assert not np.array_equal(fn(images, 9), reference(images, 9)), other


@pytest.mark.parametrize("quality", [50, 75, 90])
def test_the_tables_a_jpeg_degradation_leaves_are_those_of_a_file_saved_at_its_quality(
    quality):
  buffer = io.BytesIO()
  Image.fromarray(_batch(16, 24, n=1)[0]).save(buffer, format="JPEG", quality=quality)
  read = image_decoding.read_header(buffer.getvalue())
  np.testing.assert_array_equal(degradations.TABLES_AFTER[f"jpeg{quality}"], read.tables)
  np.testing.assert_array_equal(degradations.TABLES_AFTER[f"jpeg{quality}"],
                                jpeg_tables.standard_tables(quality))
  # Resampling leaves no grid; value changes leave each image its own.
  np.testing.assert_array_equal(degradations.TABLES_AFTER["downscale0.5"],
                                jpeg_tables.NO_TABLES)
  assert not {"clean", "blur1", "blur2", "noise5"} & set(degradations.TABLES_AFTER)


@settings(max_examples=40)
@given(scale_low=st.floats(0.05, 1.0), scale_span=st.sampled_from([0.0, 0.3, 1.0]),
       quality_low=st.integers(1, 95), quality_span=st.sampled_from([0, 1, 10, 94]),
       seed=st.integers(0, 2**31 - 1))
def test_every_path_gets_its_own_fixed_draw_within_the_ranges_ends_included(
    scale_low, scale_span, quality_low, quality_span, seed):
  scale_high = min(1.0, scale_low + scale_span)
  quality_high = min(95, quality_low + quality_span)
  resave = degradations.FileResave(scale_low, scale_high, quality_low, quality_high, seed)
  paths = [f"dir/{i}.png" for i in range(60)]
  drawn = [resave.settings(p) for p in paths]
  # A fresh object of the same settings, in any order of paths: the same draws.
  again = degradations.FileResave(scale_low, scale_high, quality_low, quality_high, seed)
  assert [again.settings(p) for p in reversed(paths)] == drawn[::-1]
  scales = np.array([s for s, _ in drawn])
  qualities = np.array([q for _, q in drawn])
  assert np.all((scale_low <= scales) & (scales <= scale_high))
  assert np.all((quality_low <= qualities) & (qualities <= quality_high))
  assert all(isinstance(q, int) for q in qualities.tolist())
  if scale_high == scale_low:
    assert set(scales.tolist()) == {scale_low}
  elif scale_high - scale_low > 1e-3:  # Paths differ in their draws.
    assert len(set(scales.tolist())) == len(paths)
  if quality_high - quality_low <= 1:  # Both ends of a narrow range are reached.
    assert set(qualities.tolist()) == set(range(quality_low, quality_high + 1))
  else:
    assert len(set(qualities.tolist())) > 1


@pytest.mark.parametrize("width, height", [(41, 23), (23, 41)])
def test_a_files_copy_is_its_paths_draw_on_both_axes(width, height):
  data = _png(width, height)
  resave = degradations.FileResave(0.3, 0.9, 20, 90, seed=5)
  sizes = set()
  for path in ("a.png", "b/c.png", "d.jpg", "e/f/g.png"):
    scale, quality = resave.settings(path)
    copy = resave(data, path)
    assert copy == degradations.resave(data, quality, scale)
    read = image_decoding.read_header(copy)
    assert (read.width, read.height) == (max(1, round(width * scale)),
                                         max(1, round(height * scale)))
    assert read.jpeg_quality == quality
    np.testing.assert_array_equal(read.tables, jpeg_tables.standard_tables(quality))
    assert resave.copy_format(data, path) == read
    sizes.add((read.width, read.height))
  assert len(sizes) > 1


def _resave_config(quality, scale, seed):
  config = ml_collections.ConfigDict()
  config.quality, config.scale, config.seed = quality, scale, seed
  return config


@pytest.mark.parametrize("quality, scale, seed", [
    ((60, 80), (0.5, 0.9), 7), ((1, 1), (1.0, 1.0), 0), ((95, 95), (0.25, 0.25), 3),
    ((2, 95), (0.01, 1.0), 11)])
def test_the_config_gives_each_range_its_place(quality, scale, seed):
  resave = degradations.FileResave.from_config(_resave_config(quality, scale, seed))
  assert resave == degradations.FileResave(float(scale[0]), float(scale[1]), quality[0],
                                           quality[1], seed)


def test_only_a_quality_of_zero_zero_leaves_the_files_as_they_are():
  assert degradations.FileResave.from_config(_resave_config((0, 0), (1.0, 1.0), 0)) is None
  assert degradations.FileResave.from_config(_resave_config((0, 0), (0.5, 0.7), 4)) is None


# ----------------------------------------------------------------------------------------
# Device augmentations (preprocessing).
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(5, 8)])
def test_a_half_turn_reverses_both_axes_of_a_non_square_image(height, width):
  image = jax.random.uniform(jax.random.key(0), (height, width, 2))
  rotate = jax.jit(preprocessing.rotate)
  np.testing.assert_allclose(rotate(image, jnp.pi), image[::-1, ::-1], atol=1e-4)
  np.testing.assert_allclose(rotate(image, 0.0), image, atol=1e-6)


def _orientation(images):
  """Angle (radians) of each image's intensity axis, from its second moments."""
  images = np.asarray(images)[..., 0]
  _, height, width = images.shape
  rows, cols = np.meshgrid(np.arange(height) - (height - 1) / 2,
                           np.arange(width) - (width - 1) / 2, indexing="ij")
  mass = images.sum((1, 2))
  m_rr = (images * rows ** 2).sum((1, 2)) / mass
  m_cc = (images * cols ** 2).sum((1, 2)) / mass
  m_rc = (images * rows * cols).sum((1, 2)) / mass
  return 0.5 * np.arctan2(2 * m_rc, m_cc - m_rr)


def test_rotation_angles_spread_over_both_signs_within_the_limit():
  bar = np.zeros((1, 31, 41, 1), np.float32)
  bar[0, 14:17, 8:33] = 1.0  # A horizontal bar in the middle of a wide image.
  images = jnp.asarray(np.repeat(bar, 256, axis=0))
  limit = 30.0
  rotated = jax.jit(preprocessing.random_rotation, static_argnums=2)(
      jax.random.key(0), images, limit)
  angles = np.abs(_orientation(rotated))
  # The sign: rotate's own convention, read off one known angle.
  sign = np.sign(_orientation(preprocessing.rotate(images[0], jnp.deg2rad(20.0))[None]))[0]
  signed = np.rad2deg(sign * _orientation(rotated))
  assert np.abs(signed).max() < limit + 1.5
  assert signed.min() < -0.8 * limit and signed.max() > 0.8 * limit
  assert 0.35 < np.mean(signed > 0) < 0.65
  assert angles.min() < np.deg2rad(3)


def _crop_boxes(height, width, min_scale, n=256, seed=0):
  """(top, left, crop height, crop width) of each random resized crop, read back from
  ramps of the row and column index (bilinear sampling keeps them linear)."""
  rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                           np.arange(width, dtype=np.float32), indexing="ij")
  ramps = jnp.asarray(np.broadcast_to(np.stack([rows, cols], -1), (n, height, width, 2)))
  out = np.asarray(preprocessing.random_resized_crop(jax.random.key(seed), ramps,
                                                     min_scale))
  boxes = []
  for image in out:
    box = []
    for axis, size in ((0, height), (1, width)):
      line = image[:, width // 2, 0] if axis == 0 else image[height // 2, :, 1]
      # Samples beyond the image repeat its edge: fit only those strictly inside.
      inside = np.flatnonzero((line > 1e-3) & (line < size - 1 - 1e-3))
      assert len(inside) >= 2, line
      slope, intercept = np.polyfit(inside, line[inside], 1)
      extent = slope * size
      start = intercept + 0.5 - 0.5 * slope  # line[i] = start + (i + 0.5) * slope - 0.5
      box += [start, extent]
    boxes.append([box[0], box[2], box[1], box[3]])
  return np.array(boxes)


@pytest.mark.parametrize("height, width", [(16, 40), (40, 16)])
def test_resized_crops_stay_inside_non_square_images_and_spread_over_their_ranges(
    height, width):
  min_scale = 0.3
  top, left, crop_h, crop_w = _crop_boxes(height, width, min_scale).T
  tol = 1e-2
  assert np.all(top >= -tol) and np.all(left >= -tol)
  assert np.all(top + crop_h <= height + tol) and np.all(left + crop_w <= width + tol)
  assert np.all(crop_h <= height + tol) and np.all(crop_w <= width + tol)
  area = crop_h * crop_w / (height * width)
  assert np.all(area >= min_scale - tol) and np.all(area <= 1 + tol)
  assert area.min() < min_scale + 0.05 and area.max() > 0.9
  aspect = (crop_w / width) / (crop_h / height)
  assert aspect.min() < 0.85 and aspect.max() > 1.15
  # Each offset from one end of its free range to the other.
  for start, free in ((top, height - crop_h), (left, width - crop_w)):
    movable = free > 2
    share = start[movable] / free[movable]
    assert share.min() < 0.1 and share.max() > 0.9


blur_some = jax.jit(preprocessing.random_gaussian_blur, static_argnums=3)


def test_blur_sigmas_are_drawn_in_their_range_on_both_axes():
  n, max_sigma = 200, 1.8
  impulse = np.zeros((n, 17, 23, 1), np.float32)
  impulse[:, 8, 11] = 1.0
  blurred = np.asarray(blur_some(jax.random.key(4), jnp.asarray(impulse), 1.0,
                                 max_sigma))[..., 0]
  offsets_r = np.arange(17) - 8.0
  offsets_c = np.arange(23) - 11.0
  var_r = (blurred.sum(2) * offsets_r ** 2).sum(1) / blurred.sum((1, 2))
  var_c = (blurred.sum(1) * offsets_c ** 2).sum(1) / blurred.sum((1, 2))
  np.testing.assert_allclose(var_r, var_c, atol=1e-3)  # The same sigma along both axes.
  # The variance of a sampled Gaussian is sigma^2 from about 0.5 up (far less below).
  sigma = np.sqrt(var_c)
  assert np.all(sigma < max_sigma + 0.02)
  assert sigma.min() < 0.3 and sigma.max() > max_sigma - 0.1


def test_blur_probability_is_the_share_of_blurred_images():
  impulse = np.zeros((400, 7, 9, 1), np.float32)
  impulse[:, 3, 4] = 1.0
  images = jnp.asarray(impulse)
  key = jax.random.key(5)

  def changed(prob):
    out = blur_some(key, images, prob, 1.5)
    return np.asarray(jnp.any(out != images, axis=(1, 2, 3)))

  never, always, some = changed(0.0), changed(1.0), changed(0.3)
  assert not never.any()
  # Sigmas near 0.1 change nothing a float32 shows; all the others show.
  assert always.mean() > 0.93
  assert not (some & ~always).any()  # The same key draws the same sigmas.
  assert abs(some.sum() / always.sum() - 0.3) < 0.08  # Over 3 standard deviations.


def test_color_jitter_factors_reach_both_sides_of_one():
  strength = 0.5
  images = jnp.full((400, 3, 5, 1), 0.4)
  factors = np.asarray(preprocessing.random_color_jitter(
      jax.random.key(6), images, strength))[:, 0, 0, 0] / 0.4
  assert np.all(factors >= 1 - strength - 1e-5) and np.all(factors <= 1 + strength + 1e-5)
  assert factors.min() < 1 - 0.9 * strength and factors.max() > 1 + 0.9 * strength


# ----------------------------------------------------------------------------------------
# Self-blending draws.
# ----------------------------------------------------------------------------------------


def _dct64():
  k, n = np.arange(8)[:, None], np.arange(8)[None, :]
  d = np.cos(np.pi * (2 * n + 1) * k / 16) * np.sqrt(2 / 8)
  d[0] /= np.sqrt(2)
  return d


def _requantize_by_hand(image, quality):
  """Each channel, edge-padded to whole blocks, through each 8x8 block's DCT rounded
  to multiples of the luminance table of `quality`, in float64; and whether each
  output value is safe to compare (no quotient of its block within 1e-3 of a rounding
  boundary, where float32 may round the other way)."""
  height, width, channels = image.shape
  padded = np.pad(image.astype(np.float64), ((0, -height % 8), (0, -width % 8), (0, 0)),
                  mode="edge") * 255 - 128
  table = np.asarray(jpeg_tables.STANDARD_LUMINANCE, np.float64)[quality - 1]
  d = _dct64()
  out = np.empty_like(padded)
  safe = np.empty(padded.shape, bool)
  for c in range(channels):
    for top in range(0, padded.shape[0], 8):
      for left in range(0, padded.shape[1], 8):
        quotient = d @ padded[top:top + 8, left:left + 8, c] @ d.T / table
        margin = np.abs(np.abs(quotient - np.floor(quotient)) - 0.5).min()
        safe[top:top + 8, left:left + 8, c] = margin > 1e-3
        out[top:top + 8, left:left + 8, c] = d.T @ (np.round(quotient) * table) @ d
  return ((out + 128) / 255)[:height, :width], safe[:height, :width]


QUALITIES = (1, 30, 57, 94, 95, 100)
requantize_each = jax.jit(jax.vmap(self_blend.jpeg_requantize, in_axes=(None, 0)))


@pytest.mark.parametrize("height, width", [(13, 20)])
def test_jpeg_requantize_equals_blockwise_quantisation_by_hand(height, width):
  image = np.asarray(jax.random.uniform(jax.random.key(height), (height, width, 3)))
  outs = np.asarray(requantize_each(jnp.asarray(image), jnp.array(QUALITIES)))
  for quality, out in zip(QUALITIES, outs):
    expected, safe = _requantize_by_hand(image, quality)
    assert out.shape == image.shape and safe.mean() > 0.5
    np.testing.assert_allclose(out[safe], expected[safe], atol=2e-4, err_msg=str(quality))


def test_jpeg_qualities_of_the_copy_span_their_range_half_the_time():
  image = jax.random.uniform(jax.random.key(1), (8, 8, 1))
  keys = jax.random.split(jax.random.key(2), 1500)
  outs = np.asarray(jax.jit(jax.vmap(self_blend._random_jpeg, in_axes=(0, None)))(  # pylint: disable=protected-access
      keys, image))
  every = np.asarray(jax.jit(jax.vmap(self_blend.jpeg_requantize, in_axes=(None, 0)))(
      image, jnp.arange(1, 101)))
  every = np.clip(every, 0, 1)
  applied = ~np.all(np.abs(outs - np.asarray(image)) < 1e-6, axis=(1, 2, 3))
  assert 0.44 < applied.mean() < 0.56  # 1,500 draws at probability 1/2: 4 sd.
  matches = [set(np.flatnonzero(np.all(np.abs(every - out) < 1e-5, axis=(1, 2, 3))) + 1)
             for out in outs[applied]]
  low, high = self_blend.JPEG_QUALITY_RANGE
  assert all(m and min(m) <= high and max(m) >= low for m in matches)
  only = set().union(*[m for m in matches if len(m) == 1])
  # Both ends drawn, and nothing beyond them.
  assert {low, high} <= only and only <= set(range(low, high + 1))


masks_of = jax.jit(self_blend.random_masks, static_argnums=(1, 2, 3, 4))


@pytest.mark.parametrize("height, width", [(64, 16)])
def test_mouth_masks_sit_where_the_mouth_is_and_feather_by_the_shorter_side(height, width):
  masks = np.asarray(masks_of(jax.random.key(3), 24, height, width, ("mouth",)))[..., 0]
  rows, cols = centre_of_mass(masks[..., None]).T
  assert np.all((rows > 0.65) & (rows < 0.8)), rows
  assert np.all(np.abs(cols - 0.5) < 0.05), cols
  # The hard ellipse spans rows >= 0.61 and columns 0.28-0.72 (fractions, tilt
  # included); the feather adds at most 0.08 of the shorter side (1.5 px at least).
  reach = max(self_blend.FEATHER_RANGE[1] * min(height, width), 1.5)
  first_row = int(np.floor(0.61 * height - 0.5 - reach))
  first_col = int(np.floor(0.28 * width - 0.5 - reach))
  assert not masks[:, :first_row].any()
  assert not masks[:, :, :first_col].any() and not masks[:, :, width - first_col:].any()
  assert masks.max() <= 1.0


@pytest.fixture(scope="module")
def mixed_masks():
  """600 masks of three kinds; the eyes sit above the middle, the mouth well below."""
  kinds = ("eyes", "nose", "mouth")
  masks = np.asarray(masks_of(jax.random.key(8), 600, 32, 32, kinds))[..., 0]
  rows = centre_of_mass(masks[..., None])[:, 0]
  return masks, rows


def test_blend_ratios_are_one_for_two_fifths_of_the_masks_else_at_least_a_quarter(
    mixed_masks):
  peaks = mixed_masks[0].max((1, 2))
  full = peaks == 1.0
  assert 0.33 < full.mean() < 0.47  # P = 0.5 / 1.25; 600 draws: over 3 sd.
  assert peaks.min() >= 0.25 - 1e-6
  partial = peaks[~full]
  assert partial.min() < 0.3 and partial.max() > 0.95


def test_one_eye_or_both_with_a_quarter_half_and_quarter(mixed_masks):
  masks, rows = mixed_masks
  eyes = masks[rows < 0.5]
  left = eyes[:, :, :13].max((1, 2)) > 0  # Left eye: columns 0.32-0.38 at its centre.
  right = eyes[:, :, 19:].max((1, 2)) > 0
  assert len(eyes) > 150 and np.all(left | right)
  assert 0.4 < (left & right).mean() < 0.6
  assert 0.13 < (left & ~right).mean() < 0.37 and 0.13 < (right & ~left).mean() < 0.37


def test_every_kind_is_picked_the_last_of_the_list_too(mixed_masks):
  _, rows = mixed_masks
  eyes, mouth = rows < 0.5, rows > 0.66
  assert 0.25 < eyes.mean() < 0.42 and 0.25 < mouth.mean() < 0.42


@pytest.mark.parametrize("height, width", [(40, 10)])
def test_the_warp_scales_and_shifts_each_axis_by_its_own_size(height, width):
  rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                           np.arange(width, dtype=np.float32), indexing="ij")
  ramps = jnp.asarray(np.stack([rows, cols], -1))
  keys = jax.random.split(jax.random.key(11), 64)
  warped = np.asarray(jax.jit(jax.vmap(self_blend._scale_shift, in_axes=(0, None)))(  # pylint: disable=protected-access
      keys, ramps))
  shifts = {0: [], 1: []}
  for out in warped:
    scales = []
    for axis, size in ((0, height), (1, width)):
      line = out[:, width // 2, 0] if axis == 0 else out[height // 2, :, 1]
      inner = np.arange(3, size - 3)  # Away from the edge, where samples clamp.
      slope, intercept = np.polyfit(inner, line[inner], 1)
      scale = 1 / slope
      centre = (size - 1) / 2
      # line[i] = (i - centre - shift) / scale + centre
      shifts[axis].append((centre * (1 - slope) - intercept) * scale / size)
      scales.append(scale)
    assert scales[0] == pytest.approx(scales[1], abs=1e-3)
    assert 0.95 - 1e-3 <= scales[0] <= 1.05 + 1e-3
  for axis in (0, 1):
    shift = np.array(shifts[axis])  # As a fraction of that axis's size.
    assert np.all(np.abs(shift) <= 0.03 + 2e-3), (axis, shift)
    assert shift.min() < -0.02 and shift.max() > 0.02
