"""Benchmark of ``train-atom`` on the AdK closed <-> open example (continuous path, CTF, all-atom density).

Simulates the dataset at each SNR, trains under a wall-clock budget, decodes one structure per particle
and prints: |Spearman(PC1, true path coordinate)|, median / 90th-percentile CA RMSD to the true
per-particle structure (map frame, no superposition), RMS deviation of consecutive CA-CA distances
from the reference, clash fraction (non-consecutive CA pairs < 3.5 Å), images/s and peak memory.

Example:
    python benchmarks/adk_residue.py --snr 0.05 0.01 --particles 10000 --minutes 15 --out bench_runs
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
from adk_data import adk_dataset, images_per_s, print_table
from scipy.spatial import cKDTree
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from cryodyna.analysis.sampling import decode_latents
from cryodyna.io.structure import read_structure
from cryodyna.simulate.adk import adk_states, path_rmsd
from cryodyna.structure.nodes import residue_nodes
from cryodyna.train.run import load_run, resolved_config, train_atom


def structure_metrics(pred: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Accuracy and geometry of predicted node coordinates (K, N, 3) against the truth (K, N, 3)."""
    rmsd = np.sqrt(((pred - truth) ** 2).sum(-1).mean(-1))
    ref_bonds = np.linalg.norm(reference[1:] - reference[:-1], axis=-1)
    bonds = np.linalg.norm(pred[:, 1:] - pred[:, :-1], axis=-1)
    clashes, pairs = 0, 0
    for x in pred[:: max(1, len(pred) // 500)]:
        close = np.asarray(sorted(cKDTree(x).query_pairs(3.5)), dtype=np.int64).reshape(-1, 2)
        clashes += int((np.abs(close[:, 0] - close[:, 1]) > 1).sum())
        pairs += len(x) * (len(x) - 1) // 2 - (len(x) - 1)
    return {
        "median_rmsd": float(np.median(rmsd)),
        "p90_rmsd": float(np.percentile(rmsd, 90)),
        "reference_median_rmsd": float(np.median(np.sqrt(((reference - truth) ** 2).sum(-1).mean(-1)))),
        "ca_ca_rms_dev": float(np.sqrt(((bonds - ref_bonds) ** 2).mean())),
        "clash_fraction": clashes / max(pairs, 1),
    }


def run(snr: float, args) -> dict[str, float]:
    out = Path(args.out) / f"snr{snr}"
    data = out / "data"
    adk_dataset(data, args.particles, args.box, args.apix, snr, args.seed)
    cfg = resolved_config(None, args.set, args.epochs)
    shutil.rmtree(out / "run", ignore_errors=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_atom(data / "particles.star", data / "reference.pdb", out / "run", cfg,
                            time_limit_minutes=args.minutes)
    train_s = time.perf_counter() - start
    gt = np.load(data / "ground_truth.npz")
    z = np.load(folder / "z.npy")
    pc1 = PCA(n_components=1).fit_transform(z)[:, 0]
    model, _ = load_run(out / "run")
    pred = decode_latents(model, z)
    reference = residue_nodes(read_structure(data / "reference.pdb")).coords
    speed = images_per_s(out / "run")
    result = {"snr": snr, "spearman_pc1": abs(spearmanr(pc1, gt["path_coordinate"]).statistic),
              **structure_metrics(pred, gt["node_coords"], reference),
              "images_per_s": float(speed), "train_minutes": train_s / 60,
              "peak_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snr", type=float, nargs="+", default=[0.05, 0.01])
    p.add_argument("--particles", type=int, default=10000)
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--apix", type=float, default=2.0)
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per SNR (wall clock)")
    p.add_argument("--epochs", type=int, default=100, help="upper bound; the time budget usually ends training")
    p.add_argument("--set", action="append", default=[], help="config override, e.g. --set model.z_dim=8")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_runs/adk_residue")
    args = p.parse_args()
    print_table([run(snr, args) for snr in args.snr])
    print(f"closed <-> open CA RMSD of the path: {path_rmsd(*adk_states()):.2f} Å")


if __name__ == "__main__":
    main()
