"""Process set-up that makes XLA:CPU fast on Linux: huge pages for large buffers.

XLA:CPU allocates each step's large buffers (the float copy of a uint8 batch, im2col
patches) afresh with malloc, and glibc serves allocations above 32 MiB with fresh
mmap'd pages, so every step takes one page fault per 4 KiB touched: on a 2-core VM,
converting a 2000x100x100 uint8 batch to float32 took 27 ms, 22 of them in page faults.
glibc's `glibc.malloc.hugetlb=1` tunable asks for transparent huge pages (2 MiB) for
those mappings instead: the same conversion takes 4.6 ms; the study 1 MLP trains 1.5x
faster and the study 2 CNN 1.4x (see docs/speed.md).

Tunables are read when a process starts, so `reexec_with_huge_pages()` restarts the
current command once (same PID, same arguments) with the tunable set. It does nothing
elsewhere than Linux/glibc, when already set, or when FAKEFACE_NO_REEXEC=1.
"""

from __future__ import annotations

import os
import platform
import sys

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "FAKEFACE_NO_REEXEC"


def environment_with_huge_pages(environ: dict[str, str]) -> dict[str, str] | None:
  """`environ` plus the huge-page tunable, or None when nothing needs to change."""
  if environ.get(OPT_OUT) == "1" or "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", ""):
    return None
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return None
  tunables = ":".join(t for t in (environ.get("GLIBC_TUNABLES"), HUGE_PAGES_TUNABLE) if t)
  return {**environ, "GLIBC_TUNABLES": tunables}


def reexec_with_huge_pages() -> None:
  """Replaces this process by itself with huge pages enabled (see the module docstring).

  Call first thing in an entry point, before JAX starts threads or allocates.
  """
  environ = environment_with_huge_pages(dict(os.environ))
  if environ is None:  # Includes the restarted process: its GLIBC_TUNABLES has it.
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
