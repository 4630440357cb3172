"""``progress.json``: where a training run stands, rewritten atomically so a job monitor can poll
it; and the human-readable pieces of the console lines (durations, the resume hint)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path


class RunStatus:
    """The fields of ``progress.json`` (``status``: running, evaluating, interrupted, failed, stopped
    or finished; step, epoch, images/s, ETA, last losses), written by the main process only."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = Path(path), enabled
        self.fields: dict = {}

    @property
    def status(self) -> str | None:
        return self.fields.get("status")

    def start(self, **fields) -> None:
        """A new record (``running``) with ``fields``."""
        self.fields = dict(fields)
        self.set("running")

    def set(self, status: str, **fields) -> None:
        """Record ``status`` (and ``fields``) and rewrite the file."""
        if not self.enabled:
            return
        self.fields.update(fields, status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.fields, indent=1))
        os.replace(tmp, self.path)

    def progress(self, step: int, total_steps: int, epoch: int, epochs: int, means: dict[str, float],
                 steps_per_s: float) -> None:
        """Training progress after ``step`` of ``total_steps`` with the running ``means`` of the losses."""
        self.set(self.status or "running", step=step, total_steps=total_steps, epoch=epoch, epochs=epochs,
                 images_per_s=round(means["images_per_s"], 2),
                 eta_s=round((total_steps - step) / max(steps_per_s, 1e-9)),
                 losses={k: means[k] for k in means if k not in ("lr", "images_per_s")})


def duration(seconds: float) -> str:
    """``1 h 05 min``, ``4 min 10 s`` or ``12 s``."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def resume_hint(history: Path, run_dir: Path) -> str:
    """The command that started or last resumed the run (from ``history.txt``), to run again."""
    commands = [line.split(": ", 1)[1] for line in history.read_text().splitlines()
                if " started: " in line or " resumed: " in line] if history.is_file() else []
    return commands[-1] if commands else f"the same command with -o {run_dir}"


def signal_name(received: list[int]) -> str:
    """Name of the first signal received (``signal`` when none)."""
    return signal.Signals(received[0]).name if received else "signal"
