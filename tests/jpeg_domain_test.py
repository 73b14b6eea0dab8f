"""Tests of the JPEG-domain features against PIL's encoder and hand-counted histograms."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from fakeface_jax.data import image_decoding
from fakeface_jax.data import jpeg_tables
from fakeface_jax.models import jpeg_domain
from fakeface_jax.models import texture


def _encode_decode(image: np.ndarray, quality: int) -> np.ndarray:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
  return np.asarray(Image.open(buffer))


def _on_grid(quality: int, num_images: int = 1):
  """Tables and has_grid of images all read on their grid at `quality`."""
  return jpeg_domain.image_tables(None, num_images, quality)


def _photo_like_image(seed: int, size: int = 64) -> np.ndarray:
  """Smooth shapes plus grain, so that most coefficients are far from zero."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
  smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
  return np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("quality", [50, 75, 95])
def test_quantization_tables_are_the_ones_pil_writes(quality):
  buffer = io.BytesIO()
  Image.fromarray(_photo_like_image(0)).save(buffer, format="JPEG", quality=quality)
  tables = Image.open(buffer).quantization
  np.testing.assert_array_equal(np.reshape(tables[0], (8, 8)),
                                jpeg_tables.quantization_table(quality))
  np.testing.assert_array_equal(np.reshape(tables[1], (8, 8)),
                                jpeg_tables.quantization_table(quality, chroma=True))
  with pytest.raises(ValueError, match=r"JPEG quality must be in \[1, 100\]"):
    jpeg_tables.quantization_table(0)


def test_block_dct_is_orthonormal_and_puts_a_flat_block_in_dc():
  d = jpeg_domain.dct_matrix()
  np.testing.assert_allclose(d @ d.T, np.eye(8), atol=1e-6)
  coefficients = jpeg_domain.block_dct(jnp.full((1, 16, 24), 3.0))
  assert coefficients.shape == (1, 2, 3, 8, 8)
  np.testing.assert_allclose(coefficients[..., 0, 0], 24.0, rtol=1e-6)
  np.testing.assert_allclose(coefficients.at[..., 0, 0].set(0.0), 0.0, atol=1e-5)


def _distance_to_integers(images: np.ndarray, quality: int) -> list[float]:
  y, cb, cr = texture.ycbcr(jnp.asarray(images, jnp.float32))
  luminance = jpeg_tables.quantization_table(quality)
  chrominance = jpeg_tables.quantization_table(quality, chroma=True)
  planes = [(y - 128.0, luminance), (jpeg_domain.subsample_2x2(cb), chrominance),
            (jpeg_domain.subsample_2x2(cr), chrominance)]
  distances = []
  for plane, table in planes:
    c = np.asarray(jpeg_domain.block_dct(plane)) / table
    distances.append(float(np.abs(c - np.round(c)).mean()))
  return distances


def test_decoded_jpeg_gives_back_near_integer_coefficients():
  # The grid, transform, table order and chroma subsampling all have to match PIL's
  # encoder for the stored integers to reappear; an image never encoded shows none.
  image = _photo_like_image(1, 128)
  decoded = _encode_decode(image, 75)[None]
  # Measured: 0.018 (Y), 0.046, 0.045 (Cb, Cr); uniform fractions would give 0.25, and
  # an image's many near-zero coefficients pull any plane's distance down.
  encoded = _distance_to_integers(decoded, 75)
  assert encoded[0] < 0.03 and max(encoded) < 0.06
  # Never encoded: 0.16 (Y); on a grid shifted by 4 pixels: 0.13 (Y).
  assert _distance_to_integers(image[None], 75)[0] > 0.1
  assert _distance_to_integers(decoded[:, 4:-12, 4:-12], 75)[0] > 0.1


