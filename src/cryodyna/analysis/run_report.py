"""``RUN/report.html``: one self-contained, offline page per run (plotly's bundled JavaScript
inlined, no network), rewritten at every evaluation and by ``cryodyna analyze``.

Deformation runs (``train-atom`` / ``train-cg``): a summary card (status, inputs, device, speed,
losses, motion per principal component in Å, bond and clash statistics, warnings), the latent space
(PCA, UMAP when stored; numbered k-means centres; colour by PC or cluster; lasso / box selection
exporting the particle indices and the command that writes them as a STAR subset), a 3-D viewer
that plays each PC trajectory and shows the structure at a clicked centre coloured by displacement,
RMSF per residue, loss curves with units, image previews, links to every file (grouped per folder, newest evaluation first) and next steps; for
the halves of a ``--halfsets`` run, the half-set agreement per node (disagreement next to motion).
Density runs: the summary, central slices of the maps, losses, links and next steps.
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from plotly.offline import get_plotlyjs
from sklearn.decomposition import PCA

from cryodyna.analysis.halfsets import HalfsetAgreement
from cryodyna.io.mrc import read_volume
from cryodyna.io.structure import read_models
from cryodyna.runs.layout import EVALUATION_FILES, RunFolder, evaluation_file, structure_file, trajectory_files
from cryodyna.runs.read import newest_evaluation
from cryodyna.train.metrics import NOT_LOSSES

CLASH_DISTANCE = 3.0  # Å between non-consecutive nodes
MAX_POINTS = 50_000  # particles drawn in the latent plots (a seeded random subset beyond; z.npy has all)


def _finite(obj):
    """``obj`` with every NaN / infinite float replaced by None (valid JSON)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _image(path: Path) -> str:
    """A PNG as a data URI (empty when missing)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""


COORD_STEP = 0.02  # [Å] coordinates travel as int16 multiples of this about their centre (±655 Å)


def _packed(coords: np.ndarray) -> dict:
    """Coordinates (K, N, 3) Å as base64 little-endian int16 steps about their centre: a third of
    the text of two-decimal numbers (the page's size grows with the model); the step widens for
    models larger than ±655 Å.  ``run_report.js`` unpacks them."""
    origin = coords.reshape(-1, 3).mean(0)
    step = max(COORD_STEP, float(np.abs(coords - origin).max()) / 32767)
    steps = np.round((coords - origin) / step).astype("<i2")
    return {"int16": base64.b64encode(steps.tobytes()).decode(), "shape": list(coords.shape), "step": step,
            "origin": origin.tolist()}


@dataclass
class _Trajectory:
    """A multi-model PDB/mmCIF: node coordinates (K, N, 3) Å, chain of each node (N,), the first node of
    every residue (M,) (the trace the page draws: a bead model's backbone beads, so that the page of a
    36,584-bead model stays the size of its residue-level one) and the page's record of those
    (packed coordinates, labels, chains)."""

    coords: np.ndarray
    chains: list[str]
    trace_nodes: np.ndarray
    record: dict


def _trajectory(path: Path) -> _Trajectory:
    models = read_models(path)
    s = models[0]
    shown = np.unique(s.residue, return_index=True)[1]
    labels = [f"{s.chain_id[r]}:{s.res_name[r]}{s.res_seq[r]}{s.ins_code[r]} {a}" for r, a in zip(s.residue[shown], s.atom_name[shown])]
    coords = np.stack([m.coords for m in models])
    chains = [str(s.chain_id[r]) for r in s.residue]
    return _Trajectory(coords, chains, shown, {"coords": _packed(coords[:, shown]), "labels": labels,
                                               "chains": [chains[i] for i in shown]})


def geometry_statistics(coords: np.ndarray, chains: list[str], reference: np.ndarray | None) -> dict[str, float]:
    """Consecutive-node distance RMS change against ``reference`` (Å) and the fraction of
    non-consecutive node pairs closer than :data:`CLASH_DISTANCE`, over models (K, N, 3)."""
    from scipy.spatial import cKDTree

    same = np.asarray(chains[1:]) == np.asarray(chains[:-1])
    out = {}
    if reference is not None and reference.shape == coords.shape[1:]:
        ref = np.linalg.norm(reference[1:] - reference[:-1], axis=-1)[same]
        bonds = np.linalg.norm(coords[:, 1:] - coords[:, :-1], axis=-1)[:, same]
        out["bond_rms_change_a"] = float(np.sqrt(((bonds - ref) ** 2).mean())) if same.any() else 0.0
    clashes = sum(int((np.abs(p[:, 0] - p[:, 1]) > 1).sum())
                  for p in (np.asarray(sorted(cKDTree(x).query_pairs(CLASH_DISTANCE)), dtype=np.int64).reshape(-1, 2) for x in coords))
    n = coords.shape[1]
    out["clash_fraction"] = clashes / max(1, len(coords) * (n * (n - 1) // 2 - (n - 1)))
    return out


def _summary(run_dir: Path, folder: Path | None) -> dict:
    info, progress = _read_json(RunFolder(run_dir).info), _read_json(RunFolder(run_dir).progress)
    env = (run_dir / "environment.txt").read_text().splitlines() if (run_dir / "environment.txt").is_file() else []
    log = (run_dir / "log.txt").read_text().splitlines() if (run_dir / "log.txt").is_file() else []
    return {
        "task": info.get("task", "?"), "status": progress.get("status", "unknown"),
        "step": progress.get("step"), "total_steps": progress.get("total_steps"),
        "images_per_s": progress.get("images_per_s"), "updated": progress.get("updated"),
        "inputs": {k: info[k] for k in ("particles", "model", "z") if info.get(k)},
        "data": {k: info[k] for k in ("n_particles", "box", "apix", "lowpass", "n_nodes") if k in info},
        "device": next((line.split(" ", 1)[1] for line in env if line.startswith("device ")), "?"),
        "evaluation": folder.name if folder else None,
        "losses": _read_json(evaluation_file(folder, "metrics")) if folder else {},
        "warnings": [line.split(" WARNING ", 1)[1] for line in log if " WARNING " in line][-10:],
    }


def _deformation_data(folder: Path, reference: np.ndarray | None) -> dict:
    z = np.load(evaluation_file(folder, "latents"), mmap_mode="r")
    n_pcs = max(1, min(3, z.shape[1], len(z) - 1))
    labels_path, centres_path = folder / "kmeans_labels.txt", folder / "kmeans_particles.txt"
    centres = np.loadtxt(centres_path, dtype=np.int64, ndmin=1) if centres_path.is_file() else np.zeros(0, np.int64)
    shown = None  # every particle
    if len(z) > MAX_POINTS:
        shown = np.union1d(np.random.default_rng(0).choice(len(z), MAX_POINTS, replace=False), centres)
    rows = slice(None) if shown is None else shown
    scores = PCA(n_components=n_pcs).fit(z[:: max(1, len(z) // 200_000)]).transform(z[rows])
    labels = np.loadtxt(labels_path, dtype=np.int64, ndmin=1)[rows] if labels_path.is_file() else np.zeros(len(scores), np.int64)
    umap_path = folder / "z_umap.npy"
    trajectories = {p.stem: _trajectory(p) for p in trajectory_files(folder)}
    pred_path = structure_file(folder, "pred")
    pred = _trajectory(pred_path) if pred_path.is_file() else None
    motion = {}
    for name, t in trajectories.items():
        c, trace = t.coords, t.coords[:, t.trace_nodes]
        motion[name] = {"first_to_last_rmsd_a": float(np.sqrt(((c[-1] - c[0]) ** 2).sum(-1).mean())),
                        "max_node_displacement_a": float(np.linalg.norm(c[-1] - c[0], axis=-1).max()),
                        "rmsf_a": np.round(np.sqrt(((trace - trace.mean(0)) ** 2).sum(-1).mean(0)), 3).tolist()}
    geometry = geometry_statistics(pred.coords, pred.chains, reference) if pred else {}
    nodes = pred or next(iter(trajectories.values()), None)
    if reference is not None and (nodes is None or len(reference) != nodes.coords.shape[1]):
        reference = None
    return {
        "scores": np.round(scores, 4).tolist(), "labels": labels.tolist(), "centres": centres.tolist(),
        "particles": len(z), "shown": None if shown is None else shown.tolist(),
        "centre_rows": (centres if shown is None else np.searchsorted(shown, centres)).tolist(),
        "umap": np.round(np.load(umap_path, mmap_mode="r")[rows], 4).tolist() if umap_path.is_file() else None,
        "trajectories": {name: t.record for name, t in trajectories.items()}, "centre_models": pred and pred.record,
        "motion": motion, "geometry": geometry,
        "reference": None if reference is None else np.round(reference[nodes.trace_nodes], 2).tolist(),
        "images": {name: _image(folder / f"{name}.png") for name in ("input_image", "pred_image")},
    }


def _halfset_data(run_dir: Path) -> dict | None:
    """Agreement of the two halves of a ``--halfsets`` run (``run_dir`` is one of them), or None."""
    parent = RunFolder(run_dir.parent)
    table_path = parent.halfset_agreement
    if not parent.halfsets_record.is_file() or not table_path.is_file():
        return None
    t = pd.read_csv(table_path, dtype={"residue": str})
    particles = pd.read_csv(parent.halfset_particles)
    agreement = HalfsetAgreement(t.disagreement_a.to_numpy(), t.motion_a.to_numpy(), particles.rmsd_a.to_numpy())
    return {"split": _read_json(parent.halfsets_record).get("split", "?"), "ratio": agreement.ratio,
            "warning": agreement.warning(), "labels": (t.chain.astype(str) + ":" + t.res_name + t.residue + " " + t.atom).tolist(),
            "disagreement": np.round(agreement.disagreement, 3).tolist(), "motion": np.round(agreement.motion, 3).tolist(),
            "median_particle_rmsd": float(np.median(agreement.particle_rmsd))}


def _map_slices(folder: Path) -> list[dict]:
    """Central x/y/z slices of up to 6 maps of a density evaluation."""
    maps = sorted(folder.glob("vol*.mrc"))[:6]
    out = []
    for p in maps:
        v = np.asarray(read_volume(p)[0], dtype=np.float32)
        c = np.array(v.shape) // 2
        out.append({"name": p.name, "slices": [np.round(s, 4).tolist() for s in (v[c[0]], v[:, c[1]], v[:, :, c[2]])]})
    return out


def _losses(run_dir: Path) -> dict:
    path = RunFolder(run_dir).metrics
    if not path.is_file():
        return {}
    m = pd.read_csv(path)
    keep = m[~m.name.isin(NOT_LOSSES)]
    return {f"{phase}:{name}": {"step": g.step.tolist(), "value": g.value.where(g.value > 1e-12).tolist()}
            for (phase, name), g in keep.groupby(["phase", "name"])}


def _files(run_dir: Path) -> dict:
    """Links: ``top`` (files of the run folder itself) and ``folders`` ({name, files} per
    sub-folder: evaluations newest first, then the others by name)."""
    run = RunFolder(run_dir)
    skip = {run.cache.name, run.checkpoints.name, run.latest.name}
    paths = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")
                   if p.is_file() and not skip & set(p.relative_to(run_dir).parts) and not p.name.startswith("."))
    groups: dict[str, list[str]] = {}
    for p in paths:
        if len(p.parts) > 1:
            groups.setdefault(p.parts[0], []).append(str(Path(*p.parts[1:])))
    evaluations = [e.name for e in reversed(run.evaluations())]
    order = [g for g in evaluations if g in groups] + sorted(g for g in groups if g not in evaluations)
    return {"top": [str(p) for p in paths if len(p.parts) == 1],
            "folders": [{"name": g, "files": groups[g]} for g in order]}


def _next_steps(run_dir: Path, task: str, folder: Path | None, particles: str | None) -> list[str]:
    r = str(run_dir)
    if task == "density":
        return [f"cryodyna sample-volumes {r} --z Z.txt -o {r}/volumes", f"cryodyna chimerax {r} -o {r}/movie.cxc"]
    z = evaluation_file(folder, "latents") if folder else f"{r}/epoch-.../{EVALUATION_FILES['latents']}"
    return [f"cryodyna analyze {r}", f"cryodyna cluster {r} --k 5 -o {r}/clusters",
            f"cryodyna train-density {particles or 'PARTICLES'} --z {z} -o {r}_density",
            f"cryodyna chimerax {r} -o {r}/movie.cxc"]


def write_report(run_dir: Path, reference: np.ndarray | None = None) -> Path:
    """Write ``RUN/report.html`` from the run folder's files (newest evaluation); ``reference``
    (N, 3) Å: the undeformed nodes, for displacement colours and bond statistics."""
    run_dir = Path(run_dir)
    folder = newest_evaluation(run_dir)
    summary = _summary(run_dir, folder)
    data = {"summary": summary, "losses": _losses(run_dir), "files": _files(run_dir),
            "next": _next_steps(run_dir, summary["task"], folder, summary["inputs"].get("particles")), "run": str(run_dir)}
    if folder is not None and evaluation_file(folder, "latents").is_file() and summary["task"] in ("atom", "cg"):
        data["deformation"] = _deformation_data(folder, reference)
        data["halfsets"] = _halfset_data(run_dir)
    if folder is not None and summary["task"] == "density":
        data["maps"] = _map_slices(folder)
    page = (TEMPLATE.replace("{{TITLE}}", html.escape(f"cryodyna {summary['task']} run: {run_dir.name}"))
            .replace("{{PLOTLY}}", get_plotlyjs()).replace("{{DATA}}", json.dumps(_finite(data), allow_nan=False).replace("</", "<\\/"))
            .replace("{{SCRIPT}}", (Path(__file__).with_name("run_report.js")).read_text()))
    out = RunFolder(run_dir).report
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page)
    os.replace(tmp, out)
    return out


TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{TITLE}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.card{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:.6em 1.5em;background:#f6f7f9;padding:1em;border-radius:6px}
.card div{min-width:0} .card div span{overflow-wrap:anywhere}
.card div b{display:block;font-size:.8em;color:#666;font-weight:normal}
.row{display:flex;flex-wrap:wrap;gap:1em} .plot{flex:1 1 480px;min-width:0;max-width:100%;height:460px}
details.folder summary{cursor:pointer} pre{white-space:pre-wrap;overflow-wrap:anywhere}
.warn{color:#a40} code,pre{background:#f0f0f0;padding:.2em .4em;border-radius:3px}
#selection{margin:.5em 0} img{max-width:45%}
</style>
<script>window.addEventListener("error", e => { const r = document.documentElement; r.dataset.jsErrors = (r.dataset.jsErrors || "") + String(e.message) + "; "; });</script>
<script>{{PLOTLY}}</script>
</head><body>
<h1>{{TITLE}}</h1>
<div id="summary" class="card"></div>
<div id="deformation"></div>
<div id="halfsets"></div>
<div id="maps"></div>
<h2>Losses</h2><div id="losses" class="row"></div>
<h2>Files</h2><div id="files"></div>
<h2>Next steps</h2><pre id="next"></pre>
<div id="js-status" data-rendered="0"></div>
<script id="report-data" type="application/json">{{DATA}}</script>
<script>{{SCRIPT}}</script>
</body></html>
"""
