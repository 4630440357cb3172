"""Checks that an output can be written, run by every command before it computes anything.

A folder that cannot be created, a parent that is a file, a read-only disk or too little free
space each give one :class:`~cryodyna.errors.CryodynaError` naming the path, the reason and the
option to change, instead of a traceback after the work is done.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cryodyna.errors import CryodynaError

MARGIN_MB = 50.0  # free space kept beyond the estimate (logs, temporary files)


def _fail(path: Path, reason: str, option: str) -> CryodynaError:
    return CryodynaError(f"{path}: {reason}; choose another {option}")


def check_output_folder(folder: Path, need_bytes: float = 0.0, option: str = "-o/--out") -> None:
    """Create ``folder`` (with its parents) and check that a file can be written in it and that its
    disk has ``need_bytes`` plus a margin free."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise _fail(folder, f"cannot write to the output folder ({exc.strerror or exc})", option) from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes + MARGIN_MB * 2**20:
        raise _fail(folder, f"only {free / 2**20:.0f} MB free on this disk; about {need_bytes / 2**20 + MARGIN_MB:.0f} MB "
                    "are needed for the outputs", option)


def check_output_file(path: Path, need_bytes: float = 0.0, option: str = "-o/--out") -> None:
    """Check that the file ``path`` can be written (its folder is created if missing; an existing
    folder of that name is an error) with ``need_bytes`` plus a margin free on its disk."""
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "is a folder, but a file is written there", option)
    check_output_folder(path.parent, need_bytes, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise _fail(path, "the existing file cannot be overwritten (permission denied)", option)
