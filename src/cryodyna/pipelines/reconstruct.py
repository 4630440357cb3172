"""``cryodyna reconstruct``: the deformation-corrected consensus map of a trained run (and maps at
chosen latents), with the plain back-projection of the same particles and gold-standard FSCs.

A ``--halfsets`` run reconstructs each half with the model trained on that half alone, so the two
half maps are fully independent.  A run trained on all particles is split into half-sets of
particles (the file's own split when it has one); its FSC then shares the model between halves.
Poses refined during training (``particles_refined.star`` of the evaluation) replace the file's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from cryodyna import distributed
from cryodyna.analysis.figures import fsc_curves_plot
from cryodyna.analysis.reconstruct import Reconstruction, reconstruct
from cryodyna.data.dataset import ParticleDataset
from cryodyna.errors import CryodynaError
from cryodyna.io.mrc import write_volume
from cryodyna.io.particles import ParticleTable
from cryodyna.io.read import read_particles
from cryodyna.models.deformation import DeformationModel
from cryodyna.progress import progress_bar
from cryodyna.assembly.stage import load_run
from cryodyna.pipelines.halfsets import halfset_labels, is_halfset_run
from cryodyna.runs.layout import RunFolder, evaluation_file
from cryodyna.runs.read import latest_evaluation, load_latents, read_run


@dataclass
class _Source:
    """One trained model, the latents it gives every particle, and its evaluation folder."""

    model: DeformationModel
    z: np.ndarray
    folder: Path

    @torch.no_grad()
    def nodes(self, indices: np.ndarray) -> torch.Tensor:
        """Deformed node coordinates (B, N, 3) Å of particles ``indices``."""
        return self.model.decode(torch.as_tensor(self.z[indices], device=self.model.reference.device))


def _source(run_dir: Path, eval_dir: Path | None, device: torch.device) -> _Source:
    folder = Path(eval_dir) if eval_dir else latest_evaluation(run_dir)
    z_path = evaluation_file(folder, "latents")
    if not z_path.is_file():
        raise CryodynaError(f"{folder}: no {z_path.name} in this evaluation folder")
    ckpt = evaluation_file(folder, "checkpoint")
    loaded = load_run(run_dir, ckpt if ckpt.is_file() else None, str(device))
    return _Source(loaded.model, load_latents(z_path), folder)


def _with_refined_poses(table: ParticleTable, sources: list[_Source], labels: np.ndarray, cfg) -> ParticleTable:
    """``table`` with each half's poses from its source's ``particles_refined.star`` when present."""
    rotations, shifts = table.rotations.copy(), table.shifts.copy()
    for folder in {source.folder for source in sources}:  # one run serves both halves: read its file once
        refined = evaluation_file(folder, "refined_particles")
        if refined.is_file():
            r = read_particles(refined, datadir=cfg.data.datadir, apix=cfg.data.apix)
            rows = np.isin(labels, [k + 1 for k, source in enumerate(sources) if source.folder == folder])
            rotations[rows], shifts[rows] = r.rotations[rows], r.shifts[rows]
    return ParticleTable(**{**vars(table), "rotations": rotations, "shifts": shifts})


def default_width(nodes: np.ndarray) -> float:
    """RBF width of the displacement field: the median distance from a node to its nearest
    neighbour (3.8 Å for one node per residue)."""
    return float(np.median(cKDTree(nodes).query(nodes, k=2)[0][:, 1]))


def reconstruct_run(run_dir: Path, out: Path, box: int | None = None, eval_dir: Path | None = None,
                    width: float | None = None, batch_size: int = 32, device: str = "auto",
                    latents: np.ndarray | None = None, particles_per_map: int | None = None) -> dict:
    """Write the corrected consensus map ``out`` (and ``out``'s siblings, see the CLI help) of a
    ``train-atom`` / ``train-cg`` run (or the parent of a ``--halfsets`` run); with ``latents``
    (K, z_dim) also one map per row from the ``particles_per_map`` particles whose structures are
    nearest (node RMSD) to that latent's.  Returns the summary also written to ``OUT.json``."""
    run_dir, out = Path(run_dir), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dev = distributed.resolve_device(device)
    halfsets = is_halfset_run(run_dir)
    runs = [half.root for half in RunFolder(run_dir).halves] if halfsets else [run_dir]
    if halfsets and eval_dir is not None:
        raise CryodynaError("--eval picks an evaluation of a single run; a --halfsets run uses each half's latest")
    info, cfg = read_run(runs[0], ("atom", "cg"))
    sources = [_source(r, eval_dir, dev) for r in runs]
    z_dim = sources[0].model.encoder.z_dim
    if latents is not None and (latents.ndim != 2 or latents.shape[1] != z_dim):
        raise CryodynaError(f"latents of shape {latents.shape}; the run's model takes rows of {z_dim} values")
    table = read_particles(info["particles"], datadir=cfg.data.datadir, apix=cfg.data.apix, poses=info.get("poses"),
                           ctf=info.get("ctf"))
    labels = np.load(RunFolder(run_dir).halfset_labels) if halfsets else halfset_labels(table, cfg.optim.seed)[0]
    if len(labels) != len(table) or any(len(s.z) != len(table) for s in sources):
        raise CryodynaError(f"{run_dir}: the run's latents do not match the {len(table)} particles of {info['particles']}")
    if len(sources) == 1:  # one model serves both halves
        sources = sources * 2
    table = _with_refined_poses(table, sources, labels, cfg)
    dataset = ParticleDataset(table, box=box)
    reference = sources[0].model.reference.cpu().numpy()
    width = width or default_width(reference)
    sign = -1.0 if cfg.data.invert_contrast else 1.0
    halves = [np.flatnonzero(labels == 1), np.flatnonzero(labels == 2)]
    start = time.perf_counter()
    with progress_bar("back-projecting", len(table)) as update:
        rec = reconstruct(dataset, halves, lambda k, idx: sources[k].nodes(idx), reference, width, sign, batch_size, dev, update)
    rate = len(table) / (time.perf_counter() - start)
    summary = {"run": str(run_dir), "particles": [len(h) for h in halves], "box": dataset.box, "apix": rec.apix,
               "field_width_a": width, "particles_per_s": rate, "device": str(dev),
               "half_sets": ("independent models (--halfsets run)" if halfsets else
                             "one model trained on all particles, particles split in halves"),
               **_write_maps(out, rec)}
    if latents is not None:
        summary["latent_maps"] = _latent_maps(out, latents, sources, dataset, halves, width, sign, batch_size, dev,
                                              particles_per_map or max(len(table) // 5, 2))
    Path(f"{out.with_suffix('')}.json").write_text(json.dumps(summary, indent=1))
    return summary


def _write_maps(out: Path, rec: Reconstruction) -> dict:
    """The maps, mask, FSC table and plot of a reconstruction; returns its resolutions."""
    stem = out.with_suffix("")
    for label, maps in (("", rec.corrected), ("_plain", rec.plain)):
        write_volume(out if not label else f"{stem}{label}.mrc", maps.full, rec.apix)
        for k, half in enumerate(maps.halves, start=1):
            write_volume(f"{stem}{label}_half{k}.mrc", half, rec.apix)
    write_volume(f"{stem}_mask.mrc", rec.mask, rec.apix)
    f = rec.corrected.fsc
    table = np.stack([f.frequency, 1 / f.frequency, f.fsc, rec.plain.fsc.fsc], 1)
    np.savetxt(f"{stem}_fsc.csv", table, delimiter=",", header="frequency_per_A,resolution_A,fsc_corrected,fsc_plain",
               comments="", fmt="%.6g")
    fsc_curves_plot(Path(f"{stem}_fsc.png"), {"corrected": rec.corrected.fsc, "plain": rec.plain.fsc},
                    "half-set FSC inside the model mask")
    return {name: {"fsc_0.5_a": m.fsc.resolution(0.5), "fsc_0.143_a": m.fsc.resolution(0.143), "fsc_auc": m.fsc.auc,
                   "fsc_0.5": m.fsc.describe(0.5), "fsc_0.143": m.fsc.describe(0.143)}
            for name, m in (("corrected", rec.corrected), ("plain", rec.plain))}


@torch.no_grad()
def _latent_maps(out: Path, latents: np.ndarray, sources: list[_Source], dataset: ParticleDataset, halves: list[np.ndarray],
                 width: float, sign: float, batch_size: int, device, per_map: int) -> list[dict]:
    """One corrected map per latent row (decoded by the first half's model), from the particles
    whose structures (each decoded by its own half's model) are nearest to it."""
    first = sources[0].model
    targets = first.decode(torch.as_tensor(latents, dtype=torch.float32, device=first.reference.device))  # (K, N, 3)
    rmsd = np.zeros((len(dataset), len(targets)), np.float32)
    for k, idx in enumerate(halves):
        for start in range(0, len(idx), 256):
            sel = idx[start : start + 256]
            nodes = sources[k].nodes(sel)
            rmsd[sel] = ((nodes[:, None] - targets[None]) ** 2).sum(-1).mean(-1).sqrt().cpu().numpy()
    stem, rows = out.with_suffix(""), []
    for j, target in enumerate(targets.cpu().numpy()):
        chosen = np.argsort(rmsd[:, j])[:per_map]
        parts = [np.sort(chosen[np.isin(chosen, h)]) for h in halves]
        with progress_bar(f"map {j + 1}/{len(targets)}", len(chosen)) as update:
            rec = reconstruct(dataset, parts, lambda k, idx: sources[k].nodes(idx), target, width, sign, batch_size,
                              device, update)
        path = Path(f"{stem}_z{j:03d}.mrc")
        write_volume(path, rec.corrected.full, rec.apix)
        rows.append({"map": path.name, "particles": int(len(chosen)), "max_node_rmsd_a": float(rmsd[chosen, j].max()),
                     "fsc_0.143_a": rec.corrected.fsc.resolution(0.143), "fsc_0.143": rec.corrected.fsc.describe(0.143)})
    return rows
