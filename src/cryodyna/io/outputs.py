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
    """Check that ``folder`` (or, while it does not exist, the nearest existing folder above it,
    where it will be created) takes a file, and that its disk has ``need_bytes`` plus a margin
    free.  Nothing is left behind."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is a file, not a folder")
        probe = existing / f".write-test-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise _fail(folder, f"cannot write to the output folder ({exc.strerror or exc})", option) from None
    free = shutil.disk_usage(existing).free
    if free < need_bytes + MARGIN_MB * 2**20:
        raise _fail(folder, f"only {free / 2**20:.0f} MB free on this disk; about {need_bytes / 2**20 + MARGIN_MB:.0f} MB "
                    "are needed for the outputs", option)


def check_output_file(path: Path, need_bytes: float = 0.0, option: str = "-o/--out") -> None:
    """Check that the file ``path`` can be written (an existing folder of that name is an error)
    with ``need_bytes`` plus a margin free on its disk; its folder is then created if missing."""
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "is a folder, but a file is written there", option)
    check_output_folder(path.parent, need_bytes, option)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not os.access(path, os.W_OK):
        raise _fail(path, "the existing file cannot be overwritten (permission denied)", option)
