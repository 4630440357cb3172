"""The built-in adenylate-kinase example: closed (1AKE) <-> open (4AKE) transition.

The two structures come from the ``MDAnalysisTests`` package (``pip install cryodyna[examples]``):
its data folder ships ``adk_closed.pdb`` (1AKE) and ``adk_open.pdb`` (4AKE).  They are located
without importing MDAnalysis.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from cryodyna.errors import CryodynaError
from cryodyna.io.structure import Structure, read_structure, write_structure
from cryodyna.structure.align import kabsch
from cryodyna.structure.nodes import residue_nodes


def adk_source_files() -> tuple[Path, Path]:
    """Paths of the closed and open AdK PDB files inside the installed MDAnalysisTests package."""
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is None or not spec.submodule_search_locations:
        raise CryodynaError("the AdK example needs the MDAnalysisTests package: pip install 'cryodyna[examples]'")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    closed, opened = data / "adk_closed.pdb", data / "adk_open.pdb"
    for p in (closed, opened):
        if not p.is_file():
            raise CryodynaError(f"{p} is missing from the MDAnalysisTests installation; reinstall it")
    return closed, opened


def adk_states() -> tuple[Structure, Structure]:
    """Closed and open AdK, the open state superposed on the closed one (CA atoms) and both translated
    so that the closed state's atom centroid is at the origin (the box centre)."""
    import warnings

    closed_path, open_path = adk_source_files()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blank chain ids are expected in these files
        closed, opened = read_structure(closed_path), read_structure(open_path)
    ca_c, ca_o = residue_nodes(closed).coords, residue_nodes(opened).coords
    r, t = kabsch(ca_o, ca_c)
    centre = closed.coords.mean(0)
    return closed.with_coords(closed.coords - centre), opened.with_coords(opened.coords @ r.T + t - centre)


def write_adk_models(out_dir: Path) -> tuple[Path, Structure, Structure]:
    """Write ``reference.pdb`` (closed, centred) and ``open.pdb`` (aligned) to ``out_dir``."""
    closed, opened = adk_states()
    out_dir.mkdir(parents=True, exist_ok=True)
    ref = out_dir / "reference.pdb"
    write_structure(ref, closed)
    write_structure(out_dir / "open.pdb", opened)
    return ref, closed, opened


def path_rmsd(closed: Structure, opened: Structure) -> float:
    """CA RMSD (Å) between the aligned closed and open states (as returned by :func:`adk_states`)."""
    a, b = residue_nodes(closed).coords, residue_nodes(opened).coords
    return float(np.sqrt(((a - b) ** 2).sum(1).mean()))
