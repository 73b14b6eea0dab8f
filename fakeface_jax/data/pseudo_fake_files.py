"""A source whose fakes are replaced by pseudo-fakes of its own real images
(`config.data.pseudo_fakes`).

Self-Blended Images and AutoGAN train without any generator's fakes: the fakes are real
images sent through what forgeries share (a blended region; up-sampling layers). Here
that happens to a source's files, before decoding, so that every model sees it, the
fixed-feature detector's cached features included: each fake file is replaced by a
pseudo-fake (`artifacts.pseudo_fake`) of a real file of the same split, drawn from
(seed, the fake's path), and encoded as that real file was (its JPEG tables, or PNG), so
the format tells the classes nothing. Labels, splits and folds stay the files' own; only
the fake files' pixels change. A mixture that gives every source `pseudo_fakes` trains
with no real fake at all (the protocol's "pseudo-fakes only" mode); one that adds such
a copy beside each source trains on both.

Images go through the pseudo-fake at their own size, so each distinct size compiles
once (a dataset has one or a few).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import zlib
from typing import Any

import jax
import numpy as np
from PIL import Image

from fakeface_jax import classes
from fakeface_jax.data import artifacts
from fakeface_jax.data import datasets
from fakeface_jax.data import degradations
from fakeface_jax.data import image_decoding
from fakeface_jax.data import selection

# Bumped when the pseudo-fakes a setting makes change (cached features name it).
VERSION = 1


@dataclasses.dataclass(frozen=True)
class PseudoFakeSettings:
  """Which pseudo-fake kinds, in which proportions, from which seed."""
  kinds: tuple[str, ...]
  weights: tuple[float, ...] | None
  seed: int

  def to_json(self) -> dict[str, Any]:
    return {"kinds": list(self.kinds), "weights": None if self.weights is None
            else list(self.weights), "seed": self.seed}


def settings_of(data_config: Any) -> PseudoFakeSettings | None:
  """config.data.pseudo_fakes as settings, or None where its kinds are empty (off); bad
  kinds or weights raise ValueError naming them."""
  config = data_config.get("pseudo_fakes")
  if config is None or not tuple(config.kinds):
    return None
  kinds = tuple(config.kinds)
  weights = tuple(float(w) for w in config.weights) if tuple(config.weights) else None
  artifacts.check_mixture(kinds, weights)
  return PseudoFakeSettings(kinds, weights, int(config.seed))


@functools.lru_cache(maxsize=None)
def _compiled(kinds: tuple[str, ...], weights: tuple[float, ...] | None):
  return jax.jit(functools.partial(artifacts.pseudo_fake, kinds=kinds, weights=weights))


def pseudo_fake_pixels(pixels: np.ndarray, key: jax.Array,
                       settings: PseudoFakeSettings) -> np.ndarray:
  """uint8 (H, W, 3) -> its pseudo-fake, uint8 (H, W, 3)."""
  image = np.asarray(pixels, np.float32) / 255.0
  out = np.asarray(_compiled(settings.kinds, settings.weights)(key, image))
  return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def encode_like(pixels: np.ndarray, original: bytes) -> bytes:
  """`pixels` encoded as `original` was: a JPEG with its quantization tables and chroma
  subsampling, anything else as PNG (lossless)."""
  buffer = io.BytesIO()
  with Image.open(io.BytesIO(original)) as source:
    image = Image.fromarray(pixels)
    if source.format == "JPEG":
      from PIL import JpegImagePlugin  # pylint: disable=g-import-not-at-top
      image.save(buffer, format="JPEG", qtables=source.quantization,
                 subsampling=JpegImagePlugin.get_sampling(source))
    else:
      image.save(buffer, format="PNG")
  return buffer.getvalue()


class PseudoFakeFiles:
  """A fake file's bytes -> a pseudo-fake of a real file of its split, encoded as that
  real file was; a real file's bytes as they are; then `resave` (the source's re-saved
  copy) where there is one. Which real file, and the pseudo-fake's key, are drawn from
  (seed, the fake's path): the same in every role, run and process, so features can be
  cached."""

  def __init__(self, builder, settings: PseudoFakeSettings,
               resave: degradations.FileResave | None = None):
    self.settings = settings
    self.resave = resave
    self._sources: dict[str, Any] = {}
    # Fake path -> (split, index of the real record it is made from).
    self._origin: dict[str, tuple[str, int]] = {}
    for split in builder.info.splits.keys():
      source = datasets.data_source(builder, split)
      meta = selection.read_metadata(source)
      reals = np.flatnonzero(meta["label"] == classes.REAL)
      if not len(reals):
        continue
      self._sources[split] = source
      for path in meta["path"][meta["label"] == classes.FAKE]:
        self._origin[str(path)] = (split, int(reals[self._draw(path) % len(reals)]))

  def _draw(self, path: str) -> int:
    return int(np.random.default_rng([self.settings.seed, zlib.crc32(path.encode())])
               .integers(2 ** 31))

  def origin(self, path: str) -> bytes | None:
    """The encoded real file that fake `path` is made from, None for any other path."""
    if path not in self._origin:
      return None
    split, index = self._origin[path]
    return self._sources[split][index]["image"]

  def __call__(self, data: bytes, path: str) -> bytes:
    real = self.origin(path)
    if real is not None:
      pixels, _ = image_decoding.decode_photo(real)
      key = jax.random.key(self._draw(path))
      data = encode_like(pseudo_fake_pixels(pixels, key, self.settings), real)
    return data if self.resave is None else self.resave(data, path)

  def copy_format(self, data: bytes, path: str) -> image_decoding.ImageFormat:
    """What `self(data, path)` is: a pseudo-fake is encoded as its real file was."""
    real = self.origin(path)
    original = data if real is None else real
    return (image_decoding.read_header(original) if self.resave is None
            else self.resave.copy_format(original, path))
