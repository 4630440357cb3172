"""Positioned reads and writes of whole byte ranges (``pread`` / ``pwrite`` return short counts)."""

from __future__ import annotations

import os
from pathlib import Path


def read_exact(fd: int, size: int, offset: int, path: Path, what: str) -> bytes:
    """``size`` bytes at ``offset`` of the open file ``fd``; an OSError naming ``path`` and ``what``
    was being read (e.g. "image 12") when the file ends first."""
    parts, done = [], 0
    while done < size:
        part = os.pread(fd, size - done, offset + done)
        if not part:
            raise OSError(f"{path}: file ends before {what}")
        parts.append(part)
        done += len(part)
    return b"".join(parts)


def write_all(fd: int, data, offset: int) -> None:
    """Write the bytes-like ``data`` at ``offset`` of the open file ``fd``."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
