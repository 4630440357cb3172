"""One writer per run folder: ``RUN/.lock`` holds the PID, host and command of the process writing
into the folder.  A second command is refused with a one-line error naming the holder; a lock left
by a process that no longer runs (same host) is taken over with a warning."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from cryodyna.errors import CryodynaError
from cryodyna.runs.layout import RunFolder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Hold ``RUN/.lock`` while the body writes into the run folder (created if needed)."""
    path = RunFolder(run_dir).lock
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _holder(path)
            stale = holder.get("host") == record["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"])
            if not stale:
                raise CryodynaError(
                    f"{Path(run_dir)}: in use by process {holder.get('pid', '?')} on {holder.get('host', '?')} since "
                    f"{holder.get('since', '?')} ({holder.get('command', '?')}); wait for it to finish or choose another -o "
                    f"(if that process no longer runs, delete {path})") from None
            warnings.warn(f"{path}: taking over the lock of process {holder['pid']}, which no longer runs", stacklevel=3)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        break
    try:
        yield path
    finally:
        if _holder(path).get("pid") == record["pid"]:
            path.unlink(missing_ok=True)
