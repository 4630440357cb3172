"""Bead level (``train-cg``) against the residue level (``train-atom``) on an AdK transition.

Data: ``accuracy_sets.py``'s ``adk-curved`` set (all-atom density with CTF, sequential LID-then-NMP
opening, uneven occupancy, closed reference; 6,000 particles at SNR 0.05 by default) or, with
``--data-set adk-md`` / ``adk-md-mid``, its targeted-MD path (reference at the closed end / middle
frame).  Truth per particle: its all-atom structure (the
simulator's landscape) and that structure's MARTINI beads (each path frame mapped as martinize2 maps
it, interpolated exactly as the atoms are).  Both stages train for the
same number of epochs with default settings; then, for every particle decoded from its latent:

* |Spearman(PC1, true path coordinate)|;
* median / 90th-percentile RMSD of the backbone beads (BB) to the true BB (map frame, no
  superposition), next to the reference model's and the residue level's CA RMSD on the same data;
* per region of the true motion (near the reference, middle, far end; ``accuracy.py``'s regions),
  the gain (projection of the predicted on the true displacement) and the orthogonal error, for
  the BB beads and for the residue level's CA atoms;
* median heavy-atom RMSD of the back-mapped all-atom structures to the true ones (a sample of
  particles), with back-mapping speed (models/s);
* MARTINI bonded energy per bead of the predictions over that of the minimised reference;
* the closest non-bonded bead pair in units of its Lennard-Jones sigma, and the fraction of
  structures with a pair closer than 0.8 sigma;
* images/s of both stages (the cost ratio at equal epochs), and with ``--step-cost`` the time of one
  training step of each stage (batch 16, 64 px, a deformed state), timed interleaved in one process
  so that a shared machine slows both alike, next to the machine's matmul rate.

Example (the issue's setting; ~40 min on 2 free cores):
    python benchmarks/adk_bead.py --particles 6000 --epochs 10 --snr 0.05
    python benchmarks/adk_bead.py --particles 6000 --epochs 10 --snr 0.05 --set loss.elastic_scope=all --tag all
    python benchmarks/adk_bead.py --particles 6000 --epochs 10 --snr 0.05 --data-set adk-md
    python benchmarks/adk_bead.py --step-cost          # only the interleaved step timing (a minute)
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from accuracy import motion_diagnostics
from accuracy_sets import build, sequential_path
from adk_data import images_per_s, print_table
from scipy.spatial import cKDTree
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from throughput import make_trainer, matmul_gflops

from cryodyna.analysis.backmap import backmap, run_backmapping
from cryodyna.models.sampling import decode_latents
from cryodyna.simulate.adk import adk_md_frames, adk_states
from cryodyna.simulate.ceiling import node_rmsd
from cryodyna.simulate.landscape import Landscape
from cryodyna.structure.martini import bead_position_weights, martinize
from cryodyna.assembly.stage import load_run
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom, train_cg

BONDED = ("bond", "angle", "proper", "improper")


def bead_frames(out: Path, data_set: str) -> np.ndarray:
    """The beads (F, N, 3) of every frame of ``data_set``'s true path (cached): :func:`curved_bead_frames`
    or, for the MD path, martinize2's beads of the first frame moved by the mapped displacement of
    every later frame's atoms (the mapping is linear in the atoms; martinize2 takes ~25 s a frame)."""
    cache = out / "bead_frames.npy"
    if not cache.is_file():
        if data_set in ("adk-md", "adk-md-mid"):
            frames = adk_md_frames()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cg = martinize(frames[0])
            weights = bead_position_weights(frames[0], cg)
            np.save(cache, np.stack([cg.mapped + weights @ (f.coords - frames[0].coords) for f in frames]))
        else:
            np.save(cache, curved_bead_frames())
    return np.load(cache)


