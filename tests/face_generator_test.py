"""Tests for the procedural generator behind the built-in dataset."""

import io

import numpy as np
import pytest
from PIL import Image

from fakeface_jax.data import face_generator
from fakeface_jax.data import preprocessing


def test_render_shape_dtype_and_determinism():
  a = face_generator.render_example(0, 3, 1, 48, 0.5)
  assert a.shape == (48, 48, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, face_generator.render_example(0, 3, 1, 48, 0.5))
  assert not np.array_equal(a, face_generator.render_example(0, 5, 1, 48, 0.5))
  assert not np.array_equal(a, face_generator.render_example(1, 3, 1, 48, 0.5))


def test_make_example_is_deterministic_balanced_and_decodes():
  examples = [face_generator.make_example(7, i, 32, 0.5) for i in range(10)]
  assert examples[4] == face_generator.make_example(7, 4, 32, 0.5)
  assert [label for _, label in examples] == [0, 1] * 5
  with Image.open(io.BytesIO(examples[0][0])) as image:
    assert image.format == "JPEG" and image.size == (32, 32)


def test_transposed_conv_with_bilinear_kernel_interpolates_exactly():
  flat = np.full((6, 6, 3), 0.25)
  out = face_generator._transposed_conv_upsample(flat, np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
  assert out.shape == (12, 12, 3)
  np.testing.assert_allclose(out, 0.25, atol=1e-12)


def periodic_energy(images):
  """Mean share of spectral power at the 2x-upsampling frequencies (Nyquist lines)."""
  gray = preprocessing.to_grayscale(np.stack(images))[..., 0]
  gray = gray - gray.mean(axis=(1, 2), keepdims=True)
  power = np.abs(np.fft.fft2(gray)) ** 2
  n = gray.shape[1] // 2
  return float(np.mean((power[:, n, :].sum(-1) + power[:, :, n].sum(-1)) / power.sum((1, 2))))


def test_fakes_carry_periodic_upsampling_traces_that_difficulty_removes():
  real = [face_generator.render_example(0, i, 1, 64, 0.0) for i in range(30)]
  easy = [face_generator.render_example(0, i, 0, 64, 0.0) for i in range(30)]
  hard = [face_generator.render_example(0, i, 0, 64, 1.0) for i in range(30)]
  assert periodic_energy(easy) > 5 * periodic_energy(real)
  assert periodic_energy(hard) < periodic_energy(easy) / 5


def test_no_brightness_or_color_shortcut():
  # Per-image channel means vary with a std of about 60; over 400 images per class the
  # standard error of the difference is about 4, so 10 flags only a systematic shift.
  real = np.stack([face_generator.render_example(0, i, 1, 16, 0.5) for i in range(400)])
  fake = np.stack([face_generator.render_example(0, i, 0, 16, 0.5) for i in range(400)])
  np.testing.assert_allclose(real.mean(axis=(0, 1, 2)), fake.mean(axis=(0, 1, 2)), atol=10)


def test_difficulty_out_of_range_is_rejected():
  with pytest.raises(ValueError, match=r"difficulty must be in \[0, 1\], got 1.5"):
    face_generator.render_example(0, 0, 0, 32, 1.5)
