"""``train-atom`` / ``train-cg --halfsets``: two independent models, each trained on one half of the
particles (RELION's ``rlnRandomSubset`` / cryoSPARC's split when the particle file has them, else a
seeded random split), then compared on every particle.

Layout: ``RUN/halfsets.json`` (how the halves were chosen), ``RUN/halfset.npy`` (1 or 2 per
particle, STAR order), ``RUN/half-1/`` and ``RUN/half-2/`` (complete run folders; each trains on
its half but writes latents for all particles), ``RUN/cache/`` (the image cache both share),
``RUN/halfset_agreement.csv`` and ``RUN/halfset_particles.csv``
(:mod:`cryodyna.analysis.halfsets`), shown in both halves' ``report.html``.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cryodyna import distributed
from cryodyna.analysis.halfsets import HalfsetAgreement, halfset_agreement, write_agreement
from cryodyna.analysis.report import node_labels
from cryodyna.analysis.run_report import write_report
from cryodyna.assembly.stage import load_run
from cryodyna.errors import CryodynaError
from cryodyna.io.particles import ParticleTable
from cryodyna.io.read import read_particles
from cryodyna.runs.layout import HALVES, RunFolder
from cryodyna.runs.read import evaluation_latents

log = logging.getLogger("cryodyna")


def halfset_labels(table: ParticleTable, seed: int) -> tuple[np.ndarray, str]:
    """Half-set (1 or 2) of every particle and how it was chosen: the file's own gold-standard
    split when it has one, else a seeded random split into two equal halves."""
    if table.random_subset is not None:
        return table.random_subset.astype(np.int8), "the particle file's half-sets (rlnRandomSubset / alignments3D/split)"
    n = len(table)
    labels = np.ones(n, np.int8)
    labels[np.random.default_rng(seed).permutation(n)[n // 2:]] = 2
    return labels, f"random halves (seed {seed})"


def is_halfset_run(run_dir: Path) -> bool:
    """True for the parent folder of a ``--halfsets`` run."""
    return RunFolder(run_dir).halfsets_record.is_file()


def train_halfsets(train: Callable[..., Path | None], particles: Path, model_path: Path, run_dir: Path, cfg,
                   **options) -> list[Path | None]:
    """Train ``train`` (:func:`~cryodyna.pipelines.training.train_atom` or ``train_cg``) on each half-set into
    ``RUN/half-1`` and ``RUN/half-2`` (each resumable on its own), then write the agreement files.
    Returns the last evaluation folder of each half."""
    run_dir = Path(run_dir)
    run = RunFolder(run_dir)
    table = read_particles(particles, datadir=cfg.data.datadir, apix=cfg.data.apix, poses=options.get("poses"),
                           ctf=options.get("ctf"))
    labels, how = halfset_labels(table, cfg.optim.seed)
    if min((labels == 1).sum(), (labels == 2).sum()) < 10:
        raise CryodynaError(f"{particles}: half-sets of {(labels == 1).sum()} and {(labels == 2).sum()} particles; "
                            "--halfsets needs at least 10 particles in each")
    record = run.halfset_labels
    if record.is_file() and not np.array_equal(np.load(record), labels):
        raise CryodynaError(f"{run_dir}: its half-sets were chosen from other particles; use a new -o for these")
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        np.save(record, labels)
        run.halfsets_record.write_text(json.dumps({"halves": list(HALVES), "split": how, "particles": str(Path(particles).resolve()),
                                                           "counts": [int((labels == 1).sum()), int((labels == 2).sum())]}, indent=1))
    distributed.barrier()
    log.info("half-sets: %d and %d particles (%s)", (labels == 1).sum(), (labels == 2).sum(), how)
    folders = [train(particles, model_path, half.root, cfg, subset=np.flatnonzero(labels == k + 1),
                     cache_dir=run.cache, **options) for k, half in enumerate(run.halves)]
    if distributed.is_main():
        agreement = compare_halves(run_dir, cfg.optim.device)
        log.info("half-set agreement: RMS disagreement %.2f Å, RMS motion %.2f Å (ratio %.2f)",
                 np.sqrt((agreement.disagreement**2).mean()), np.sqrt((agreement.motion**2).mean()), agreement.ratio)
        if agreement.warning():
            warnings.warn(agreement.warning(), stacklevel=2)
    distributed.barrier()
    return folders


def compare_halves(run_dir: Path, device: str = "cpu", batch: int = 256) -> HalfsetAgreement:
    """Decode every particle with both half-set models (each from its latest evaluation), write the
    agreement files into ``run_dir`` and refresh both halves' reports."""
    run = RunFolder(run_dir)
    labels = np.load(run.halfset_labels)
    loaded = [load_run(half.root, device=device) for half in run.halves]
    zs = [evaluation_latents(half.root) for half in run.halves]

    def pairs():
        for start in range(0, len(labels), batch):
            with torch.no_grad():
                yield tuple(model.decode(torch.as_tensor(z[start : start + batch], device=model.reference.device)).cpu().numpy()
                            for model, z in ((r.model, z) for r, z in zip(loaded, zs)))

    agreement = halfset_agreement(pairs())
    write_agreement(run.root, agreement, node_labels(loaded[0].graph.template), labels)
    for half, r in zip(run.halves, loaded):
        write_report(half.root, r.model.reference.cpu().numpy())
    return agreement
