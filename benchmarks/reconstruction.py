"""Evidence that the learned motion is real (issue: deformation-corrected map, half-sets, traversal).

On the curved AdK transition (``accuracy_sets.py``: all-atom density with CTF, closed reference, 6,000
particles, SNR 0.05) this trains ``train-atom --halfsets`` and prints:

1. **Corrected vs plain map**: the gold-standard corrected consensus map and the plain back-projection
   of the same particles (``cryodyna reconstruct``), each compared with the true all-atom map of the
   reference conformation (FSC inside the reconstruction's model mask, and inside a mask around the
   moving LID and NMP domains only; resolution at 0.5 / 0.143, FSC-AUC), next to the corrected map
   of one model trained on all particles (``train-atom`` defaults), the map corrected with the *true*
   motion of every particle (what the reconstruction itself can do with perfect deformations), the
   plain reconstruction of as many particles simulated in the reference state alone (the best any
   correction can do) and the half-set FSCs; back-projection speed with the machine's matmul rate
   measured in the same run.
2. **Half-set agreement vs truth**: per residue, the disagreement between the two half-set models
   against the true error of each particle's prediction (its own half's model vs its true CA);
   Pearson and Spearman correlation over residues.
3. **The reconstruction's own ceiling**: on a motion the nodes describe completely (the closed state
   moving along two elastic-network modes, +-4 Å; every atom moves with its residue), noiseless, the
   map corrected with the true node motion against the plain map and the true map.
4. **Traversal vs PC-1**: ``cryodyna traverse`` from the particle nearest the closed end to the one
   nearest the open end (true path coordinate) and the PC-1 trajectory, both decoded by half-1's
   model; for each, the mean over its frames of the RMSD to the nearest point of the true path, the
   mean over the true path of the RMSD to the nearest frame (coverage), and their mean.

Example (the issue's setting; ~20 min on 2 free cores):
    python benchmarks/reconstruction.py --particles 6000 --epochs 10 --snr 0.05
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accuracy_sets import ADK_LID, ADK_NMP, build, sequential_path
from scipy.stats import pearsonr, spearmanr
from throughput import matmul_gflops

from cryodyna.analysis.fsc import fsc
from cryodyna.analysis.reconstruct import reconstruct
from cryodyna.data.dataset import ParticleDataset
from cryodyna.analysis.latent import pca_trajectories
from cryodyna.models.sampling import decode_latents
from cryodyna.analysis.traverse import latent_path
from cryodyna.imaging.density import gaussian_density
from cryodyna.imaging.filters import model_mask
from cryodyna.io.mrc import read_volume, write_volume
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_structure
from cryodyna.simulate.adk import adk_states
from cryodyna.simulate.simulator import SimulationSpec, simulate
from cryodyna.structure.nodes import residue_nodes
from cryodyna.assembly.stage import load_run


def cryodyna(*args: str) -> None:
    """Run a cryodyna command (the user's path), failing loudly."""
    print("$ cryodyna " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "cryodyna.cli", *args], check=True)


def true_map(reference: Path, box: int, apix: float) -> np.ndarray:
    """The simulator's all-atom density (1 Å atom Gaussians, amplitude = atomic number)."""
    s = read_structure(reference)
    return gaussian_density(torch.as_tensor(s.coords), torch.as_tensor(s.atomic_number, dtype=torch.float32), 1.0,
                            box, apix).numpy()


def library_map(data: Path, reference: Path, out: Path, nodes=None) -> None:
    """Reconstruct ``data``'s particles into ``out`` (consensus.mrc, consensus_plain.mrc) with node
    coordinates ``nodes`` (P, N, 3) per particle (None: no motion), by the library directly."""
    table = read_particles(data / "particles.star")
    frame = residue_nodes(read_structure(reference)).coords
    n = len(table)
    source = torch.as_tensor(frame)[None].expand(n, -1, -1) if nodes is None else torch.as_tensor(nodes)
    rec = reconstruct(ParticleDataset(table), [np.arange(0, n, 2), np.arange(1, n, 2)], lambda k, idx: source[idx], frame, 3.8)
    out.mkdir(parents=True, exist_ok=True)
    write_volume(out / "consensus.mrc", rec.corrected.full, rec.apix)
    write_volume(out / "consensus_plain.mrc", rec.plain.full, rec.apix)


