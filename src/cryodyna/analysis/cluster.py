"""Particle subsets from the latent space, exported for refinement elsewhere (RELION STAR and
cryoDRGN index pickles)."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from cryodyna.analysis.latent import kmeans_centres
from cryodyna.config import load_config
from cryodyna.errors import CryodynaError
from cryodyna.io.read import read_particles
from cryodyna.io.star import write_star


def run_particles(run_dir: Path):
    """The particle table a run was trained on (paths and options from its run.json/config), with
    the refined poses of its newest evaluation when it refined them (``optim.refine_poses``)."""
    info = json.loads((Path(run_dir) / "run.json").read_text())
    cfg = load_config("train-atom", Path(run_dir) / "config.yaml")
    table = read_particles(info["particles"], datadir=cfg.data.datadir, apix=cfg.data.apix)
    newest = max(Path(run_dir).glob("epoch-*"), default=None)
    if newest is not None and (newest / "particles_refined.star").is_file():
        refined = read_particles(newest / "particles_refined.star")
        table = replace(table, rotations=refined.rotations, shifts=refined.shifts)
    return table


def kmeans_subsets(z: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """Particle indices of each k-means cluster (clusters ordered along PC1)."""
    _, _, labels = kmeans_centres(z, k, seed)
    return [np.flatnonzero(labels == c) for c in range(labels.max() + 1)]


def pc_range_subset(z: np.ndarray, pc: int, low: float, high: float) -> np.ndarray:
    """Particles whose score on principal component ``pc`` (1-based) lies in [low, high]."""
    if not 1 <= pc <= min(z.shape):
        raise CryodynaError(f"--pc must be between 1 and {min(z.shape)}")
    scores = PCA(n_components=pc).fit_transform(z)[:, pc - 1]
    return np.flatnonzero((scores >= low) & (scores <= high))


def read_indices(path: Path, n: int) -> np.ndarray:
    """0-based particle indices from a text file (one per line), checked against ``n`` particles."""
    path = Path(path)
    if not path.is_file():
        raise CryodynaError(f"{path}: index file not found")
    try:
        idx = np.loadtxt(path, dtype=np.int64, ndmin=1)
    except ValueError:
        raise CryodynaError(f"{path}: expected one integer particle index per line") from None
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise CryodynaError(f"{path}: index {int(bad[0])} is outside 0..{n - 1} (this run has {n} particles)")
    return np.unique(idx)


def box_subset(z: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Particles whose latent lies inside the box [low, high] (each (z_dim,))."""
    return np.flatnonzero(((z >= low) & (z <= high)).all(axis=1))


def write_subsets(table, subsets: list[np.ndarray], out_dir: Path, prefix: str = "cluster") -> list[Path]:
    """One ``<prefix>_NNN.star`` (RELION 3.1) and ``<prefix>_NNN.pkl`` (cryoDRGN index array) per
    subset; empty subsets are skipped.  Returns the STAR paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, idx in enumerate(subsets):
        if len(idx) == 0:
            continue
        star = out_dir / f"{prefix}_{i:03d}.star"
        write_star(star, table.subset(idx))
        with open(star.with_suffix(".pkl"), "wb") as fh:
            pickle.dump(np.asarray(idx, dtype=np.int64), fh)
        written.append(star)
    return written
