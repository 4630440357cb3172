"""Process-wide CPU settings for training: denormal flushing and the C allocator (the thread
count is chosen in :mod:`cryodyna.train.threads`).

* Denormals are flushed to zero: Gaussian tails and ELU/sigmoid saturation produce float32 values
  below 1e-38, on which x86 arithmetic is many times slower; nothing here resolves them.
* glibc's allocator is told to serve large tensors from its heap and keep freed memory (no
  ``mmap`` per allocation, no trimming): otherwise every temporary over its mmap threshold is a
  fresh mapping whose pages are zeroed on first touch, which dominates a step for large models.
  Other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import torch

log = logging.getLogger("cryodyna")

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


def keep_heap_memory() -> bool:
    """Ask glibc to allocate from the heap without mmap and never trim it; False when the C
    library is not glibc (the call is skipped)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))  # -1: SIZE_MAX, never trim


def configure_cpu() -> None:
    """Apply the settings above."""
    torch.set_flush_denormal(True)
    if not keep_heap_memory():
        log.debug("allocator settings skipped (not glibc)")
