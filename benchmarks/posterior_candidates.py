"""Posterior-mean latents of a finished run with other numbers of candidates, from the same trained model.

Re-scores the encoder's latents (``z_encoder.npy`` of the run's last evaluation, written by
``accuracy.py`` runs) with ``K`` candidates each (``posterior_latents``, as the final evaluation does)
and prints |Spearman(PC1, path)|, the median / 90th-percentile CA RMSD to the truth, the gain and
orthogonal error per region, and the time; ``--passes 2`` repeats it with the first pass's posterior
means as the candidates.

Example:
    python benchmarks/posterior_candidates.py bench_runs/accuracy/adk-md_snr0.01_n6000 run --k 16 32 64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from accuracy import motion_diagnostics, structure_metrics
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from cryodyna.assembly.stage import load_run
from cryodyna.data.particles import prepare_particles
from cryodyna.io.read import read_particles
from cryodyna.models.sampling import decode_latents
from cryodyna.train.latent_posterior import draw_candidates, posterior_latents


def report(name: str, z: np.ndarray, model, gt, reference: np.ndarray) -> None:
    pred = decode_latents(model, z)
    m = structure_metrics(pred, gt["node_coords"], reference)
    regions = motion_diagnostics(pred, gt["node_coords"], reference)
    print(f"{name}: |Spearman| {abs(spearmanr(PCA(1).fit_transform(z)[:, 0], gt['path_coordinate']).statistic):.3f}, "
          f"median {m['median_rmsd']:.3f} Å, p90 {m['p90_rmsd']:.3f} Å, gain near/middle/far "
          f"{' / '.join(f'{g:.2f}' for g in regions.gain)}, orthogonal far {regions.orthogonal_a.iloc[-1]:.2f} Å", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("set_dir", type=Path, help="a set folder of accuracy.py (with data/ and the run)")
    p.add_argument("run", help="the run folder's name inside it")
    p.add_argument("--k", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--passes", type=int, default=1)
    args = p.parse_args()
    gt = np.load(args.set_dir / "data" / "ground_truth.npz")
    run = load_run(args.set_dir / args.run)
    z = torch.as_tensor(np.load(args.set_dir / args.run / "latest" / "z_encoder.npy"))
    prepared = prepare_particles(read_particles(args.set_dir / "data" / "particles.star"), None, 1.0, False)
    image_model = run.image_model()
    reference = run.model.reference.numpy()
    report("encoder latents", z.numpy(), run.model, gt, reference)
    seed = run.cfg.optim.seed
    for k in args.k:
        pool = z
        for n in range(args.passes):
            start = time.perf_counter()
            mean, effective = posterior_latents(run.model, image_model, z, draw_candidates(pool, k, seed),
                                                lambda rows: prepared.batch(rows, "cpu"))
            report(f"K={k}, pass {n + 1} ({time.perf_counter() - start:.0f} s, median effective candidates "
                   f"{float(effective.median()):.1f})", mean.numpy(), run.model, gt, reference)
            pool = mean


if __name__ == "__main__":
    main()
