"""All-atom models from deformed bead models: each residue of the all-atom reference is moved by the
rigid transform that best superposes its reference beads (plus the backbone beads of its sequence
neighbours) onto the deformed ones (batched Kabsch), so side chains and backbone follow the beads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from cryodyna.errors import CryodynaError, InputError
from cryodyna.io.structure import Structure, read_models, read_structure, write_structure
from cryodyna.structure.martini import CGModel
from cryodyna.assembly.cg_prep import load_cg
from cryodyna.runs.layout import RunFolder, structure_file
from cryodyna.runs.read import latest_evaluation, read_info


def _fit_sets(structure: Structure, cg: CGModel) -> tuple[np.ndarray, np.ndarray]:
    """Padded bead indices (R, S) per residue (own beads + the first bead of the residues at +-1,
    and at +-2 while fewer than 3 points, in the same chain) and their validity mask (R, S)."""
    sets = []
    first_bead = {}
    for b, r in enumerate(cg.residue):
        first_bead.setdefault(int(r), b)
    for r in range(structure.n_residues):
        own = np.flatnonzero(cg.residue == r).tolist()
        for n in (r - 1, r + 1, r - 2, r + 2):
            if (abs(n - r) == 1 or len(own) < 3) and n in first_bead and structure.chain_id[n] == structure.chain_id[r]:
                own.append(first_bead[n])
        sets.append(own)
    width = max(len(s) for s in sets)
    idx = np.zeros((len(sets), width), dtype=np.int64)
    mask = np.zeros((len(sets), width), dtype=bool)
    for i, s in enumerate(sets):
        idx[i, : len(s)], mask[i, : len(s)] = s, True
    return idx, mask


def _batched_kabsch(p: np.ndarray, q: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (..., R, 3, 3) and translations (..., R, 3) with ``R p + t ~ q`` for point sets
    p (R, S, 3) and q (..., R, S, 3) with weights w (R, S); sets of fewer than 3 points get
    translation only."""
    ws = w / w.sum(1, keepdims=True)
    pc, qc = (ws[..., None] * p).sum(-2), (ws[..., None] * q).sum(-2)
    h = np.einsum("rs,rsi,...rsj->...rij", ws, p - pc[:, None], q - qc[..., None, :])
    u, _, vt = np.linalg.svd(h)
    v, ut = np.swapaxes(vt, -1, -2), np.swapaxes(u, -1, -2)
    d = np.sign(np.linalg.det(v @ ut))
    fix = np.broadcast_to(np.eye(3), h.shape).copy()
    fix[..., 2, 2] = d
    rot = v @ fix @ ut
    rot[..., w.sum(1) < 3, :, :] = np.eye(3)
    return rot, qc - np.einsum("...rij,rj->...ri", rot, pc)


def backmap(structure: Structure, cg: CGModel, beads: np.ndarray, batch: int = 64) -> np.ndarray:
    """All-atom coordinates (K, A, 3) for bead models ``beads`` (K, N, 3) Å, given the all-atom
    reference ``structure`` and its CG model ``cg`` (the fit starts from ``cg.mapped``, the bead
    positions that match the atoms); ``batch`` models are fitted at once."""
    beads = np.asarray(beads, dtype=np.float64)
    idx, mask = _fit_sets(structure, cg)
    ref = cg.mapped[idx]
    r = structure.residue
    out = np.empty((len(beads), structure.n_atoms, 3))
    for start in range(0, len(beads), batch):
        rot, trans = _batched_kabsch(ref, beads[start : start + batch][:, idx], mask.astype(np.float64))
        out[start : start + batch] = np.einsum("kaij,aj->kai", rot[:, r], structure.coords) + trans[:, r]
    return out


@dataclass
class GeometryReport:
    """bond_rms_dev (Å): RMS change of covalent bond lengths (pairs < 1.9 Å in the reference);
    bond_max_dev (Å); clash_fraction: fraction of heavy atoms with a non-bonded heavy atom (not
    within 3 bonds in the reference) closer than 2.2 Å."""

    bond_rms_dev: float
    bond_max_dev: float
    clash_fraction: float


def geometry_report(reference: Structure, coords: np.ndarray) -> GeometryReport:
    """Bond-length and clash statistics of all-atom models (K, A, 3) against the reference geometry."""
    heavy = np.flatnonzero(reference.atomic_number > 1)
    x0 = reference.coords[heavy]
    bonds = cKDTree(x0).query_pairs(1.9, output_type="ndarray").reshape(-1, 2)
    n = len(heavy)
    link = sparse.coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n))
    link = (link + link.T + sparse.identity(n)).tocsr()
    near = link @ link @ link  # non-zero for atoms within three bonds
    ref_len = np.linalg.norm(x0[bonds[:, 0]] - x0[bonds[:, 1]], axis=1)
    devs, clashes = [], 0
    for model in np.asarray(coords)[:, heavy]:
        devs.append(np.linalg.norm(model[bonds[:, 0]] - model[bonds[:, 1]], axis=1) - ref_len)
        close = cKDTree(model).query_pairs(2.2, output_type="ndarray")
        far = np.asarray(near[close[:, 0], close[:, 1]]).reshape(-1) == 0
        clashes += len(np.unique(close[far]))
    dev = np.concatenate(devs) if devs else np.zeros(1)
    return GeometryReport(float(np.sqrt((dev**2).mean())), float(np.abs(dev).max()), clashes / max(n * len(devs), 1))


def _find_run(path: Path) -> Path | None:
    for folder in [path, *path.parents][:4]:
        if read_info(folder).get("task") == "cg":
            return folder
    return None


def run_backmapping(run: Path) -> tuple[Structure, CGModel]:
    """The all-atom reference and the CG model of a ``train-cg`` run folder (what
    :func:`backmap` needs); a clear error for any other folder."""
    info = read_info(run)
    if info.get("task") != "cg" or not RunFolder(run).cg_model.is_file():
        raise CryodynaError(f"{run}: not a train-cg run folder; all-atom models need the bead level (train-cg)")
    return read_structure(info["model"]), load_cg(RunFolder(run).cg_model)


def backmap_run(source: Path, out: Path, run: Path | None = None, relax_iterations: int | None = None,
                restraint_k: float = 1000.0) -> tuple[int, GeometryReport, GeometryReport | None]:
    """Back-map the bead models of ``source`` (a train-cg run folder: its latest ``pred.pdb``; or a
    bead PDB) into ``out``, relaxed with OpenMM when ``relax_iterations`` is given
    (:func:`cryodyna.analysis.relax.relax`, restraint ``restraint_k`` kJ mol^-1 nm^-2); returns (number
    of models, geometry report of the back-mapped models, report after relaxation or None)."""
    source = Path(source)
    run = Path(run) if run else _find_run(source)
    if run is None or not RunFolder(run).cg_model.is_file():
        raise CryodynaError(f"{source}: cannot find the train-cg run it belongs to; pass --run RUN")
    if source.is_dir():
        source = structure_file(latest_evaluation(run), "pred")
    reference, cg = run_backmapping(run)
    beads = np.stack([m.coords for m in read_models(source)])
    if beads.shape[1] != cg.n_beads:
        raise InputError(source, f"has {beads.shape[1]} atoms per model but the run's CG model has {cg.n_beads} beads")
    coords = backmap(reference, cg, beads)
    report = geometry_report(reference, coords)
    relaxed = None
    if relax_iterations is not None:
        from cryodyna.analysis.relax import relax

        coords = relax(reference, coords, restraint_k, relax_iterations)
        relaxed = geometry_report(reference, coords)
    write_structure(out, reference, coords)
    return len(coords), report, relaxed
