"""Benchmark of ``train-cg`` (MARTINI beads) against ``train-atom`` on the same AdK closed <-> open data.

Simulates the AdK path from all-atom density with CTF (as the former ``adk_residue.py``), trains ``train-cg`` and
``train-atom`` for the same wall-clock budget, decodes one structure per particle and prints:
|Spearman(PC1, true path coordinate)|, median / 90th-percentile RMSD of the backbone beads (BB) to the
true BB positions (the true all-atom structure of each particle mapped by martinize2; map frame, no
superposition), the MARTINI bonded energy per bead of the predicted structures and of the minimised
reference, clash fraction of beads, and images/s of both stages.

Example:
    python benchmarks/adk_bead.py --particles 10000 --minutes 10 --out bench_runs/adk_bead
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from adk_data import adk_dataset, images_per_s, print_table
from scipy.spatial import cKDTree
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from cryodyna.analysis.sampling import decode_latents
from cryodyna.config import load_config
from cryodyna.io.structure import read_structure
from cryodyna.structure.martini import martinize
from cryodyna.train.run import load_run, resolved_config, train_atom, train_cg

BONDED = ("bond", "angle", "proper", "improper")


def bonded_per_bead(forcefield, coords: np.ndarray) -> float:
    """Mean MARTINI bonded energy (kJ/mol) per bead over structures (K, N, 3)."""
    with torch.no_grad():
        terms = forcefield.terms(torch.as_tensor(coords, dtype=torch.float32))
    return float(sum(terms[t].sum(1).mean() for t in BONDED)) / coords.shape[1]


def bead_clashes(coords: np.ndarray, excluded: np.ndarray, distance: float = 3.0) -> float:
    """Fraction of non-bonded bead pairs closer than ``distance`` Å (sampled structures)."""
    ex = {tuple(p) for p in excluded.tolist()}
    close, n = 0, coords.shape[1]
    sample = coords[:: max(1, len(coords) // 200)]
    for x in sample:
        close += sum(1 for p in cKDTree(x).query_pairs(distance) if p not in ex)
    return close / (len(sample) * n * (n - 1) / 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--particles", type=int, default=10000)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--apix", type=float, default=2.0)
    p.add_argument("--minutes", type=float, default=10.0, help="training budget of each stage (wall clock)")
    p.add_argument("--set", action="append", default=[], help="train-cg config override")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_runs/adk_bead")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    out = Path(args.out)
    data = out / "data"
    _, _, u = adk_dataset(data, args.particles, args.box, args.apix, args.snr, args.seed)

    cfg = load_config("train-cg", None, ["optim.epochs=100", *args.set])
    start = time.perf_counter()
    folder = train_cg(data / "particles.star", data / "reference.pdb", out / "cg", cfg, restart=True,
                      time_limit_minutes=args.minutes)
    cg_minutes = (time.perf_counter() - start) / 60
    model, task = load_run(out / "cg")
    z = np.load(folder / "z.npy")
    pred = decode_latents(model, z)
    bb = np.flatnonzero(task.graph.template.atom_name == "BB")
    mapped_closed = martinize(read_structure(data / "reference.pdb")).mapped
    mapped_open = martinize(read_structure(data / "open.pdb")).mapped
    truth_bb = mapped_closed[bb][None] * (1 - u[:, None, None]) + mapped_open[bb][None] * u[:, None, None]
    rmsd = np.sqrt(((pred[:, bb] - truth_bb) ** 2).sum(-1).mean(-1))
    reference = model.reference.cpu().numpy()
    rows = [{
        "stage": "train-cg", "spearman_pc1": abs(spearmanr(PCA(1).fit_transform(z)[:, 0], u).statistic),
        "median_bb_rmsd": float(np.median(rmsd)), "p90_bb_rmsd": float(np.percentile(rmsd, 90)),
        "reference_median_bb_rmsd": float(np.median(np.sqrt(((reference[bb][None] - truth_bb) ** 2).sum(-1).mean(-1)))),
        "bonded_kj_per_bead_pred": bonded_per_bead(task.forcefield, pred[:: max(1, len(pred) // 500)]),
        "bonded_kj_per_bead_ref": bonded_per_bead(task.forcefield, reference[None]),
        "bead_clash_fraction": bead_clashes(pred, task.forcefield.excluded),
        "images_per_s": images_per_s(out / "cg"), "train_minutes": cg_minutes,
    }]

    start = time.perf_counter()
    folder = train_atom(data / "particles.star", data / "reference.pdb", out / "atom", resolved_config(None, [], 100),
                        restart=True, time_limit_minutes=args.minutes)
    z_atom = np.load(folder / "z.npy")
    rows.append({"stage": "train-atom", "spearman_pc1": abs(spearmanr(PCA(1).fit_transform(z_atom)[:, 0], u).statistic),
                 "images_per_s": images_per_s(out / "atom"), "train_minutes": (time.perf_counter() - start) / 60})
    print_table(rows)
    print(f"cost of train-cg relative to train-atom (images/s ratio): {rows[1]['images_per_s'] / rows[0]['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
