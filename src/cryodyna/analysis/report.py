"""``cryodyna analyze``: latent analysis of a saved evaluation, structures with RMSF B-factors,
figures, and an ``index.html`` overview in the run folder."""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryodyna.analysis.figures import latent_plot, loss_curves, pc_histograms, trajectory_figure
from cryodyna.analysis.latent import kmeans_centres, pca_trajectories, umap_embedding
from cryodyna.analysis.run_report import write_report
from cryodyna.models.sampling import decode_latents
from cryodyna.assembly.stage import load_run
from cryodyna.errors import CryodynaError
from cryodyna.io.structure import structure_suffix
from cryodyna.runs.layout import RunFolder, evaluation_file
from cryodyna.runs.lock import run_lock
from cryodyna.runs.read import latest_evaluation, load_latents


def node_labels(template) -> dict[str, np.ndarray]:
    """Chain, residue number (with insertion code), residue name and atom/bead name of each node
    of a task's one-atom-per-node template structure."""
    res = template.residue
    return {"chain": template.chain_id[res], "residue": [f"{n}{i}" for n, i in zip(template.res_seq[res], template.ins_code[res])],
            "res_name": template.res_name[res], "atom": template.atom_name}


def rmsf(frames: np.ndarray) -> np.ndarray:
    """Root-mean-square fluctuation (N,) in Å of node positions over frames (K, N, 3)."""
    return np.sqrt(((frames - frames.mean(0)) ** 2).sum(-1).mean(0))


def analyze(run_dir: Path, eval_dir: Path | None = None, k: int = 10, pcs: int = 3, frames: int = 10,
            use_umap: bool = True, seed: int = 0) -> Path:
    """Analyse one evaluation (default: the latest) into ``RUN/analysis/<evaluation>/`` and write
    ``RUN/index.html``.  Returns the analysis folder."""
    run = RunFolder(run_dir)
    eval_dir = Path(eval_dir) if eval_dir else latest_evaluation(run_dir)
    z_path, ckpt = evaluation_file(eval_dir, "latents"), evaluation_file(eval_dir, "checkpoint")
    if not z_path.is_file():
        raise CryodynaError(f"{eval_dir}: no {z_path.name} in this evaluation folder")
    if not ckpt.is_file():
        raise CryodynaError(f"{eval_dir}: this evaluation's {ckpt.name} was removed (optim.keep_checkpoints keeps the newest "
                            "evaluations and the best); analyze a folder that has one, or train with --keep-checkpoints all")
    with run_lock(run_dir):  # one writer per run folder
        z = load_latents(z_path)
        loaded = load_run(run_dir, ckpt)
        model = loaded.model
        out = run.analysis / eval_dir.name
        out.mkdir(parents=True, exist_ok=True)
        centres, centre_idx, labels = kmeans_centres(z, k, seed)
        suffix = structure_suffix(loaded.graph.template)
        loaded.write_models(out / f"kmeans{suffix}", decode_latents(model, centres))
        np.savetxt(out / "kmeans_particles.txt", centre_idx, fmt="%d")
        np.savetxt(out / "kmeans_labels.txt", labels, fmt="%d")
        trajectories, pca = pca_trajectories(z, pcs, frames)
        rows = []
        for i, (zk, idx) in enumerate(trajectories, start=1):
            coords = decode_latents(model, zk)
            fluct = rmsf(coords)
            loaded.write_models(out / f"pca-{i}{suffix}", coords, bfactors=fluct)
            trajectory_figure(out / f"pca-{i}.png", coords, f"PC {i}: first (blue) to last (red) frame")
            np.savetxt(out / f"pca-{i}_particles.txt", idx, fmt="%d")
            rows.append(pd.DataFrame({"pc": i, **node_labels(loaded.graph.template), "rmsf_a": fluct}))
        pd.concat(rows).to_csv(out / "rmsf.csv", index=False)
        latent_plot(out / "z_pca.png", z, centre_idx, pca, umap_embedding(z, seed) if use_umap else None)
        pc_histograms(out / "pc_histograms.png", pca.transform(z))
        if run.metrics.is_file():
            loss_curves(out / "losses.png", pd.read_csv(run.metrics))
        write_index(run_dir)
        write_report(run_dir, model.reference.cpu().numpy())
    return out


def write_index(run_dir: Path) -> Path:
    """``RUN/index.html``: every figure of the run, with links to its structures and maps."""
    run_dir = Path(run_dir)
    sections = []
    for folder in [*RunFolder(run_dir).evaluations(), *sorted(RunFolder(run_dir).analysis.glob("*"))]:
        if not folder.is_dir():
            continue
        rel = lambda p: html.escape(os.path.relpath(p, run_dir))  # noqa: E731
        images = "".join(f'<figure><img src="{rel(p)}" width="420"><figcaption>{html.escape(p.name)}</figcaption></figure>'
                         for p in sorted(folder.glob("*.png")))
        links = " ".join(f'<a href="{rel(p)}">{html.escape(p.name)}</a>'
                         for p in sorted([*folder.glob("*.pdb"), *folder.glob("*.cif"), *folder.glob("*.mrc"), *folder.glob("*.npy")]))
        sections.append(f"<h2>{rel(folder)}</h2><div class='row'>{images}</div><p>{links}</p>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>cryodyna run</title><style>"
            "body{font-family:sans-serif;margin:2em} .row{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0}</style>"
            f"</head><body><h1>{html.escape(str(run_dir))}</h1>{''.join(sections)}</body></html>")
    index = RunFolder(run_dir).index
    index.write_text(page)
    return index