def representable_rows(folder: Path, reference: Path, particles: int) -> list[dict]:
    """Corrected (true node motion) and plain maps of particles whose every atom moves with its
    residue's node, against the true map of the undeformed state."""
    if not (folder / "particles.star").is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simulate([read_structure(reference)], SimulationSpec(n_particles=particles, box=64, apix=1.6, snr=None, density="atom",
                                                                 seed=2, normal_modes=2, mode_amplitude=4.0), folder)
    library_map(folder, reference, folder / "maps", np.load(folder / "ground_truth.npz")["node_coords"])
    truth = true_map(reference, 64, 1.6)
    mask = model_mask(residue_nodes(read_structure(reference)).coords, 64, 1.6)
    rows = []
    for label, name in (("corrected with the true motion", "consensus.mrc"), ("plain", "consensus_plain.mrc")):
        f = fsc(read_volume(folder / "maps" / name)[0], truth, 1.6, mask)
        rows.append({"map": label, "fsc_0.5_A": f.resolution(0.5), "fsc_0.143_A": f.resolution(0.143), "fsc_auc": f.auc,
                     "min_fsc_to_nyquist": float(f.fsc.min())})
    return rows


def map_rows(out: Path, truth: np.ndarray, apix: float, reference: Path) -> list[dict]:
    mask = read_volume(out / "consensus_mask.mrc")[0]
    nodes = residue_nodes(read_structure(reference))
    seq = nodes.template.res_seq[nodes.template.residue]
    moving = ((seq >= ADK_LID[0]) & (seq <= ADK_LID[1])) | ((seq >= ADK_NMP[0]) & (seq <= ADK_NMP[1]))
    domains = model_mask(nodes.coords[moving], truth.shape[0], apix)
    rows = []
    for label, path in (("corrected, half-set models (gold standard)", out / "consensus.mrc"),
                        ("corrected, one model of all particles", out / "all" / "consensus.mrc"),
                        ("corrected with the true motion", out / "true_motion" / "consensus.mrc"),
                        ("plain (same particles)", out / "consensus_plain.mrc"),
                        ("plain (reference state only)", out / "homogeneous" / "consensus_plain.mrc")):
        vol = read_volume(path)[0]
        f, g = fsc(vol, truth, apix, mask), fsc(vol, truth, apix, domains)
        rows.append({"map": label, "fsc_0.5_A": f.resolution(0.5), "fsc_0.143_A": f.resolution(0.143), "fsc_auc": f.auc,
                     "domains_fsc_0.5_A": g.resolution(0.5), "domains_fsc_auc": g.auc})
    return rows


def agreement_rows(run: Path, data: Path) -> dict:
    """Per-residue half-set disagreement against the true per-residue error of each particle's own-half prediction."""
    gt = np.load(data / "ground_truth.npz")["node_coords"]
    labels = np.load(run / "halfset.npy")
    err = np.zeros(gt.shape[1])
    for k, half in enumerate(("half-1", "half-2"), start=1):
        model = load_run(run / half).model
        z = np.load(sorted((run / half).glob("epoch-*"))[-1] / "z.npy")
        rows = np.flatnonzero(labels == k)
        err += ((decode_latents(model, z[rows]) - gt[rows]) ** 2).sum(-1).sum(0)
    err = np.sqrt(err / len(labels))
    table = pd.read_csv(run / "halfset_agreement.csv")
    dis = table.disagreement_a.to_numpy()
    return {"pearson_disagreement_vs_true_error": float(pearsonr(dis, err).statistic),
            "spearman_disagreement_vs_true_error": float(spearmanr(dis, err).statistic),
            "rms_disagreement_A": float(np.sqrt((dis**2).mean())), "rms_true_error_A": float(np.sqrt((err**2).mean())),
            "rms_motion_A": float(np.sqrt((table.motion_a.to_numpy() ** 2).mean()))}


def path_distances(frames: np.ndarray, path: np.ndarray) -> dict[str, float]:
    """RMSD (Å) from each frame (K, N, 3) to the nearest true-path point (M, N, 3) and back."""
    d = np.sqrt(((frames[:, None] - path[None]) ** 2).sum(-1).mean(-1))  # (K, M)
    to_path, coverage = d.min(1).mean(), d.min(0).mean()
    return {"to_true_path_A": float(to_path), "true_path_coverage_A": float(coverage), "mean_A": float((to_path + coverage) / 2)}