def curved_bead_frames() -> np.ndarray:
    """martinize2's bead positions (F, N, 3) along the curved path.  Each path frame moves
    every atom of a residue by the same fraction t of its closed -> open displacement, and a bead
    is a fixed combination of its residue's atoms, so the frame's beads are the closed and open
    states' beads mixed by the same t (martinize2 itself cannot map the strained middle frames)."""
    closed, opened = adk_states()
    cg_closed, cg_open = martinize(closed), martinize(opened)
    move = opened.coords - closed.coords
    moving = (move**2).sum(1) > 1e-4
    frames = []
    for frame in sequential_path(closed, opened):
        t_atom = ((frame.coords - closed.coords) * move).sum(1) / np.maximum((move**2).sum(1), 1e-12)
        t_res = np.bincount(closed.residue[moving], t_atom[moving], closed.n_residues) / np.maximum(
            np.bincount(closed.residue[moving], minlength=closed.n_residues), 1)
        t = t_res[cg_closed.residue][:, None]
        frames.append(cg_closed.mapped * (1 - t) + cg_open.mapped * t)
    return np.stack(frames)


def bonded_per_bead(forcefield, coords: np.ndarray) -> float:
    """Mean MARTINI bonded energy (kJ/mol) per bead over structures (K, N, 3)."""
    with torch.no_grad():
        frames = torch.as_tensor(coords, dtype=torch.float32)
        terms = forcefield.terms(frames, forcefield.neighbours(frames))
    return float(sum(terms[t].sum(1).mean() for t in BONDED)) / coords.shape[1]


def closest_pairs(forcefield, coords: np.ndarray) -> np.ndarray:
    """Per structure (K,), the smallest distance / LJ sigma over non-excluded bead pairs."""
    excluded = {tuple(p) for p in forcefield.excluded.tolist()}
    out = []
    for x in coords:
        pairs = np.array([p for p in cKDTree(x).query_pairs(8.0) if p not in excluded], dtype=np.int64)
        sigma = forcefield.pair_parameters(torch.as_tensor(pairs))[0].numpy()
        out.append((np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1) / sigma).min())
    return np.array(out)


def step_cost(repeats: int = 20, batch: int = 16, box: int = 64) -> None:
    """Median step time of train-atom and train-cg on AdK, interleaved, with the matmul rate."""
    closed = adk_states()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cg = martinize(closed)
    times: dict[str, list[float]] = {"atom": [], "cg": []}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {s: make_trainer(s, closed, cg, box, batch, "cpu", [], tmp, deformed=True) for s in times}
        for trainer, data in trainers.values():
            trainer.train_step(data)  # warm-up
        for _ in range(repeats):
            for stage, (trainer, data) in trainers.items():
                start = time.perf_counter()
                trainer.train_step(data)
                times[stage].append(time.perf_counter() - start)
    ms = {s: 1000 * float(np.median(t)) for s, t in times.items()}
    print(f"step (batch {batch}, {box} px, deformed): train-atom {ms['atom']:.1f} ms ({1000 * batch / ms['atom']:.0f} images/s), "
          f"train-cg {ms['cg']:.1f} ms ({1000 * batch / ms['cg']:.0f} images/s): {ms['cg'] / ms['atom']:.2f}x; "
          f"matmul {matmul_gflops():.0f} GFLOP/s")


