r"""Pixel-variation and spectral analysis of real versus fake faces.

  fakeface-analysis --config configs/default.py --workdir runs/analysis
  fakeface-analysis --config configs/default.py --workdir runs/analysis \
      --num_per_class 500 --config.data.image_size=128

Reproduces the studies' exploratory figures, which probe two suspected generator
traces: how much neighbouring pixels differ ("pixel variation"), and how much energy
is left at high spatial frequencies (upsampling layers tend to remove it). Which way
either goes depends on the generator; the figures show it per dataset. Writes to
`WORKDIR/analysis/`:

  pixel_variation.png      pixel values along 3 adjacent rows and columns of one real
                           and one fake image;
  variation_statistics.png mean adjacent-pixel difference per image, real vs fake;
  spectra.png              azimuthally averaged log power spectrum, real vs fake;
  summary.json             the numbers behind the figures.

Images are analysed in gray, with the project's one definition of gray
(`preprocessing.to_grayscale`), in the 0-255 range of the stored uint8 pixels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import matplotlib
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from fakeface_jax import classes
from fakeface_jax import cli
from fakeface_jax import rundir

matplotlib.use("Agg")
# Loaded on first use: `--help` and usage errors answer without JAX.
jax = cli.lazy_import("jax")
plt = cli.lazy_import("matplotlib.pyplot")
input_pipeline = cli.lazy_import("fakeface_jax.data.input_pipeline")
preprocessing = cli.lazy_import("fakeface_jax.data.preprocessing")
# The package, not its spectral module: a submodule's parents load at once.
models = cli.lazy_import("fakeface_jax.models")

FLAGS = flags.FLAGS

AXES = ("rows", "cols")
COLORS = {"real": "tab:blue", "fake": "tab:red"}


def define_flags() -> None:
  """Defines the command line; called by the entry point, not on import."""
  # Not at import time: main.py and other entry points define flags of the same names.
  config_flags.DEFINE_config_file("config", None, "Data config file (configs/*.py).",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Output directory; figures go to WORKDIR/analysis.")
  flags.DEFINE_integer("num_per_class", 200, "Training images analysed per class.")


# --------------------------------------------------------------------------------------
# Statistics.


def to_gray(images) -> np.ndarray:
  """(..., H, W, 3) or (..., H, W, 1) pixels -> (..., H, W) gray float32, same range."""
  return preprocessing.gray_plane(np.asarray(images))


def _gray_batch(images) -> np.ndarray:
  """A batch as (N, H, W) gray float; (N, H, W) input is taken as gray already."""
  images = np.asarray(images)
  if images.ndim == 3:
    return images.astype(np.float32)
  if images.ndim != 4:
    raise ValueError(f"expected a batch (N, H, W) or (N, H, W, C), got shape {images.shape}")
  return to_gray(images)


def pixel_profiles(image, rows: Sequence[int], cols: Sequence[int]) -> dict[str, np.ndarray]:
  """Gray pixel values along `rows` (each of length W) and `cols` (each of length H).

  Args:
    image: one image (H, W, 3) or (H, W, 1), typically uint8.
    rows: row indices.
    cols: column indices.

  Returns:
    {"rows": (len(rows), W), "cols": (len(cols), H)} float32 arrays.
  """
  image = np.asarray(image)
  if image.ndim != 3:
    raise ValueError(f"expected one image (H, W, C), got shape {image.shape}")
  gray = to_gray(image)
  rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
  return {"rows": gray[rows, :], "cols": gray[:, cols].T}


def _adjacent_differences(images: jax.Array, axis: str) -> jax.Array:
  # "rows" walks along a row (W), "cols" down a column (H).
  differences = abs(jax.numpy.diff(images, axis=2 if axis == "rows" else 1))
  return differences.mean(axis=(1, 2))


def adjacent_differences(images, axis: str) -> np.ndarray:
  """Per-image mean |difference| of adjacent pixels: the "pixel variation" statistic.

  Args:
    images: gray float batch (N, H, W).
    axis: "rows" (neighbours along W) or "cols" (neighbours along H).

  Returns:
    (N,) float32 means.
  """
  if axis not in AXES:
    raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
  images = np.asarray(images, dtype=np.float32)
  if images.ndim != 3:
    raise ValueError(f"expected gray images (N, H, W), got shape {images.shape}")
  return np.asarray(jax.jit(_adjacent_differences, static_argnames="axis")(images, axis))


def radial_power_spectrum(images, num_bins: int | None = None) -> np.ndarray:
  """Azimuthally averaged log power spectrum of each image.

  log(|F|^2 + eps) of the centred 2D FFT, averaged over rings of integer (rounded)
  radius from the zero frequency; bin r is r cycles per image. The raw log power is
  returned, not normalised, so that curves of different classes compare in level too.

  Args:
    images: gray float batch (N, H, W).
    num_bins: rings 0..num_bins-1; default min(H, W) // 2 (up to Nyquist along an axis).

  Returns:
    (N, num_bins) float32.
  """
  images = np.asarray(images, dtype=np.float32)
  if images.ndim != 3:
    raise ValueError(f"expected gray images (N, H, W), got shape {images.shape}")
  if num_bins is None:
    num_bins = min(images.shape[1:]) // 2
  if num_bins < 1:
    raise ValueError(f"num_bins must be positive, got {num_bins}")
  return np.asarray(jax.jit(models.spectral.radial_log_power, static_argnames="num_bins")(
      images, int(num_bins)))


def spatial_frequencies(image_shape: Sequence[int], num_bins: int) -> np.ndarray:
  """Cycles per pixel of each radial bin (exact along the axes of a square image)."""
  return np.arange(num_bins) / min(image_shape[:2])


def _high_frequency_bins(num_bins: int) -> slice:
  """The top quarter of the radial bins, at least one."""
  return slice(num_bins - max(1, num_bins // 4), num_bins)


# --------------------------------------------------------------------------------------
# Figures and summary. Image arguments: a uint8 batch (N, H, W, C) or gray (N, H, W).


def _mean_std(values) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std())


def _middle_start(size: int, count: int) -> int:
  return max(0, size // 2 - count // 2)


def plot_pixel_variation(real_image, fake_image, path: str, start_row: int | None = None,
                         start_col: int | None = None, count: int = 3) -> str:
  """Pixel values along `count` adjacent rows and columns of one real and one fake image.

  A 2x2 grid: real rows, real columns, fake rows, fake columns; one line per row or
  column. Rows start at `start_row` and columns at `start_col` (default: the middle).
  """
  fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharey=True)
  for r, (name, image) in enumerate((("real", real_image), ("fake", fake_image))):
    image = np.asarray(image)
    height, width = image.shape[:2]
    row0 = _middle_start(height, count) if start_row is None else start_row
    col0 = _middle_start(width, count) if start_col is None else start_col
    if not (0 <= row0 <= height - count and 0 <= col0 <= width - count):
      raise ValueError(f"{count} rows from {row0} and columns from {col0} do not fit "
                       f"in a {height}x{width} image")
    rows, cols = range(row0, row0 + count), range(col0, col0 + count)
    profiles = pixel_profiles(image, rows, cols)
    for c, (kind, indices) in enumerate((("rows", rows), ("cols", cols))):
      ax = axes[r, c]
      for index, values in zip(indices, profiles[kind]):
        ax.plot(values, linewidth=1, label=f"{kind[:-1]} {index}")
      ax.set_title(f"{name}: {count} adjacent {'rows' if kind == 'rows' else 'columns'}")
      ax.set_xlabel("column" if kind == "rows" else "row")
      ax.legend(fontsize=8)
    axes[r, 0].set_ylabel("gray value")
  fig.suptitle("Pixel variation along adjacent rows and columns")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def _variations(images) -> dict[str, np.ndarray]:
  gray = _gray_batch(images)
  return {axis: adjacent_differences(gray, axis) for axis in AXES}


def plot_variation_statistics(real_images, fake_images, path: str) -> str:
  """Histograms of the per-image mean adjacent difference, along rows and columns."""
  variations = {"real": _variations(real_images), "fake": _variations(fake_images)}
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, axis in zip(axes, AXES):
    values = np.concatenate([variations[name][axis] for name in variations])
    # Shared bins, so the two classes' bars compare bin by bin.
    bins = np.histogram_bin_edges(values, bins=30)
    for name, per_axis in variations.items():
      mean, std = _mean_std(per_axis[axis])
      ax.hist(per_axis[axis], bins=bins, alpha=0.5, color=COLORS[name],
              label=f"{name} (n={len(per_axis[axis])}): {mean:.2f} ± {std:.2f}")
    ax.set_title(f"along {'rows' if axis == 'rows' else 'columns'}")
    ax.set_xlabel("mean |adjacent pixel difference| (gray levels)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
  fig.suptitle("Pixel variation per image")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_spectra(real_images, fake_images, path: str) -> str:
  """Mean ± std of the radial log power spectrum per class, and fake − real of the means."""
  gray = {"real": _gray_batch(real_images), "fake": _gray_batch(fake_images)}
  spectra = {name: radial_power_spectrum(images) for name, images in gray.items()}
  frequencies = spatial_frequencies(gray["real"].shape[1:], spectra["real"].shape[1])
  fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(11, 4))
  for name, spectrum in spectra.items():
    mean, std = spectrum.mean(axis=0), spectrum.std(axis=0)
    ax.plot(frequencies, mean, color=COLORS[name], label=f"{name} (n={len(spectrum)})")
    ax.fill_between(frequencies, mean - std, mean + std, color=COLORS[name], alpha=0.2)
  ax.set_title("Azimuthally averaged power spectrum (mean ± std)")
  ax.set_xlabel("spatial frequency (cycles / pixel)")
  ax.set_ylabel("log power")
  ax.legend()
  difference = spectra["fake"].mean(axis=0) - spectra["real"].mean(axis=0)
  ax_diff.plot(frequencies, difference, color="k")
  ax_diff.axhline(0, color="gray", linewidth=0.8, linestyle="--")
  ax_diff.set_title("Difference of the means (fake − real)")
  ax_diff.set_xlabel("spatial frequency (cycles / pixel)")
  ax_diff.set_ylabel("Δ log power")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def summarize(real_images, fake_images) -> dict[str, Any]:
  """JSON-serialisable numbers behind the figures.

  Counts; mean and std of the row and column variation per class; the mean of
  (fake − real) mean log power over the top quarter of the radial frequency bins
  (negative: the fakes have less high-frequency energy).
  """
  gray = {"real": _gray_batch(real_images), "fake": _gray_batch(fake_images)}
  summary: dict[str, Any] = {"counts": {name: len(images) for name, images in gray.items()}}
  for axis in AXES:
    per_class = {}
    for name, images in gray.items():
      mean, std = _mean_std(adjacent_differences(images, axis))
      per_class[name] = {"mean": mean, "std": std}
    summary[f"{axis[:-1]}_variation"] = per_class
  mean_spectra = {name: radial_power_spectrum(images).mean(axis=0)
                  for name, images in gray.items()}
  num_bins = len(mean_spectra["real"])
  high = _high_frequency_bins(num_bins)
  frequencies = spatial_frequencies(gray["real"].shape[1:], num_bins)
  summary["spectrum"] = {
      "num_bins": num_bins,
      "high_frequency_range": [float(frequencies[high][0]), float(frequencies[high][-1])],
      "high_frequency_difference": float(
          np.mean(mean_spectra["fake"][high] - mean_spectra["real"][high])),
  }
  return summary


# --------------------------------------------------------------------------------------
# Entry points.


def class_images(images: np.ndarray, labels: np.ndarray,
                 num_per_class: int) -> tuple[np.ndarray, np.ndarray]:
  """Up to `num_per_class` (real, fake) images, in dataset order."""
  labels = np.asarray(labels)
  real = images[np.flatnonzero(labels == classes.REAL)[:num_per_class]]
  fake = images[np.flatnonzero(labels == classes.FAKE)[:num_per_class]]
  if not len(real) or not len(fake):
    raise ValueError(f"need images of both classes, got {len(real)} real and "
                     f"{len(fake)} fake")
  return real, fake


def run_analysis(config: ml_collections.ConfigDict, workdir: str,
                 num_per_class: int = 200) -> list[str]:
  """Writes the figures and summary of `num_per_class` training images per class.

  Returns:
    The paths of pixel_variation.png, variation_statistics.png, spectra.png and
    summary.json under `workdir/analysis/`.
  """
  config = config.copy_and_resolve_references()
  # Decode only a balanced random subset of train, not the whole split; a smaller cap
  # already in the config is kept.
  cap = config.data.train_examples_per_class
  config.data.train_examples_per_class = num_per_class if cap is None else min(cap, num_per_class)
  train = input_pipeline.load_data(config, cache="memory")["train"]
  real, fake = class_images(train.images, train.labels, num_per_class)

  outdir = os.path.join(workdir, rundir.ANALYSIS_DIR)
  os.makedirs(outdir, exist_ok=True)
  paths = [os.path.join(outdir, name) for name in (
      "pixel_variation.png", "variation_statistics.png", "spectra.png", "summary.json")]
  plot_pixel_variation(real[0], fake[0], paths[0])
  plot_variation_statistics(real, fake, paths[1])
  plot_spectra(real, fake, paths[2])
  summary = summarize(real, fake)
  summary["dataset"] = config.data.name
  summary["image_size"] = config.data.image_size
  with open(paths[3], "w") as f:
    json.dump(summary, f, indent=2)
  return paths


def main(argv: list[str]) -> None:
  del argv  # No positional arguments (cli.run checks).
  paths = run_analysis(FLAGS.config, FLAGS.workdir, FLAGS.num_per_class)
  for path in paths:
    print(path)


def run() -> None:
  """Console-script entry point (`fakeface-analysis`)."""
  cli.run(main, name="fakeface-analysis", doc=__doc__, define_flags=define_flags,
          required=("config", "workdir"))


if __name__ == "__main__":
  run()
