"""Training-step throughput of ``train-atom`` and ``train-cg`` (images/s, peak memory) for several image
sizes and model sizes, on CPU and on CUDA when present, next to the machine's matmul rate and the
step's matmul FLOP floor measured in the same process.

Models are made here by tiling the adenylate-kinase closed state (214 residues; 476 Martini 3 beads,
mapped once by martinize2) on a grid: 1, 10 and 100 copies give about 200, 2,000 and 20,000 residues
(about 480, 4,800 and 48,000 beads) with realistic secondary-structure blocks.  Images are random
(throughput does not depend on their content).  The decoder's output layer is randomised so that the
step is timed on a deformed model (the bead neighbour list grows with motion).  Each row repeats one
training step on one batch held on the device (``--steps`` timed steps after two warm-up steps), in a
fresh process (so that its peak memory is its own).  Per row:

* ``gflop_step``: matmul/convolution FLOPs of one step, forward and backward (torch's FLOP counter);
* ``matmul_gflops``: float32 matmul rate of this machine, measured in the same process;
* ``floor_img_s``: images/s if the step did nothing but its matmuls at that rate; ``pct_floor``: the
  measured rate as a percentage of it.

``--baseline REV`` times the same rows with this package at git revision REV (a temporary worktree,
imported in place of the installed package) right after the current one, and prints the ratio: a
side-by-side comparison on the same machine in the same run.  The reference CryoDyna code is not
installable offline (it is not on PyPI); to time it side by side, run its AdK example's training for a
few hundred steps at batch 64 on the same machine during this benchmark and compare its it/s x 64.

Example:
    python benchmarks/throughput.py                       # all sizes, both stages, default device
    python benchmarks/throughput.py --stages atom --boxes 64 --copies 1 --baseline 7059be9
    python benchmarks/throughput.py --stages atom --boxes 128 --copies 1 --device cuda --batch 256
    python benchmarks/throughput.py --device cuda --set optim.precision=bf16 --set optim.compile=true
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from cryodyna import distributed
from cryodyna.config import load_config
from cryodyna.io.itp import concatenate
from cryodyna.io.structure import Structure
from cryodyna.simulate.adk import adk_states
from cryodyna.structure.martini import CGModel, martinize
from cryodyna.assembly.cg_prep import forcefield_of
from cryodyna.imaging.image_model import ImageModel
from cryodyna.data.particles import PreparedParticles
from cryodyna.assembly.priors import build_priors
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.assembly.model import bead_graph, build_model, residue_graph
from cryodyna.train.trainer import DeformationTrainer


def grid_offsets(copies: int, spacing: float = 60.0) -> np.ndarray:
    """(copies, 3) Å translations on a centred cubic grid."""
    side = int(np.ceil(copies ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:copies]
    return (grid - grid.mean(0)) * spacing


def tiled(structure: Structure, copies: int) -> Structure:
    """``copies`` translated copies of ``structure`` on a cubic grid, one chain each."""
    parts = {k: [] for k in vars(structure)}
    for c, offset in enumerate(grid_offsets(copies)):
        for k, v in vars(structure).items():
            if k == "coords":
                v = v + offset
            elif k == "residue":
                v = v + c * structure.n_residues
            elif k == "chain_id":
                v = np.full(len(v), f"C{c}", dtype=object)
            parts[k].append(v)
    return Structure(**{k: np.concatenate(v) for k, v in parts.items()})


def tiled_cg(cg: CGModel, n_residues: int, copies: int) -> CGModel:
    """The CG model of :func:`tiled` copies (same offsets), without running martinize2 again."""
    offsets = grid_offsets(copies)
    return replace(
        cg, coords=np.concatenate([cg.coords + o for o in offsets]), mapped=np.concatenate([cg.mapped + o for o in offsets]),
        topology=concatenate([cg.topology] * copies), residue=np.concatenate([cg.residue + c * n_residues for c in range(copies)]),
        chain_id=np.concatenate([np.full(cg.n_beads, f"C{c}", dtype=object) for c in range(copies)]),
        electrons=np.tile(cg.electrons, copies), sizes=np.tile(cg.sizes, copies), itp={}, ss=cg.ss * copies)


def make_trainer(stage: str, structure: Structure, cg: CGModel | None, box: int, batch: int, device: str,
                 settings: list[str], run_dir: str, deformed: bool = False):
    """(trainer, one batch of random images on its device) for ``stage``; ``deformed``: a random
    decoder output layer, so that the step is timed away from the undeformed start (the bead
    neighbour list grows with motion)."""
    overrides = [f"optim.batch_size={batch}", f"optim.device={device}", "optim.holdout_fraction=0", *settings]
    cfg = load_config("train-atom" if stage == "atom" else "train-cg", overrides=overrides)
    dev = distributed.resolve_device(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = residue_graph(structure, cfg) if stage == "atom" else bead_graph(structure, cg, cfg)
        priors = build_priors(graph, cfg.loss, None if stage == "atom" else forcefield_of(cg, cfg.martini), dev)
    n = batch * 2
    ctf = torch.tensor([15000.0, 14000.0, 0.3, 300.0, 2.7, 0.1, 0.0], dtype=torch.float64)
    data = PreparedParticles(
        images=torch.randn(n, box, box), poses=PoseBatch(torch.eye(3).expand(n, 3, 3).clone(), torch.zeros(n, 2)),
        ctf=CTFParams(*(v.expand(n).clone() for v in ctf)),
        d=box, apix=max(1.0, 2 * np.abs(graph.coords).max() / box), scale=1.0)
    model = build_model(graph, cfg, box)
    if deformed:
        torch.nn.init.normal_(model.decoder.head[-1].weight, std=0.05)
    image_model = ImageModel(box, data.apix, torch.as_tensor(graph.amplitudes), torch.as_tensor(graph.sigmas), 2.5 * data.apix, 2.0, 0.9375)
    trainer = DeformationTrainer(priors, graph, model, image_model, data, cfg.optim, run_dir, encoder_input=cfg.model.encoder_input)
    return trainer, data.batch(torch.arange(batch), trainer.device)


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    """The machine's float32 matmul rate (GFLOP/s), measured now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def measure(stage: str, structure: Structure, cg: CGModel | None, box: int, batch: int, device: str, steps: int,
            settings: list[str]) -> dict:
    """One row: the step's rate, cost, FLOPs and peak memory, with the matmul rate of this process."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer, batch_data = make_trainer(stage, structure, cg, box, batch, device, settings, tmp, deformed=True)
        graph = trainer.graph
        for _ in range(2):  # warm-up (and the bead neighbour list's first build)
            trainer.train_step(batch_data)
        counter = FlopCounterMode(display=False)
        with counter:
            trainer.train_step(batch_data)
        cuda = trainer.device.type == "cuda"
        gflops = matmul_gflops() if not cuda else float("nan")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batch_data)
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**30
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # high-water mark of this fresh process
        elapsed = time.perf_counter() - start
    rate = steps * batch / elapsed
    step_gflop = counter.get_total_flops() / 1e9
    floor = gflops / step_gflop * batch
    return {"stage": stage, "device": str(trainer.device), "box": box, "residues": structure.n_residues, "nodes": graph.n_nodes,
            "batch": batch, "images_per_s": rate, "step_ms": 1000 * elapsed / steps, "gflop_step": step_gflop,
            "matmul_gflops": gflops, "floor_img_s": floor, "pct_floor": 100 * rate / floor, "peak_memory_gb": peak}


def run_row(args: dict, source: Path | None) -> dict:
    """:func:`measure` in a fresh Python process, importing cryodyna from ``source`` (a checkout's
    ``src`` folder) and timing it with that checkout's own copy of this script (the step is built
    through the package's internal API of that revision) when given, else the installed package."""
    env = dict(os.environ)
    script = __file__
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")])
        script = str(source.parent / "benchmarks" / "throughput.py")
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as fh:
        pickle.dump(args, fh)
    try:
        out = subprocess.run([sys.executable, script, "--row", fh.name], env=env, check=True, capture_output=True, text=True)
    finally:
        os.unlink(fh.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


def worktree(rev: str, folder: Path) -> Path:
    """A detached git worktree of this repository at ``rev`` in ``folder``; returns its ``src``."""
    subprocess.run(["git", "-C", str(Path(__file__).parent), "worktree", "add", "--detach", str(folder), rev],
                   check=True, capture_output=True)
    return folder / "src"


def row_main(path: str) -> None:
    with open(path, "rb") as fh:
        args = pickle.load(fh)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(json.dumps(measure(**args)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", nargs="+", default=["atom", "cg"], choices=["atom", "cg"])
    p.add_argument("--boxes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--copies", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=20, help="timed steps per row (after two warm-up steps)")
    p.add_argument("--baseline", default=None, help="git revision of this package to time side by side")
    p.add_argument("--set", action="append", default=[], help="config override, e.g. optim.precision=bf16, optim.compile=true")
    p.add_argument("--row", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.row:
        return row_main(args.row)
    closed = adk_states()[0]
    cg = None
    if "cg" in args.stages:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cg = martinize(closed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"current": None}
        if args.baseline:
            sources[args.baseline] = worktree(args.baseline, Path(tmp) / "baseline")
        try:
            for copies in args.copies:
                structure = tiled(closed, copies)
                for stage in args.stages:
                    cg_copies = tiled_cg(cg, closed.n_residues, copies) if stage == "cg" else None
                    for box in args.boxes:
                        batch = args.batch if copies < 100 else max(1, args.batch // 4)
                        job = dict(stage=stage, structure=structure, cg=cg_copies, box=box, batch=batch, device=args.device,
                                   steps=args.steps, settings=args.set)
                        for name, source in sources.items():
                            rows.append({"code": name, **run_row(job, source)})
                            if name != "current":
                                rows[-1]["speed_vs_current"] = rows[-1]["images_per_s"] / rows[-2]["images_per_s"]
                            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format=lambda v: f"{v:.2f}"),
                                  flush=True)
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(Path(__file__).parent), "worktree", "remove", "--force", str(Path(tmp) / "baseline")],
                               capture_output=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
