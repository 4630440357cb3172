"""Secondary structure per residue with pydssp (no external DSSP binary)."""

from __future__ import annotations

import warnings

import numpy as np
import pydssp

from cryodyna.io.structure import Structure

BACKBONE = (("N",), ("CA",), ("C",), ("O", "OT1", "O1", "OXT"))  # C-terminal oxygens as fall-backs


def secondary_structure(structure: Structure) -> np.ndarray:
    """Three-state secondary structure per residue: 'H' (helix), 'E' (strand), 'C' (other).

    Computed per protein chain from the N, CA, C, O atoms; nucleotides get 'N'.  Residues missing
    backbone atoms are skipped (coil) with a warning; a chain with fewer than 3 complete residues
    (e.g. a CA-only model) is all coil.
    """
    ss = np.where(structure.res_kind == "nucleic", "N", "C").astype(object)
    for chain in structure.chains:
        res = np.flatnonzero((structure.chain_id == chain) & (structure.res_kind == "protein"))
        if res.size < 3:
            continue
        backbone = np.full((res.size, 4, 3), np.nan)
        for k, names in enumerate(BACKBONE):
            for name in reversed(names):  # the first name wins
                atoms = np.flatnonzero(structure.atom_name == name)
                rows = np.searchsorted(res, structure.residue[atoms])
                ok = (rows < res.size) & (res[np.minimum(rows, res.size - 1)] == structure.residue[atoms])
                backbone[rows[ok], k] = structure.coords[atoms[ok]]
        complete = ~np.isnan(backbone).any(axis=(1, 2))
        if not complete.all():
            warnings.warn(
                f"chain {chain}: {int((~complete).sum())} residue(s) lack N/CA/C/O; treated as coil", stacklevel=2
            )
        if complete.sum() < 3:
            continue
        c3 = np.asarray(pydssp.assign(backbone[complete].astype(np.float32), out_type="c3"))
        ss[res[complete]] = np.where(c3 == "-", "C", c3)
    return ss
