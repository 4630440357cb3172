"""Secondary structure per residue: the eight DSSP classes from mdtraj's DSSP implementation (no
external binary), and their three-state reduction.

DSSP classes: H (alpha helix), G (3-10 helix), I (pi helix), E (strand), B (isolated bridge),
T (H-bonded turn), S (bend), C (coil).  Three states: H (H, G, I), E (E, B), C (the rest).
Nucleotides get 'N'.
"""

from __future__ import annotations

import warnings

import mdtraj
import numpy as np

from cryodyna.io.structure import Structure

BACKBONE = (("N",), ("CA",), ("C",), ("O", "OT1", "O1", "OXT"))  # C-terminal oxygens as fall-backs
THREE_STATE = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E"}


def _backbone(structure: Structure, res: np.ndarray) -> np.ndarray:
    """N, CA, C, O coordinates (R, 4, 3) Å of residues ``res`` (NaN where an atom is missing)."""
    backbone = np.full((res.size, 4, 3), np.nan)
    for k, names in enumerate(BACKBONE):
        for name in reversed(names):  # the first name wins
            atoms = np.flatnonzero(structure.atom_name == name)
            rows = np.searchsorted(res, structure.residue[atoms])
            ok = (rows < res.size) & (res[np.minimum(rows, res.size - 1)] == structure.residue[atoms])
            backbone[rows[ok], k] = structure.coords[atoms[ok]]
    return backbone


def dssp(structure: Structure) -> np.ndarray:
    """DSSP class per residue (object array of one-letter codes, see the module docstring).

    Computed per protein chain from N, CA, C, O (mdtraj places the amide hydrogens); residues
    missing backbone atoms are coil, with a warning; chains with fewer than 3 complete residues
    (a CA-only model) are all coil.
    """
    ss = np.where(structure.res_kind == "nucleic", "N", "C").astype(object)
    for chain in structure.chains:
        res = np.flatnonzero((structure.chain_id == chain) & (structure.res_kind == "protein"))
        if res.size < 3:
            continue
        backbone = _backbone(structure, res)
        complete = ~np.isnan(backbone).any(axis=(1, 2))
        if not complete.all():
            warnings.warn(f"chain {chain}: {int((~complete).sum())} residue(s) lack N/CA/C/O; treated as coil", stacklevel=2)
        if complete.sum() < 3:
            continue
        top = mdtraj.Topology()
        md_chain = top.add_chain()
        for r in res[complete]:
            residue = top.add_residue(str(structure.res_name[r]), md_chain, int(structure.res_seq[r]))
            for name, element in (("N", "N"), ("CA", "C"), ("C", "C"), ("O", "O")):
                top.add_atom(name, mdtraj.element.get_by_symbol(element), residue)
        xyz = backbone[complete].reshape(1, -1, 3) / 10.0  # nm
        codes = mdtraj.compute_dssp(mdtraj.Trajectory(xyz.astype(np.float32), top), simplified=False)[0]
        ss[res[complete]] = np.where(codes == " ", "C", codes)
    return ss


def three_state(classes) -> np.ndarray:
    """DSSP classes (one letter each) -> 'H', 'E', 'C' ('N' stays 'N')."""
    return np.array([THREE_STATE.get(s, s if s == "N" else "C") for s in classes], dtype=object)


def secondary_structure(structure: Structure) -> np.ndarray:
    """Three-state secondary structure per residue ('H', 'E', 'C'; 'N' for nucleotides)."""
    return three_state(dssp(structure))