def print_regions(title: str, pred: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> None:
    """Print ``accuracy.motion_diagnostics`` (gain and orthogonal error per region of the true motion)
    of predicted nodes (K, N, 3) against the truth (K, N, 3) around the model's reference (N, 3)."""
    print(f"{title}: error by region of the true motion")
    print(motion_diagnostics(pred, truth, reference).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def train(kind: str, data: Path, folder: Path, epochs: int, settings: list[str]) -> tuple[Path, float]:
    """Train (or reuse a finished run); returns its last evaluation folder and minutes spent now."""
    start = time.perf_counter()
    fn = train_cg if kind == "cg" else train_atom
    cfg = resolved_config(None, settings, epochs, f"train-{kind}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        last = fn(data / "particles.star", data / "reference.pdb", folder, cfg)
    return last, (time.perf_counter() - start) / 60


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--particles", type=int, default=6000)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--data-set", choices=["adk-curved", "adk-md", "adk-md-mid"], default="adk-curved", help="the benchmark set (accuracy_sets.py)")
    p.add_argument("--allatom-sample", type=int, default=500, help="particles whose all-atom structures are compared")
    p.add_argument("--set", action="append", default=[], help="train-cg config override, e.g. --set loss.elastic_scope=all")
    p.add_argument("--tag", default="", help="name suffix of the train-cg run folder (ablations)")
    p.add_argument("--atom-run", default=None, help="a finished train-atom run (default settings, same epochs) on the same "
                   "data to compare with, instead of training one (e.g. benchmarks/reconstruction.py's run_all)")
    p.add_argument("--out", default="bench_runs/adk_bead")
    p.add_argument("--step-cost", action="store_true", help="only time one training step of each stage, interleaved")
    args = p.parse_args()
    if args.step_cost:
        step_cost()
        return
    out = Path(args.out) / f"{args.data_set}_snr{args.snr}_n{args.particles}"
    data = build(args.data_set, out / "data", args.particles, args.snr)
    gt = np.load(data / "ground_truth.npz")
    landscape = Landscape.from_arrays(gt)
    assert landscape.n_modes == 0, "the bead truth interpolates path frames; sets with normal modes need more"
    params, u = gt["params"], gt["path_coordinate"]
    frames = bead_frames(out, args.data_set)
    true_beads = dataclasses.replace(landscape, node_of_state=frames, modes=np.zeros((0, frames.shape[1], 3))).nodes(params)

    cg_folder, cg_minutes = train("cg", data, out / f"cg{'-' + args.tag if args.tag else ''}", args.epochs, args.set)
    task = load_run(cg_folder.parent)
    model = task.model
    z = np.load(cg_folder / "z.npy")
    pred = decode_latents(model, z)
    bb = np.flatnonzero(task.graph.template.atom_name == "BB")
    rmsd = node_rmsd(pred[:, bb], true_beads[:, bb])
    reference = model.reference.cpu().numpy()
    sample = np.random.default_rng(0).choice(len(z), min(args.allatom_sample, len(z)), replace=False)
    structure, cg = run_backmapping(cg_folder.parent)
    start = time.perf_counter()
    allatom = backmap(structure, cg, pred[sample])
    backmap_rate = len(sample) / (time.perf_counter() - start)
    heavy = structure.atomic_number > 1
    aa_rmsd = node_rmsd(allatom[:, heavy], landscape.points(params[sample])[:, heavy])
    closest = closest_pairs(task.forcefield, pred[sample[:200]])
    cg_row = {
        "stage": "train-cg" + (f" ({args.tag})" if args.tag else ""),
        "spearman_pc1": abs(spearmanr(PCA(1).fit_transform(z)[:, 0], u).statistic),
        "median_rmsd": float(np.median(rmsd)), "p90_rmsd": float(np.percentile(rmsd, 90)),
        "reference_rmsd": float(np.median(node_rmsd(reference[None, bb], true_beads[:, bb]))),
        "allatom_median_rmsd": float(np.median(aa_rmsd)),
        "bonded_over_minimised": bonded_per_bead(task.forcefield, pred[sample]) / bonded_per_bead(task.forcefield, reference[None]),
        "min_pair_over_sigma": float(closest.min()), "frac_below_0.8_sigma": float((closest < 0.8).mean()),
        "images_per_s": images_per_s(cg_folder.parent), "minutes": cg_minutes,
    }

    atom_folder, atom_minutes = train("atom", data, Path(args.atom_run) if args.atom_run else out / "atom", args.epochs, [])
    atom_model = load_run(atom_folder.parent).model
    z_atom = np.load(atom_folder / "z.npy")
    atom_pred = decode_latents(atom_model, z_atom)
    ca = node_rmsd(atom_pred, gt["node_coords"])
    atom_row = {"stage": "train-atom (CA)", "spearman_pc1": abs(spearmanr(PCA(1).fit_transform(z_atom)[:, 0], u).statistic),
                "median_rmsd": float(np.median(ca)), "p90_rmsd": float(np.percentile(ca, 90)),
                "reference_rmsd": float(np.median(node_rmsd(atom_model.reference.cpu().numpy()[None], gt["node_coords"]))),
                "images_per_s": images_per_s(atom_folder.parent), "minutes": atom_minutes}
    print_table([cg_row, atom_row])
    print_regions("train-cg, BB beads", pred[:, bb], true_beads[:, bb], reference[bb])
    print_regions("train-atom, CA", atom_pred, gt["node_coords"], atom_model.reference.cpu().numpy())
    print(f"back-mapping: {backmap_rate:.0f} all-atom models/s; cost of train-cg relative to train-atom at equal epochs "
          f"(images/s ratio): {atom_row['images_per_s'] / cg_row['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
