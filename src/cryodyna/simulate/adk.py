"""The built-in adenylate-kinase example: closed (1AKE) <-> open (4AKE) transition.

The structures come from the ``MDAnalysisTests`` package (installed with the ``examples`` extra):
its data folder ships ``adk_closed.pdb`` (1AKE) and ``adk_open.pdb`` (4AKE), and a targeted-MD
closed -> open trajectory (``adk_gbis_tmd-fast1_NAMD.dcd`` with ``adk_closed_NAMD.psf``, NAMD with
GB implicit solvent, 100 frames).  They are located without importing MDAnalysis.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from cryodyna.errors import CryodynaError
from cryodyna.io.structure import Structure, read_structure, write_structure
from cryodyna.structure.align import kabsch
from cryodyna.structure.nodes import residue_nodes


def _data_files(*names: str) -> list[Path]:
    """Paths of files inside the installed MDAnalysisTests package's data folder."""
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is None or not spec.submodule_search_locations:
        raise CryodynaError("the AdK example needs the MDAnalysisTests package: from a clone of cryodyna, "
                            "pip install -e '.[examples]'")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    paths = [data / name for name in names]
    for p in paths:
        if not p.is_file():
            raise CryodynaError(f"{p} is missing from the MDAnalysisTests installation; reinstall it")
    return paths


def adk_source_files() -> tuple[Path, Path]:
    """Paths of the closed and open AdK PDB files inside the installed MDAnalysisTests package."""
    closed, opened = _data_files("adk_closed.pdb", "adk_open.pdb")
    return closed, opened


def adk_md_frames(every: int = 1) -> list[Structure]:
    """Every ``every``-th frame of the targeted-MD AdK closed -> open trajectory, superposed on the
    first frame by their CA atoms and centred at the first frame's atom centroid (the box centre)."""
    import tempfile
    import warnings

    import mdtraj

    dcd, psf = _data_files("adk_gbis_tmd-fast1_NAMD.dcd", "adk_closed_NAMD.psf")
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        traj = mdtraj.load_dcd(str(dcd), top=str(psf))[::every]
        traj[0].save_pdb(f"{tmp}/frame0.pdb")
        template = read_structure(Path(tmp) / "frame0.pdb")
    xyz = traj.xyz.astype(np.float64) * 10.0  # nm -> Å
    ca = traj.topology.select("name CA")
    origin = xyz[0].mean(0)
    frames = []
    for x in xyz:
        r, t = kabsch(x[ca], xyz[0, ca])
        frames.append(template.with_coords((x @ r.T + t - origin).astype(np.float32)))
    return frames


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