def traversal_rows(run: Path, data: Path, frames: int) -> list[dict]:
    half = run / "half-1"
    model = load_run(half).model
    z = np.load(sorted(half.glob("epoch-*"))[-1] / "z.npy")
    u = np.load(data / "ground_truth.npz")["path_coordinate"]
    start, end = int(np.argmin(u)), int(np.argmax(u))
    states = [residue_nodes(s).coords for s in sequential_path(*adk_states())]
    t = np.linspace(0, len(states) - 1, 401)
    lo = np.floor(t).astype(int).clip(max=len(states) - 2)
    path = np.stack([(1 - (ti - i)) * states[i] + (ti - i) * states[i + 1] for ti, i in zip(t, lo)])
    traverse, _ = latent_path(z, z[start], z[end], frames)
    pc1 = pca_trajectories(z, 1, frames)[0][0][0]
    rows = []
    for label, zs in (("traverse (nearest-neighbour graph)", traverse), ("PC-1 trajectory", pc1)):
        rows.append({"trajectory": label, **path_distances(decode_latents(model, zs), path)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--particles", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--set", action="append", default=[], help="config override, e.g. --set model.z_dim=8")
    p.add_argument("--out", default="bench_runs/reconstruction")
    args = p.parse_args()
    out = Path(args.out) / f"adk-curved_snr{args.snr}_n{args.particles}"
    data = build("adk-curved", out / "data", args.particles, args.snr)
    homogeneous = out / "homogeneous_data"
    if not (homogeneous / "particles.star").is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = read_structure(data / "reference.pdb")
            simulate([ref], SimulationSpec(n_particles=args.particles, box=64, apix=1.6, snr=args.snr, density="atom", seed=1),
                     homogeneous, mode="discrete")
    run = out / "run"
    if not (run / "halfset_agreement.csv").is_file():
        cryodyna("train-atom", str(data / "particles.star"), str(data / "reference.pdb"), "-o", str(run), "--halfsets",
                 "--epochs", str(args.epochs), *[a for s in args.set for a in ("--set", s)])
    cryodyna("reconstruct", str(run), "-o", str(out / "consensus.mrc"))
    run_all = out / "run_all"
    if not (run_all / "progress.json").is_file() or '"finished"' not in (run_all / "progress.json").read_text():
        cryodyna("train-atom", str(data / "particles.star"), str(data / "reference.pdb"), "-o", str(run_all),
                 "--epochs", str(args.epochs), *[a for s in args.set for a in ("--set", s)])
    cryodyna("reconstruct", str(run_all), "-o", str(out / "all" / "consensus.mrc"))
    library_map(data, data / "reference.pdb", out / "true_motion", np.load(data / "ground_truth.npz")["node_coords"])
    library_map(homogeneous, data / "reference.pdb", out / "homogeneous")
    gflops = matmul_gflops()
    summary = json.loads((out / "consensus.json").read_text())
    apix = summary["apix"]
    truth = true_map(data / "reference.pdb", summary["box"], apix)
    pd.set_option("display.width", 250)
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    print("\n1. maps vs the true map of the reference conformation (FSC inside the model mask; domains: LID + NMP only)")
    print(pd.DataFrame(map_rows(out, truth, apix, data / "reference.pdb")).to_string(index=False, float_format=fmt))
    print(f"half-set FSC=0.143: corrected {summary['corrected']['fsc_0.143_a']:.2f} Å, plain {summary['plain']['fsc_0.143_a']:.2f} Å "
          f"(FSC=0.5: {summary['corrected']['fsc_0.5_a']:.2f} / {summary['plain']['fsc_0.5_a']:.2f} Å)")
    print(f"back-projection: {summary['particles_per_s']:.0f} particles/s at {summary['box']}^3 "
          f"(matmul {gflops:.0f} GFLOP/s on this machine now)")
    print("\n2. half-set agreement vs the true per-residue error")
    print(pd.DataFrame([agreement_rows(run, data)]).to_string(index=False, float_format=fmt))
    print("\n3. the reconstruction with the true motion where nodes describe it (closed state + 2 normal modes, noiseless)")
    print(pd.DataFrame(representable_rows(out / "modes_data", data / "reference.pdb", args.particles // 6)).to_string(
        index=False, float_format=fmt))
    print("\n4. trajectories between the end states vs the true path")
    print(pd.DataFrame(traversal_rows(run, data, args.frames)).to_string(index=False, float_format=fmt))


if __name__ == "__main__":
    main()
