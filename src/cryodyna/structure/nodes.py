"""Residue-level nodes: one Gaussian per residue at its CA (protein) or C1' (nucleotide)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryodyna.errors import InputError
from cryodyna.io.structure import Structure

NODE_ATOM = {"protein": "CA", "nucleic": "C1'"}


@dataclass
class ResidueNodes:
    """Nodes in file order (chains, then residues), one per residue.

    coords: (N, 3) Å.  electrons: (N,) sum of atomic numbers of every atom of the residue present
    in the file (hydrogens included when present).  atoms: (N,) index of the node atom in the
    structure.  template: the structure restricted to the node atoms (for writing models).
    """

    coords: np.ndarray
    electrons: np.ndarray
    atoms: np.ndarray
    template: Structure

    def __len__(self) -> int:
        return len(self.coords)


def residue_nodes(structure: Structure, source: str | Path | None = None) -> ResidueNodes:
    """Select the CA / C1' atom of every residue; a residue without it is an error naming it."""
    node_atoms = np.full(structure.n_residues, -1, dtype=np.int64)
    want = np.array([NODE_ATOM[k] for k in structure.res_kind], dtype=object)
    is_node = structure.atom_name == want[structure.residue]
    first = np.flatnonzero(is_node)
    # keep the first matching atom of each residue
    res_of_first = structure.residue[first]
    _, pos = np.unique(res_of_first, return_index=True)
    node_atoms[res_of_first[pos]] = first[pos]
    missing = np.flatnonzero(node_atoms < 0)
    if missing.size:
        r = int(missing[0])
        raise InputError(
            source,
            f"residue {structure.res_name[r]} {structure.chain_id[r]}{structure.res_seq[r]}{structure.ins_code[r]} "
            f"has no {NODE_ATOM[structure.res_kind[r]]} atom ({missing.size} residue(s) affected); "
            "complete the model (e.g. with pdbfixer) or remove these residues",
        )
    electrons = np.bincount(structure.residue, weights=structure.atomic_number, minlength=structure.n_residues)
    return ResidueNodes(
        coords=structure.coords[node_atoms],
        electrons=electrons.astype(np.float64),
        atoms=node_atoms,
        template=structure.select_atoms(node_atoms),
    )
