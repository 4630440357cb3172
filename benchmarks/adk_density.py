"""Benchmark of ``train-density`` on the AdK closed <-> open example against the ground-truth maps,
and against cryoDRGN ``train_vae`` (PyPI) on the same images in the same run.

Data: AdK continuous path, all-atom density, CTF, noise (``cryodyna.simulate``).  Ground truth: the
all-atom density of the true structure at path coordinates 0.1, 0.3, 0.5, 0.7, 0.9, on the image grid.
Methods, all with the same volume-network size and number of epochs:

* ``cryodyna / true z``: train-density on the simulator's path coordinate;
* ``cryodyna / train-atom z``: train-density on the z.npy of a train-atom run on the same data;
* ``cryoDRGN train_vae``: its own encoder learns z (``--zdim``), same decoder width/depth.

For each conformation the map of a method is generated at the mean latent of the particles whose
true path coordinate lies within +-0.1 (the true coordinate itself for ``true z``) and compared with
the truth: FSC-AUC (area under the FSC up to Nyquist, 1 = perfect) and the FSC = 0.5 resolution.

Example:
    python benchmarks/adk_density.py --particles 4000 --epochs 10 --hidden 128 --out bench_runs/adk_density
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from adk_data import adk_dataset, print_table

from cryodyna.analysis.fsc import fsc
from cryodyna.models.sampling import render_volume
from cryodyna.config import load_config
from cryodyna.imaging.density import gaussian_density
from cryodyna.io.cryodrgn import write_cryodrgn
from cryodyna.io.mrc import read_volume
from cryodyna.io.read import read_particles
from cryodyna.simulate.simulator import SimulationSpec
from cryodyna.assembly.volume import load_density_run
from cryodyna.pipelines.training import train_density
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom

CONFORMATIONS = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
HALF_WIDTH = 0.1


def truth_maps(closed, opened, args) -> list[np.ndarray]:
    """All-atom density (atomic number, sigma = the simulator's atom width) at each conformation."""
    amps = torch.as_tensor(closed.atomic_number, dtype=torch.float32)
    spec = SimulationSpec()
    return [gaussian_density(torch.as_tensor(closed.coords * (1 - u) + opened.coords * u, dtype=torch.float32), amps,
                             spec.atom_sigma, args.box, args.apix).numpy() for u in CONFORMATIONS]


def bin_latents(z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Mean latent (K, z_dim) of the particles within +-HALF_WIDTH of each conformation."""
    return np.stack([z[np.abs(u - c) <= HALF_WIDTH].mean(0) for c in CONFORMATIONS])


def score(name: str, maps: list[np.ndarray], truths: list[np.ndarray], apix: float, minutes: float) -> list[dict]:
    rows = []
    for c, m, t in zip(CONFORMATIONS, maps, truths):
        r = fsc(m, t, apix)
        rows.append({"method": name, "conformation": c, "fsc_auc": r.auc, "res_fsc05_A": r.resolution(0.5),
                     "train_minutes": minutes})
    return rows


def training_minutes(run: Path, batch: int) -> float:
    """Training wall time of a run from its metrics: images seen / images per second."""
    m = pd.read_csv(run / "metrics.csv")
    train = m[(m.phase == "train") & (m.name == "images_per_s")]
    return float(train.step.iloc[-1]) * batch / float(train.value.iloc[-1]) / 60


def run_cryodyna_density(data: Path, z: np.ndarray, zbins: np.ndarray, out: Path, args, restart: bool = True):
    """Train (or, without ``restart``, reuse a finished run of) train-density on latents ``z``; maps
    at ``zbins`` and the training minutes."""
    np.save(out.with_suffix(".z.npy"), z.astype(np.float32))
    cfg = load_config("train-density", None, [f"model.hidden={args.hidden}", f"model.layers={args.layers}",
                                              f"optim.epochs={args.epochs}", f"optim.eval_every={args.epochs}",
                                              f"optim.batch_size={args.batch}", f"optim.lr={args.lr}",
                                              "analysis.kmeans=2", "analysis.pcs=1", "analysis.pc_frames=2"])
    train_density(data / "particles.star", out.with_suffix(".z.npy"), out, cfg, restart=restart)
    model, info = load_density_run(out)
    return [render_volume(model, zb, info["apix"]) for zb in zbins], training_minutes(out, args.batch)


def run_cryodrgn(data: Path, u: np.ndarray, out: Path, args) -> tuple[list[np.ndarray], float] | str:
    exe = shutil.which("cryodrgn") if args.cryodrgn is None else args.cryodrgn
    if exe is None or not Path(exe).exists():
        return "cryodrgn not installed (pip install cryodrgn, or pass --cryodrgn PATH)"
    out.mkdir(parents=True, exist_ok=True)
    write_cryodrgn(out / "poses.pkl", out / "ctf.pkl", read_particles(data / "particles.star"))
    cmd = [exe, "train_vae", str(data / "particles.mrcs"), "--poses", str(out / "poses.pkl"), "--ctf", str(out / "ctf.pkl"),
           "--zdim", str(args.cryodrgn_zdim), "-n", str(args.epochs), "-o", str(out / "train"),
           "--enc-dim", str(args.hidden), "--enc-layers", str(args.layers), "--dec-dim", str(args.hidden),
           "--dec-layers", str(args.layers), "-b", str(args.batch), "--lr", str(args.lr), "--no-analysis", "--seed", "1"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    minutes = (time.perf_counter() - start) / 60
    if proc.returncode != 0:
        return f"cryodrgn train_vae failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
    final = args.epochs - 1
    z = pd.read_pickle(out / "train" / f"z.{final}.pkl") if (out / "train" / f"z.{final}.pkl").exists() else pd.read_pickle(out / "train" / "z.pkl")
    np.savetxt(out / "zbins.txt", bin_latents(np.asarray(z), u))
    weights = out / "train" / (f"weights.{final}.pkl" if (out / "train" / f"weights.{final}.pkl").exists() else "weights.pkl")
    proc = subprocess.run([exe, "eval_vol", str(weights), "-c", str(out / "train" / "config.yaml"), "--zfile",
                           str(out / "zbins.txt"), "-o", str(out / "vols"), "--Apix", str(args.apix)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return f"cryodrgn eval_vol failed: {proc.stderr.strip().splitlines()[-1]}"
    vols = sorted((out / "vols").glob("vol_*.mrc"))
    return [read_volume(v)[0] for v in vols], minutes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--particles", type=int, default=4000)
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--apix", type=float, default=2.0)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=10, help="epochs of every volume-network training")
    p.add_argument("--hidden", type=int, default=128, help="volume network (and cryoDRGN encoder/decoder) width")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--atom-minutes", type=float, default=5.0, help="train-atom budget for its z")
    p.add_argument("--cryodrgn", default=None, help="path of the cryodrgn executable (default: on PATH)")
    p.add_argument("--cryodrgn-zdim", type=int, default=8)
    p.add_argument("--skip-cryodrgn", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_runs/adk_density")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    out = Path(args.out)
    data = out / "data"
    closed, opened, u = adk_dataset(data, args.particles, args.box, args.apix, args.snr, args.seed)
    truths = truth_maps(closed, opened, args)
    rows = []

    # the true-z run depends only on the data: a finished one is reused
    maps, minutes = run_cryodyna_density(data, u[:, None], CONFORMATIONS[:, None], out / "density_true_z", args, restart=False)
    rows += score("cryodyna / true z", maps, truths, args.apix, minutes)

    atom_cfg = resolved_config(None, [], 100)
    start = time.perf_counter()
    folder = train_atom(data / "particles.star", data / "reference.pdb", out / "atom", atom_cfg, restart=True,
                        time_limit_minutes=args.atom_minutes)
    atom_minutes = (time.perf_counter() - start) / 60
    z_atom = np.load(folder / "z.npy")
    maps, minutes = run_cryodyna_density(data, z_atom, bin_latents(z_atom, u), out / "density_atom_z", args)
    rows += score("cryodyna / train-atom z", maps, truths, args.apix, minutes + atom_minutes)

    if not args.skip_cryodrgn:
        result = run_cryodrgn(data, u, out / "cryodrgn", args)
        if isinstance(result, str):
            print(f"cryoDRGN: {result}")
        else:
            rows += score("cryoDRGN train_vae", *result[:1], truths, args.apix, result[1])

    table = print_table(rows)
    print()
    print(table.groupby("method", sort=False)[["fsc_auc", "res_fsc05_A", "train_minutes"]].mean()
          .to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
