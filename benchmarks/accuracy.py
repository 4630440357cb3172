"""Per-particle accuracy of ``train-atom`` on the benchmark sets (``accuracy_sets.py``), next to the ceiling.

For each set and SNR: simulate (reused when present), train for ``--epochs`` epochs, decode one
structure per particle from the final latents and print |Spearman(PC1, true path coordinate)|, the
median / 90th-percentile CA RMSD to each particle's true structure (map frame, no superposition),
the reference-only baseline (the reference model for every particle), CA-CA bond deviation, clash
fraction, images/s, and the ceiling (``cryodyna.simulate.ceiling``) with the training image model
and, with ``--density-ceiling``, with the simulator's all-atom density: its best candidate
(``bayes_*``) and its posterior mean (``bayes_mean_*``, the best any method can do).

With the default posterior-mean latents it also prints the encoder's own (``encoder_*``, from
``z_encoder.npy``).  Per set it also prints where the error is: per region of the true motion (near
the reference, middle, far end) the gain (projection of the predicted on the true displacement) and
the orthogonal error, and writes the per-residue error profile (``RUN_residue_error.png``).

Example (the issue's budget: 10 epochs of 6,000 particles):
    python benchmarks/accuracy.py --sets adk-md adk-md-mid --snr 0.05 0.01 --particles 6000 --epochs 10 --density-ceiling
    python benchmarks/accuracy.py --sets adk-curved adk-mid adk-2d --snr 0.05 0.01 --particles 6000 --epochs 10
    python benchmarks/accuracy.py --sets pr-md --snr 0.05 --particles 6000 --epochs 10
    python benchmarks/accuracy.py --sets complex --snr 0.05 --particles 3000 --epochs 10
"""

from __future__ import annotations

import argparse
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy_sets import SETS, build
from adk_data import images_per_s
from scipy.spatial import cKDTree
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from cryodyna.models.sampling import decode_latents
from cryodyna.io.structure import read_structure
from cryodyna.simulate.ceiling import accuracy_ceiling, displacement_gain, node_rmsd
from cryodyna.structure.nodes import residue_nodes
from cryodyna.assembly.stage import load_run
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom


