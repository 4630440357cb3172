"""Metrics file: ``metrics.csv`` in long form (step, epoch, phase, name, value), appended as training
runs so a resumed run continues the same file."""

from __future__ import annotations

import csv
from pathlib import Path

#: train-phase metrics that are not losses (rates, counters), left out of loss plots
NOT_LOSSES = ("lr", "images_per_s", "skipped_steps", "capped_steps")


class MetricsWriter:
    """Append rows to ``metrics.csv``; ``phase`` is ``train``, ``holdout`` or ``eval``."""

    header = ["step", "epoch", "phase", "name", "value"]

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(self.header)

    def write(self, step: int, epoch: int, phase: str, values: dict[str, float]) -> None:
        with open(self.path, "a", newline="") as fh:
            w = csv.writer(fh)
            for name, value in values.items():
                w.writerow([step, epoch, phase, name, f"{value:.6g}"])
