"""Config files named as on the command line: `configs/x.py` or `configs/x.py:ARG`, the
file's `get_config()` or `get_config(ARG)` (the sweeps' runs and grids, the benchmarks'
models)."""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from fakeface_jax import errors


def _load_module(path: str):
  spec = importlib.util.spec_from_file_location(
      f"_fakeface_config_{abs(hash(path))}", path)
  if not os.path.isfile(path) or spec is None or spec.loader is None:
    raise errors.ConfigError(f"cannot load config file {path}: no such Python file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(spec: str) -> ml_collections.ConfigDict:
  """'path.py' or 'path.py:arg' -> the file's get_config() or get_config(arg)."""
  path, _, arg = spec.partition(":")
  module = _load_module(path)
  return module.get_config(arg) if arg else module.get_config()