def test_coefficient_histograms_by_hand():
  coefficients = jnp.zeros((1, 1, 2, 8, 8), jnp.int32).at[0, 0, 0, 0, 1].set(7)
  hist = np.asarray(jpeg_domain.coefficient_histograms(coefficients, truncation=1))
  assert hist.shape == (1, 64 * 3)
  per_frequency = hist.reshape(64, 3)
  np.testing.assert_allclose(per_frequency.sum(1), 1.0)
  # Frequency (0, 1): one block at 7 (counted at +T), the other at 0.
  np.testing.assert_allclose(per_frequency[1], [0.0, 0.5, 0.5])
  np.testing.assert_allclose(per_frequency[2], [0.0, 1.0, 0.0])


def test_coefficient_cooccurrences_by_hand():
  coefficients = jnp.zeros((1, 1, 2, 8, 8), jnp.int32).at[0, 0, 1, 0, 0].set(-1)
  pairs = np.asarray(jpeg_domain.coefficient_cooccurrences(coefficients, truncation=1))
  per_relation = pairs.reshape(len(jpeg_domain.NEIGHBOURS), 64, 3, 3)
  inter_right = per_relation[list(jpeg_domain.NEIGHBOURS).index("inter_right")]
  # One pair of horizontally neighbouring blocks: DC values (0, -1), everything else (0, 0).
  assert inter_right[0, 1, 0] == 1.0 and inter_right[0].sum() == 1.0
  assert inter_right[5, 1, 1] == 1.0
  intra_right = per_relation[list(jpeg_domain.NEIGHBOURS).index("intra_right")]
  # Frequencies of the last column have no right neighbour within the block.
  assert intra_right[7].sum() == 0.0 and intra_right[6].sum() == 1.0


def test_jpeg_features_shape_and_refusals():
  images = jnp.asarray(_encode_decode(_photo_like_image(2), 75)[None], jnp.float32)
  features = jpeg_domain.jpeg_features(images, _on_grid(75)[0])
  assert features.shape == (1, 3 * 64 * (9 + 6 * 25))
  assert bool(jnp.all(jnp.isfinite(features)))
  with pytest.raises(ValueError, match="RGB images of at least 16x16"):
    jpeg_domain.jpeg_features(jnp.zeros((1, 64, 64, 1)), _on_grid(75)[0])
  with pytest.raises(ValueError, match="RGB images of at least 16x16"):
    jpeg_domain.jpeg_features(jnp.zeros((1, 8, 64, 3)), _on_grid(75)[0])


def test_sliding_block_dct_on_the_grid_is_the_block_dct():
  plane = jnp.asarray(np.random.default_rng(3).normal(size=(2, 24, 32)), jnp.float32)
  sliding = jpeg_domain.sliding_block_dct(plane)
  assert sliding.shape == (2, 17, 25, 64)
  blocks = jpeg_domain.block_dct(plane)
  np.testing.assert_allclose(sliding[:, ::8, ::8], blocks.reshape(2, 3, 4, 64), atol=1e-4)


def test_dctr_step_follows_the_quality():
  np.testing.assert_allclose(jpeg_domain.dctr_step(jnp.array([75, 25, 95])),
                             [4.0, 16.0, 0.8], rtol=1e-6)


def test_dctr_features_of_a_flat_image_fill_only_the_zero_bin():
  features = np.asarray(jpeg_domain.dctr_features(jnp.zeros((1, 24, 24, 3)), *_on_grid(75)))
  assert features.shape == (1, 64 * 64 * 5)
  per_histogram = features.reshape(64 * 64, 5)
  np.testing.assert_allclose(per_histogram[:, 0], np.log(1 + texture.LOG_EPS), atol=1e-6)
  np.testing.assert_allclose(per_histogram[:, 1:], np.log(texture.LOG_EPS), atol=1e-6)
  with pytest.raises(ValueError, match="DCTR features need RGB images of at least 16x16"):
    jpeg_domain.dctr_features(jnp.zeros((1, 24, 24, 1)), *_on_grid(75))


