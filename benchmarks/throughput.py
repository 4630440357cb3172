"""Training-step throughput of ``train-atom`` (images/s, peak memory) for several image sizes and
model sizes, on CPU and on CUDA when present.

Models are made here by tiling the adenylate-kinase closed state (214 residues) on a grid: 1, 10 and
100 copies give about 200, 2,000 and 20,000 residues with realistic secondary-structure blocks.
Images are random (throughput does not depend on their content).

Example:
    python benchmarks/throughput.py                       # all sizes, default device
    python benchmarks/throughput.py --boxes 128 --copies 1 --device cuda --batch 256
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
import torch

from cryodyna.config import load_config
from cryodyna.io.structure import Structure
from cryodyna.simulate.adk import adk_states
from cryodyna.train.image_model import ImageModel
from cryodyna.train.particles import PreparedParticles
from cryodyna.train.residue_task import ResidueTask
from cryodyna.train.run import build_model, residue_graph
from cryodyna.train.trainer import DeformationTrainer


def tiled(structure: Structure, copies: int, spacing: float = 60.0) -> Structure:
    """``copies`` translated copies of ``structure`` on a cubic grid, one chain each."""
    side = int(np.ceil(copies ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:copies]
    grid = (grid - grid.mean(0)) * spacing
    parts = {k: [] for k in vars(structure)}
    for c, offset in enumerate(grid):
        for k, v in vars(structure).items():
            if k == "coords":
                v = v + offset
            elif k == "residue":
                v = v + c * structure.n_residues
            elif k == "chain_id":
                v = np.full(len(v), f"C{c}", dtype=object)
            parts[k].append(v)
    return Structure(**{k: np.concatenate(v) for k, v in parts.items()})


def measure(structure: Structure, box: int, batch: int, device: str, steps: int) -> dict:
    cfg = load_config("train-atom", overrides=[f"optim.batch_size={batch}", f"optim.device={device}", "optim.holdout_fraction=0"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = residue_graph(structure, cfg)
    n = batch * 2
    data = PreparedParticles(
        images=torch.randn(n, box, box), rotations=torch.eye(3).expand(n, 3, 3).clone(), shifts=torch.zeros(n, 2),
        ctf=torch.tensor([15000.0, 14000.0, 0.3, 300.0, 2.7, 0.1, 0.0], dtype=torch.float64).expand(n, 7).clone(),
        d=box, apix=max(1.0, 2 * np.abs(graph.coords).max() / box), scale=1.0)
    model = build_model(graph, cfg, box)
    image_model = ImageModel(box, data.apix, torch.as_tensor(graph.amplitudes), torch.as_tensor(graph.sigmas), 2.5 * data.apix, 2.0, 0.9375)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = DeformationTrainer(ResidueTask(graph, cfg.loss, trainer_device(device)), model, image_model, data,
                                     cfg.optim, cfg.analysis, tmp)
        batch_data = data.batch(torch.arange(batch), trainer.device)
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
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process high-water mark
        elapsed = time.perf_counter() - start
    return {"device": str(trainer.device), "box": box, "residues": graph.n_nodes, "blocks": graph.n_blocks, "batch": batch,
            "images_per_s": steps * batch / elapsed, "step_ms": 1000 * elapsed / steps, "peak_memory_gb": peak}


def trainer_device(name: str) -> torch.device:
    from cryodyna.train.loop import resolve_device

    return resolve_device(name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boxes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--copies", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    closed = adk_states()[0]
    rows = []
    for copies in args.copies:  # increasing sizes: the CPU high-water mark then belongs to the latest row
        structure = tiled(closed, copies)
        for box in args.boxes:
            batch = args.batch if copies < 100 else max(1, args.batch // 4)
            rows.append(measure(structure, box, batch, args.device, args.steps))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format=lambda v: f"{v:.2f}"), flush=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