def structure_metrics(pred: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Accuracy and geometry of predicted node coordinates (K, N, 3) against the truth (K, N, 3)."""
    rmsd = node_rmsd(pred, truth)
    ref_bonds = np.linalg.norm(reference[1:] - reference[:-1], axis=-1)
    bonds = np.linalg.norm(pred[:, 1:] - pred[:, :-1], axis=-1)
    clashes, pairs = 0, 0
    for x in pred[:: max(1, len(pred) // 300)]:
        close = np.asarray(sorted(cKDTree(x).query_pairs(3.5)), dtype=np.int64).reshape(-1, 2)
        clashes += int((np.abs(close[:, 0] - close[:, 1]) > 1).sum())
        pairs += len(x) * (len(x) - 1) // 2 - (len(x) - 1)
    return {
        "median_rmsd": float(np.median(rmsd)),
        "p90_rmsd": float(np.percentile(rmsd, 90)),
        "reference_rmsd": float(np.median(node_rmsd(reference[None], truth))),
        "bond_dev": float(np.sqrt(((bonds - ref_bonds) ** 2).mean())),
        "clashes": clashes / max(pairs, 1),
    }


REGIONS = ("near", "middle", "far")


def motion_regions(truth: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True displacement (K,) Å (RMS over nodes) of structures (K, N, 3) from the reference, and the
    region of each (0 near, 1 middle, 2 far end: thirds of its 95th percentile)."""
    size = node_rmsd(truth, reference)
    return size, np.digitize(size, np.percentile(size, 95) * np.array([1 / 3, 2 / 3]))


def motion_diagnostics(pred: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> pd.DataFrame:
    """Where the error is, per region of the true motion: particles split by their true displacement
    from the reference (RMS over nodes) into thirds of its 95th percentile (near the reference,
    middle, far end).  Per region: the true displacement, the gain (projection of the predicted on
    the true displacement, 1 = full size) and the orthogonal error (RMS over nodes of the part of
    the predicted displacement orthogonal to the true one, Å), medians over the particles."""
    true_d = (truth - reference).reshape(len(truth), -1)
    gain = displacement_gain(pred, truth, reference)
    orthogonal = (pred - reference).reshape(len(pred), -1) - gain[:, None] * true_d
    n_nodes = truth.shape[1]
    size, region = motion_regions(truth, reference)
    rows = []
    for k, name in enumerate(REGIONS):
        sel = region == k
        if sel.any():
            rows.append({"region": name, "particles": int(sel.sum()), "true_motion_a": float(np.median(size[sel])),
                         "gain": float(np.median(gain[sel])),
                         "orthogonal_a": float(np.median(np.sqrt((orthogonal[sel] ** 2).sum(1) / n_nodes))),
                         "rmsd_a": float(np.median(node_rmsd(pred[sel], truth[sel])))})
    return pd.DataFrame(rows)


def residue_error_plot(path: Path, pred: np.ndarray, truth: np.ndarray, reference: np.ndarray, title: str) -> None:
    """Per-residue error profile: median over particles of each node's distance to its true position,
    next to the reference-only error (the motion itself)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.5))
    nodes = np.arange(1, truth.shape[1] + 1)
    ax.plot(nodes, np.median(np.linalg.norm(reference - truth, axis=-1), 0), color="0.6", label="reference only (true motion)")
    ax.plot(nodes, np.median(np.linalg.norm(pred - truth, axis=-1), 0), color="C3", label="train-atom")
    ax.set_xlabel("node (residue)")
    ax.set_ylabel("median error (Å)")
    ax.set_title(title)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(name: str, snr: float, args) -> dict[str, float]:
    out = Path(args.out) / f"{name}_snr{snr}_n{args.particles}"
    data = build(name, out / "data", args.particles, snr, args.seed)
    cfg = resolved_config(None, args.set, args.epochs)
    tag = "run" if not args.tag else f"run-{args.tag}"
    shutil.rmtree(out / tag, ignore_errors=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_atom(data / "particles.star", data / "reference.pdb", out / tag, cfg)
    minutes = (time.perf_counter() - start) / 60
    gt = np.load(data / "ground_truth.npz")
    z = np.load(folder / "z.npy")
    pcs = PCA(n_components=min(2, z.shape[1])).fit_transform(z)
    model = load_run(out / tag).model
    pred = decode_latents(model, z)
    reference = residue_nodes(read_structure(data / "reference.pdb")).coords
    row = {"set": name, "snr": snr, "spearman_pc1": abs(spearmanr(pcs[:, 0], gt["path_coordinate"]).statistic),
           **structure_metrics(pred, gt["node_coords"], reference),
           "images_per_s": images_per_s(out / tag), "minutes": minutes}
    encoder_z = folder / "z_encoder.npy"  # the encoder's own latents, when z.npy holds their posterior means
    if encoder_z.is_file():
        z0 = np.load(encoder_z)
        row.update(encoder_spearman_pc1=abs(spearmanr(PCA(1).fit_transform(z0)[:, 0], gt["path_coordinate"]).statistic),
                   encoder_median_rmsd=structure_metrics(decode_latents(model, z0), gt["node_coords"], reference)["median_rmsd"])
    regions = motion_diagnostics(pred, gt["node_coords"], reference)
    print(f"{name} SNR {snr}: error by region of the true motion", flush=True)
    print(regions.to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    for r in regions.itertuples():
        row.update({f"gain_{r.region}": r.gain, f"orthogonal_{r.region}": r.orthogonal_a})
    plot = out / f"{tag}_residue_error.png"
    residue_error_plot(plot, pred, gt["node_coords"], reference, f"{name}, SNR {snr}: per-residue error")
    print(f"per-residue error profile: {plot}", flush=True)
    if not args.no_ceiling:
        c = accuracy_ceiling(data, "image", n_queries=args.ceiling_queries, n_candidates=args.ceiling_candidates)
        row.update(ceiling_spearman=c.spearman, ceiling_rmsd=c.median_rmsd)
        if args.density_ceiling:
            d = accuracy_ceiling(data, "density", n_queries=args.ceiling_queries // 2, n_candidates=args.ceiling_candidates // 2)
            row.update(bayes_spearman=d.spearman, bayes_rmsd=d.median_rmsd, bayes_mean_spearman=d.posterior_spearman,
                       bayes_mean_rmsd=d.posterior_median_rmsd)
        row["rmsd_over_ceiling"] = row["median_rmsd"] / max(c.median_rmsd, 1e-6)
    row["rmsd_over_reference"] = row["median_rmsd"] / row["reference_rmsd"]
    print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["adk-md", "adk-md-mid", "adk-curved", "adk-2d"], choices=sorted(SETS))
    p.add_argument("--snr", type=float, nargs="+", default=[0.05, 0.01])
    p.add_argument("--particles", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--set", action="append", default=[], help="config override, e.g. --set model.z_dim=8")
    p.add_argument("--tag", default="", help="name suffix of the run folder (ablations)")
    p.add_argument("--no-ceiling", action="store_true")
    p.add_argument("--density-ceiling", action="store_true", help="also the Bayes ceiling with the all-atom density (slow)")
    p.add_argument("--ceiling-queries", type=int, default=200)
    p.add_argument("--ceiling-candidates", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_runs/accuracy")
    args = p.parse_args()
    rows = [run(name, snr, args) for name in args.sets for snr in args.snr]
    pd.set_option("display.width", 250)
    print("\nsummary")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