def test_dctr_counts_a_single_basis_pattern_at_its_grid_position():
  # One 8x8 block holding DCT basis pattern (0, 1) at amplitude 40 (10 steps at q75),
  # placed on the grid: the (0, 1) response at phase (0, 0) is 10, counted at T = 4.
  d = jpeg_domain.dct_matrix()
  block = np.outer(d[0], d[1]) * 40.0
  image = np.zeros((1, 16, 16, 3), np.float32)
  image[0, :8, :8] = block[..., None]
  features = np.asarray(jpeg_domain.dctr_features(jnp.asarray(image), *_on_grid(75)))
  per_basis = features.reshape(64, 8, 8, 5)
  # 9x9 positions -> one full 8x8 grid of phases (1 block each): phase (0, 0) saw it.
  assert per_basis[1, 0, 0, 4] == pytest.approx(np.log(1 + texture.LOG_EPS), abs=1e-6)


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


@pytest.mark.parametrize("quality", [75, 90])
def test_each_file_gives_its_own_tables_and_quality(quality):
  data = _jpeg_bytes(_photo_like_image(5), quality)
  pixels, image_format = image_decoding.decode_with_format(data, 64, grayscale=False)
  np.testing.assert_array_equal(image_format.tables, jpeg_tables.standard_tables(quality))
  assert image_format.jpeg_quality == quality
  assert (image_format.format, image_format.width, image_format.height) == ("JPEG", 64, 64)
  np.testing.assert_array_equal(image_format.grid_tables(64), image_format.tables)
  # Resized on decoding, its grid no longer lines up with the model's pixels.
  assert not image_format.grid_tables(32).any()
  assert pixels.shape == (64, 64, 3)


def test_quality_of_tables_from_another_encoder_is_the_nearest_standard_one():
  coarser = np.clip(jpeg_tables.quantization_table(80) + 1, 1, 255)
  assert jpeg_tables.estimate_quality(coarser) in (78, 79)
  luminance = jnp.asarray(np.stack([jpeg_tables.quantization_table(q) for q in (30, 75, 99)]),
                          jnp.float32)
  np.testing.assert_array_equal(jpeg_domain.estimated_quality(luminance), [30, 75, 99])
  buffer = io.BytesIO()
  Image.fromarray(_photo_like_image(6)).save(buffer, format="PNG")
  png = image_decoding.read_header(buffer.getvalue())
  assert png.jpeg_quality is None and not png.tables.any()


def test_dctr_reads_each_images_own_tables():
  # Two files of one picture, at 75 and 90, in one batch with their own tables: each
  # gets the features it gets alone at its quality, not the batch's or a constant's.
  picture = _photo_like_image(7)
  images, tables = [], []
  for quality in (75, 90):
    pixels, image_format = image_decoding.decode_with_format(
        _jpeg_bytes(picture, quality), 64, grayscale=False)
    images.append(pixels)
    tables.append(image_format.grid_tables(64))
  batch = jnp.asarray(np.stack(images), jnp.float32)
  own = np.asarray(jpeg_domain.dctr_features(
      batch, *jpeg_domain.image_tables(np.stack(tables), 2, 75)))
  for i, quality in enumerate((75, 90)):
    alone = np.asarray(jpeg_domain.dctr_features(batch[i:i + 1], *_on_grid(quality)))
    np.testing.assert_allclose(own[i], alone[0], atol=1e-6)
  assert not np.allclose(own[1], np.asarray(jpeg_domain.dctr_features(
      batch[1:], *_on_grid(75)))[0])


def test_image_without_a_grid_gets_the_same_histograms_at_every_position():
  image = jnp.asarray(_photo_like_image(8)[None], jnp.float32)
  tables, has_grid = jpeg_domain.image_tables(
      np.zeros((1, 2, 8, 8), jpeg_tables.TABLES_DTYPE), 1, 75)
  assert not bool(has_grid[0])
  np.testing.assert_array_equal(tables[0], jpeg_tables.standard_tables(75))
  per_phase = np.asarray(jpeg_domain.dctr_features(image, tables, has_grid)
                         ).reshape(64, 64, 5)  # (basis, phase, bin)
  np.testing.assert_allclose(per_phase, np.broadcast_to(per_phase[:, :1], per_phase.shape),
                             atol=1e-6)
  on_grid = np.asarray(jpeg_domain.dctr_features(image, *_on_grid(75))).reshape(64, 64, 5)
  assert not np.allclose(on_grid, on_grid[:, :1], atol=1e-3)
