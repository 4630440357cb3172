"""The accuracy ceiling of any simulated dataset with ground truth (``cryodyna simulate`` output).

For a sample of particles, every candidate true conformation is rendered in the particle's own
pose and CTF and scored against its image (``cryodyna.simulate.ceiling``); the best candidate is
the estimate.  Prints the best achievable |Spearman(estimate, path coordinate)| and the median /
90th-percentile CA RMSD (Å) with the training image model (residue Gaussians) and, unless
``--image-only``, with the simulator's all-atom density (Bayes-optimal).

Example:
    python benchmarks/oracle.py bench_runs/accuracy/adk-curved_snr0.05_n6000/data
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from cryodyna.simulate.ceiling import accuracy_ceiling


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="folder with particles.star and ground_truth.npz")
    p.add_argument("--queries", type=int, default=200, help="particles scored")
    p.add_argument("--candidates", type=int, default=600, help="true conformations tried per particle")
    p.add_argument("--lowpass", type=float, default=None, help="[Å] low-pass of the image model (default: training's)")
    p.add_argument("--image-only", action="store_true", help="skip the all-atom density ceiling (slow)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rows = []
    for model in ["image"] if args.image_only else ["image", "density"]:
        start = time.perf_counter()
        c = accuracy_ceiling(args.data, model, n_queries=args.queries, n_candidates=args.candidates,
                             seed=args.seed, lowpass=args.lowpass)
        rows.append({**asdict(c), "seconds": time.perf_counter() - start})
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
