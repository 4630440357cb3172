"""Training-step throughput of ``train-atom`` and ``train-cg`` (images/s, peak memory) for several image
sizes and model sizes, on CPU and on CUDA when present.

Models are made here by tiling the adenylate-kinase closed state (214 residues; 476 Martini 3 beads,
mapped once by martinize2) on a grid: 1, 10 and 100 copies give about 200, 2,000 and 20,000 residues
(about 480, 4,800 and 48,000 beads) with realistic secondary-structure blocks.  Images are random
(throughput does not depend on their content).  Each row repeats one training step on one batch held
on the device, in a fresh process (so that its peak memory is its own).

Example:
    python benchmarks/throughput.py                       # all sizes, both stages, default device
    python benchmarks/throughput.py --stages atom --boxes 128 --copies 1 --device cuda --batch 256
    python benchmarks/throughput.py --device cuda --set optim.precision=bf16 --set optim.compile=true
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from cryodyna.config import load_config
from cryodyna.io.itp import concatenate
from cryodyna.io.structure import Structure
from cryodyna.simulate.adk import adk_states
from cryodyna.structure.martini import CGModel, martinize
from cryodyna.train.bead_task import BeadTask
from cryodyna.train.cg_prep import forcefield_of
from cryodyna.train.image_model import ImageModel
from cryodyna.train.loop import resolve_device
from cryodyna.train.particles import PreparedParticles
from cryodyna.train.residue_task import ResidueTask
from cryodyna.train.run import bead_graph, build_model, residue_graph
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
    dev = resolve_device(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = residue_graph(structure, cfg) if stage == "atom" else bead_graph(structure, cg, cfg)
        task = ResidueTask(graph, cfg.loss, dev) if stage == "atom" else BeadTask(graph, forcefield_of(cg, cfg.martini), cfg.loss, dev)
    n = batch * 2
    data = PreparedParticles(
        images=torch.randn(n, box, box), rotations=torch.eye(3).expand(n, 3, 3).clone(), shifts=torch.zeros(n, 2),
        ctf=torch.tensor([15000.0, 14000.0, 0.3, 300.0, 2.7, 0.1, 0.0], dtype=torch.float64).expand(n, 7).clone(),
        d=box, apix=max(1.0, 2 * np.abs(graph.coords).max() / box), scale=1.0)
    model = build_model(graph, cfg, box)
    if deformed:
        torch.nn.init.normal_(model.decoder.head[-1].weight, std=0.05)
    image_model = ImageModel(box, data.apix, torch.as_tensor(graph.amplitudes), torch.as_tensor(graph.sigmas), 2.5 * data.apix, 2.0, 0.9375)
    trainer = DeformationTrainer(task, model, image_model, data, cfg.optim, cfg.analysis, run_dir)
    return trainer, data.batch(torch.arange(batch), trainer.device)


def measure(stage: str, structure: Structure, cg: CGModel | None, box: int, batch: int, device: str, steps: int,
            settings: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trainer, batch_data = make_trainer(stage, structure, cg, box, batch, device, settings, tmp)
        graph = trainer.task.graph
        trainer.train_step(batch_data)  # warm-up
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batch_data)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**30
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # high-water mark of this fresh process
        elapsed = time.perf_counter() - start
    return {"stage": stage, "device": str(trainer.device), "box": box, "residues": structure.n_residues, "nodes": graph.n_nodes,
            "blocks": graph.n_blocks, "batch": batch, "images_per_s": steps * batch / elapsed, "step_ms": 1000 * elapsed / steps,
            "peak_memory_gb": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", nargs="+", default=["atom", "cg"], choices=["atom", "cg"])
    p.add_argument("--boxes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--copies", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--set", action="append", default=[], help="config override, e.g. optim.precision=bf16, optim.compile=true")
    args = p.parse_args()
    closed = adk_states()[0]
    cg = None
    if "cg" in args.stages:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cg = martinize(closed)
    rows = []
    for copies in args.copies:
        structure = tiled(closed, copies)
        for stage in args.stages:
            cg_copies = tiled_cg(cg, closed.n_residues, copies) if stage == "cg" else None
            for box in args.boxes:
                batch = args.batch if copies < 100 else max(1, args.batch // 4)
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:  # own peak memory
                    rows.append(fresh.submit(measure, stage, structure, cg_copies, box, batch, args.device, args.steps, args.set).result())
                print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format=lambda v: f"{v:.2f}"), flush=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
