"""Human-readable summaries of any input file (``cryodyna info``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cryodyna.data.dataset import check_images
from cryodyna.errors import InputError
from cryodyna.io.cryodrgn import load_pickle
from cryodyna.io.mrc import ImageStack, read_header
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_models
from cryodyna.structure.nodes import residue_nodes

STRUCTURE_SUFFIXES = {".pdb", ".ent", ".cif", ".mmcif"}
MRC_SUFFIXES = {".mrc", ".mrcs", ".map", ".st"}


def describe(path: str | Path, apix: float | None = None, datadir: str | Path | None = None) -> list[tuple[str, str]]:
    """(label, value) rows describing a particle table, pickle, MRC file or atomic model."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix in {".star", ".cs"}:
        return _describe_particles(path, apix, datadir)
    if suffix == ".pkl":
        return _describe_pickle(path)
    if suffix in MRC_SUFFIXES:
        return describe_mrc(path)
    if suffix in STRUCTURE_SUFFIXES:
        return _describe_structure(path)
    raise InputError(path, f"unknown file type {suffix!r}; expected .star, .cs, .pkl, .mrc/.mrcs, .pdb or .cif")


def _range(values: np.ndarray, fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(np.min(values))} - {fmt.format(np.max(values))}"


def _describe_particles(path: Path, apix, datadir) -> list[tuple[str, str]]:
    t = read_particles(path, datadir=datadir, apix=apix)
    stacks = np.unique(t.image_file)
    present = sum(os.path.isfile(f) for f in stacks)
    rows = [
        ("file", str(path)),
        ("particles", str(len(t))),
        ("poses", "yes" if t.has_poses else "no"),
        ("image stacks", f"{len(stacks)} referenced, {present} found"),
        ("defocus U/V (Å)", f"{_range(t.defocus_u)} / {_range(t.defocus_v)}"),
        ("shifts x/y (Å)", f"{_range(t.shifts[:, 0], '{:.2f}')} / {_range(t.shifts[:, 1], '{:.2f}')}"),
        ("optics groups", str(len(np.unique(t.optics_group)))),
    ]
    missing = [f for f in stacks if not os.path.isfile(f)]
    if missing:
        rows.append(("missing stack", f"{missing[0]} (looked for there; --datadir FOLDER looks in another folder)"
                     + (f", and {len(missing) - 1} more" if len(missing) > 1 else "")))
    else:
        try:
            check_images(t)
        except InputError as exc:
            rows.append(("problem", exc.problem))
    for g in t.optics_summary():
        box = "unknown" if g["box"] < 0 else f"{g['box']} px"
        px = "unknown" if np.isnan(g["pixel_size"]) else f"{g['pixel_size']:.4f} Å"
        rows.append(
            (f"  group {g['group']}", f"{g['particles']} particles, box {box}, pixel {px}, {g['voltage']:.0f} kV, "
             f"Cs {g['cs']:.2f} mm, amplitude contrast {g['amp_contrast']:.3f}")
        )
    return rows


def _describe_pickle(path: Path) -> list[tuple[str, str]]:
    obj = load_pickle(path)
    if isinstance(obj, tuple) and len(obj) == 2 and np.asarray(obj[0]).ndim == 3:
        rot, trans = np.asarray(obj[0]), np.asarray(obj[1])
        return [("file", str(path)), ("content", "cryoDRGN poses"), ("particles", str(len(rot))),
                ("translations (fraction of box)", f"{_range(trans, '{:.4f}')}")]
    arr = np.asarray(obj)
    if arr.ndim == 3 and arr.shape[1:] == (3, 3):
        return [("file", str(path)), ("content", "cryoDRGN rotations"), ("particles", str(len(arr)))]
    if arr.ndim == 2 and arr.shape[1] == 9:
        return [("file", str(path)), ("content", "cryoDRGN CTF parameters"), ("particles", str(len(arr))),
                ("box (px)", _range(arr[:, 0], "{:.0f}")), ("pixel size (Å)", _range(arr[:, 1], "{:.4f}")),
                ("defocus U (Å)", _range(arr[:, 2])), ("voltage (kV)", _range(arr[:, 5], "{:.0f}"))]
    if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
        return [("file", str(path)), ("content", "particle index selection"), ("particles", str(len(arr)))]
    raise InputError(path, "unrecognised pickle: expected cryoDRGN poses, CTF parameters or an index array")


def describe_mrc(path: str | Path, statistics: bool = False) -> list[tuple[str, str]]:
    """Header summary of an MRC file; ``statistics`` adds min / max / mean / std of the data."""
    path = Path(path)
    h = read_header(path)
    kind = "volume" if path.suffix.lower() in {".mrc", ".map"} and h.n == h.nx else "image stack"
    rows = [("file", str(path)), ("content", kind), ("shape (x, y, sections)", f"{h.nx} x {h.ny} x {h.n}"),
            ("voxel size (Å)", f"{h.voxel_size:.4f}"), ("origin (Å)", ", ".join(f"{o:.2f}" for o in h.origin)),
            ("mode", str(h.mode))]
    if statistics:
        data = ImageStack().data(path)
        rows.append(("values (min / max / mean / std)",
                     f"{float(data.min()):.4g} / {float(data.max()):.4g} / {float(data.mean()):.4g} / {float(data.std()):.4g}"))
    return rows


def _describe_structure(path: Path) -> list[tuple[str, str]]:
    models = read_models(path)
    s = models[0]
    chains = ", ".join(f"{c} ({int((s.chain_id == c).sum())} {s.res_kind[s.chain_id == c][0]})" for c in s.chains)
    rows = [("file", str(path)), ("models", str(len(models))), ("chains", chains), ("residues", str(s.n_residues)),
            ("atoms", str(s.n_atoms))]
    try:
        nodes = residue_nodes(s, path)
    except InputError as exc:  # e.g. a coarse-grained model: beads instead of CA atoms
        rows.append(("residue nodes", f"unavailable: {exc.problem}"))
        points = s.coords
    else:
        rows.append(("electrons", f"{nodes.electrons.sum():.0f}"))
        points = nodes.coords
    centre = points.mean(0)
    radius = np.linalg.norm(points - centre, axis=1).max()
    return rows + [("centroid (Å)", ", ".join(f"{c:.2f}" for c in centre)),
                   ("max distance from centroid (Å)", f"{radius:.1f}")]
