"""How well do the images pin down a state? The systematic error of a trained run, next to the image loss.

Per region of the true motion (as ``accuracy.py``: thirds of the 95th percentile of the true
displacement from the reference) it prints the RMS error of the decoded structures and the part of it that is the
same for all the region's particles (the RMS of their mean error), with the residues where that is
largest, and how many elastic-network pairs are 1-2 Å and more than 2 Å off their reference distance in the
true and in the decoded structures.  For the particles of one narrow bin of the true path coordinate (default: the far end), compare the
mean true structure with the mean decoded structure of a ``train-atom`` run (``accuracy.py`` output)
by their image loss (training image model, true poses) over those particles' images, and fit the
residue Gaussians freely to the same images (Adam, no priors) from both.  When the true and the
decoded structure score alike while they are an ångström apart, and the free fit drifts further for
a lower loss, the images do not determine that difference: the priors and the decoder do.

Example:
    python benchmarks/flatness.py bench_runs/accuracy/adk-md_snr0.05_n6000 run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from accuracy import REGIONS, motion_regions

from cryodyna.assembly.stage import load_run
from cryodyna.data.particles import prepare_particles
from cryodyna.io.read import read_particles
from cryodyna.models.sampling import decode_latents
from cryodyna.physics.restraints import pair_distances
from cryodyna.simulate.ceiling import node_rmsd


def motion_of(truth: np.ndarray, reference: np.ndarray, node: int) -> float:
    """Length (Å) of the mean true displacement of ``node`` from the reference over structures (K, N, 3)."""
    return float(np.linalg.norm((truth[:, node] - reference[node]).mean(0)))


def elastic_deviation_shares(coords: np.ndarray, reference: np.ndarray, pairs: torch.Tensor) -> tuple[float, float]:
    """Fractions of the (structure, elastic pair) entries of structures (K, N, 3) whose distance is 1-2 Å and
    more than 2 Å off its reference value."""
    ref = pair_distances(torch.as_tensor(reference)[None].float(), pairs)[0]
    dev = (pair_distances(torch.as_tensor(coords).float(), pairs) - ref).abs().numpy()
    return float(((dev > 1) & (dev <= 2)).mean()), float((dev > 2).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("set_dir", type=Path, help="a set folder of accuracy.py (with data/ and the run)")
    p.add_argument("run", help="the run folder's name inside it, e.g. run or run-TAG")
    p.add_argument("--bin", type=float, nargs=2, default=[0.97, 1.0], help="quantiles of the path coordinate")
    p.add_argument("--max-particles", type=int, default=400)
    p.add_argument("--steps", type=int, default=150, help="Adam steps of the free fit")
    args = p.parse_args()
    gt = np.load(args.set_dir / "data" / "ground_truth.npz")
    u, truth = gt["path_coordinate"], gt["node_coords"]
    run = load_run(args.set_dir / args.run)
    z = np.load(args.set_dir / args.run / "latest" / "z.npy")
    decoded = decode_latents(run.model, z)
    reference = run.model.reference.numpy()
    motion, region = motion_regions(truth, reference)
    elastic_pairs = run.graph.tensors("cpu")["elastic"]
    for k, name in enumerate(REGIONS):
        part = region == k
        error = decoded[part] - truth[part]
        systematic = np.sqrt((error.mean(0) ** 2).sum(-1))  # (N,) the mean error of the region's particles
        worst = np.argsort(-systematic)[:6]
        print(f"{name} ({part.sum()} particles, median true motion {np.median(motion[part]):.2f} Å): RMS error "
              f"{np.sqrt((error ** 2).sum(-1).mean()):.3f} Å, of it systematic {np.sqrt((systematic ** 2).mean()):.3f} Å; largest at "
              + ", ".join(f"residue {i + 1} ({systematic[i]:.2f} Å, true motion {motion_of(truth[part], reference, i):.2f} Å)" for i in worst))
        sample = np.flatnonzero(part)[:: max(1, part.sum() // 300)]
        (t1, t2), (d1, d2) = (elastic_deviation_shares(x[sample], reference, elastic_pairs) for x in (truth, decoded))
        print(f"  elastic-network pairs off their reference distance by 1-2 Å / more than 2 Å: true {100 * t1:.1f} % / "
              f"{100 * t2:.1f} %, decoded {100 * d1:.1f} % / {100 * d2:.1f} %")
    lo, hi = np.quantile(u, args.bin)
    sel = np.flatnonzero((u >= lo) & (u <= hi))[: args.max_particles]
    true_mean = truth[sel].mean(0)
    decoded_mean = decoded[sel].mean(0)
    prepared = prepare_particles(read_particles(args.set_dir / "data" / "particles.star").subset(sel), None, 1.0, False)
    model = run.image_model()
    batch = prepared.batch(torch.arange(len(sel)), "cpu")
    target = model.target(batch["images"])

    def loss(coords: torch.Tensor) -> torch.Tensor:
        return model.loss(model.predict(coords.expand(len(sel), -1, -1), batch["poses"], batch["ctf"]), target)

    print(f"{len(sel)} particles, path coordinate {lo:.3f}-{hi:.3f}; true spread {node_rmsd(truth[sel], true_mean).mean():.3f} Å")
    print(f"decoded mean vs true mean: {node_rmsd(decoded_mean, true_mean):.3f} Å")
    with torch.no_grad():
        print(f"image loss: true mean {float(loss(torch.as_tensor(true_mean))):.5f}, decoded mean "
              f"{float(loss(torch.as_tensor(decoded_mean))):.5f}, reference {float(loss(run.model.reference)):.5f}")
    for name, start in (("true mean", true_mean), ("decoded mean", decoded_mean)):
        coords = torch.tensor(start, requires_grad=True)
        opt = torch.optim.Adam([coords], lr=0.05)
        for _ in range(args.steps):
            opt.zero_grad()
            value = loss(coords)
            value.backward()
            opt.step()
        fitted = coords.detach().numpy()
        print(f"free fit from the {name}: image loss {float(value.detach()):.5f}, {node_rmsd(fitted, true_mean):.3f} Å from the true mean")


if __name__ == "__main__":
    main()
