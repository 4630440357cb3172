"""Shared pieces of the AdK benchmarks: the simulated dataset and reading a run's speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryodyna.simulate.adk import write_adk_models
from cryodyna.simulate.simulator import SimulationSpec, simulate


def adk_dataset(data: Path, particles: int, box: int, apix: float, snr: float, seed: int = 0):
    """The AdK closed <-> open path simulated from all-atom density with CTF into ``data`` (reused when
    present).  Returns (closed, open structures, true path coordinate per particle)."""
    _, closed, opened = write_adk_models(data)
    if not (data / "particles.star").exists():
        simulate([closed, opened], SimulationSpec(n_particles=particles, box=box, apix=apix, snr=snr, density="atom",
                                                  seed=seed), data, mode="interpolate")
    return closed, opened, np.load(data / "ground_truth.npz")["path_coordinate"]


def images_per_s(run: Path) -> float:
    """The last training speed logged in a run's metrics.csv."""
    m = pd.read_csv(run / "metrics.csv")
    return float(m[(m.phase == "train") & (m.name == "images_per_s")].value.iloc[-1])


def print_table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return table
