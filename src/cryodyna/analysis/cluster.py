"""Particle subsets from the latent space, exported for refinement elsewhere (RELION STAR and
cryoDRGN index pickles)."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from cryodyna.analysis.latent import kmeans_centres
from cryodyna.errors import CryodynaError
from cryodyna.io.read import read_particles
from cryodyna.io.star import write_star
from cryodyna.runs.layout import evaluation_file
from cryodyna.runs.read import newest_evaluation, read_run


def run_particles(run_dir: Path):
    """The particle table a run was trained on (paths and options from its run.json/config), with
    the refined poses of its newest evaluation when it refined them (``optim.refine_poses``)."""
    info, cfg = read_run(run_dir, ("atom", "cg", "density"))
    table = read_particles(info["particles"], datadir=cfg.data.datadir, apix=cfg.data.apix)
    newest = newest_evaluation(run_dir)
    if newest is not None and evaluation_file(newest, "refined_particles").is_file():
        refined = read_particles(evaluation_file(newest, "refined_particles"))
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


def select_subsets(z: np.ndarray, k: int | None = None, pc: int | None = None, pc_range: str | None = None,
                   z_box: str | None = None, indices: Path | None = None) -> tuple[list[np.ndarray], str]:
    """The particle subsets chosen by exactly one of ``k`` (k-means), ``pc`` with ``pc_range``
    ("LOW,HIGH" on that principal component's score), ``z_box`` ("LOW1:HIGH1,..." per latent
    dimension) or ``indices`` (a file of 0-based indices), with a file-name prefix; a one-line error
    for a bad or empty selection."""
    if sum(x is not None for x in (k, pc, z_box, indices)) != 1:
        raise CryodynaError("choose exactly one of --k, --pc/--range, --zbox or --indices")
    if k is not None:
        if not 2 <= k <= max(2, len(z) // 10):
            raise CryodynaError(f"--k {k}: choose 2 to {max(2, len(z) // 10)} clusters for {len(z)} particles "
                                "(at least ~10 particles per subset to refine)")
        subsets, prefix = kmeans_subsets(z, k), "cluster"
    elif pc is not None:
        if pc_range is None:
            raise CryodynaError("--pc needs --range LOW,HIGH")
        try:
            low, high = (float(v) for v in pc_range.split(","))
        except ValueError:
            raise CryodynaError(f"--range {pc_range!r}: expected two numbers LOW,HIGH (e.g. --range=-1.5,0.5)") from None
        if low >= high:
            raise CryodynaError(f"--range {pc_range}: LOW must be below HIGH")
        subsets, prefix = [pc_range_subset(z, pc, low, high)], f"pc{pc}_range"
    elif indices is not None:
        subsets, prefix = [read_indices(indices, len(z))], "selection"
    else:
        bounds = [tuple(float(v) for v in part.split(":")) for part in z_box.split(",")]
        if len(bounds) != z.shape[1]:
            raise CryodynaError(f"--zbox needs {z.shape[1]} LOW:HIGH ranges, one per latent dimension")
        subsets, prefix = [box_subset(z, np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds]))], "zbox"
    if not any(len(idx) for idx in subsets):
        raise CryodynaError("the selection holds no particle; nothing written (see the PC scores or latent ranges in the analysis)")
    return subsets, prefix
