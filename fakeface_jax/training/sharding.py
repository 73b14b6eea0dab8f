"""Data parallelism over every device of every process: the mesh and data placement.

One axis, `data`: batches are sharded along it and the train state is replicated, so
XLA inserts the gradient all-reduce. The same code runs on one CPU, several GPUs or a
TPU pod slice.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D "data" mesh over all devices, each process's devices in one contiguous block.

  Process i feeds rows [i * B/P, (i + 1) * B/P) of every global batch, so the mesh must
  place its devices there too; `jax.make_mesh` may interleave processes, which would
  permute examples within a batch and change which ones the per-position augmentation
  flips or rotates.
  """
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return jax.sharding.Mesh(np.array(devices), ("data",),
                           axis_types=(jax.sharding.AxisType.Auto,))


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles each process's slice of a batch into one array sharded over all devices."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def gather(tree: Any) -> Any:
  """Fetches arrays to the host, from all processes when there are several."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)
