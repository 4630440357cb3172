"""Martini beads of nucleic-acid chains: the Martini-DNA mapping (Uusitalo et al. 2015; three backbone
beads and three or four base beads per nucleotide) and its topology from polyply's ``martini2``
library (the DNA parameters of the reference method's "martini22dna" force field), generated with
``polyply gen_params`` run as a subprocess of this Python (no external binaries).

Bead positions are mass-weighted centres of the heavy atoms of each group.  BB1 (the phosphate)
takes the O3' of the preceding nucleotide; the 5' nucleotide of a fragment has no BB1.  vermouth and
polyply have no Martini RNA parameters, so RNA residues (A/C/G/U) use the DNA ones, U those of T
(with a warning); ribose O2' joins BB3.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryodyna.errors import CryodynaError, InputError
from cryodyna.io.itp import Topology, read_itp
from cryodyna.io.structure import Structure

BACKBONE = {"BB1": ("P", "OP1", "OP2", "O5'"), "BB2": ("C5'", "O4'", "C4'"), "BB3": ("C3'", "C2'", "C1'", "O2'")}
PURINE = ("N9", "C4")
BASES = {
    "A": {"SC1": PURINE, "SC2": ("C2", "N3"), "SC3": ("C6", "N6", "N1"), "SC4": ("C8", "N7", "C5")},
    "G": {"SC1": PURINE, "SC2": ("C2", "N2", "N3"), "SC3": ("C6", "O6", "N1"), "SC4": ("C8", "N7", "C5")},
    "C": {"SC1": ("N1", "C6"), "SC2": ("N3", "C2", "O2"), "SC3": ("C5", "C4", "N4")},
    "T": {"SC1": ("N1", "C6"), "SC2": ("N3", "C2", "O2"), "SC3": ("C5", "C4", "O4", "C7")},
}
BASES["U"] = BASES["T"]
BASE_OF = {"DA": "A", "DC": "C", "DG": "G", "DT": "T", "DU": "U", "A": "A", "C": "C", "G": "G", "U": "U",
           "RA": "A", "RC": "C", "RG": "G", "RU": "U"}
MARTINI_RESIDUE = {"A": "DA", "C": "DC", "G": "DG", "T": "DT", "U": "DT"}
DNA = {"DA", "DC", "DG", "DT"}
ATOM_ALIASES = {"O1P": "OP1", "O2P": "OP2", "C5M": "C7"}
MASS = {"C": 12.011, "N": 14.007, "O": 15.999, "P": 30.974, "S": 32.06}
LINK_DISTANCE = 2.0  # Å: O3'(i)-P(i+1) farther than this starts a new fragment
LIBRARY = "martini2"


def canonical_atom_name(name: str) -> str:
    """PDB v3 nucleotide atom name of ``name`` (``*`` -> ``'``, O1P -> OP1, O2P -> OP2, C5M -> C7)."""
    name = name.replace("*", "'")
    return ATOM_ALIASES.get(name, name)


def _atoms_of(structure: Structure, residue: int) -> dict[str, int]:
    """Heavy-atom name -> atom index of one residue."""
    atoms = np.flatnonzero((structure.residue == residue) & (structure.atomic_number > 1))
    return {canonical_atom_name(str(structure.atom_name[a])): int(a) for a in atoms}


def nucleic_fragments(structure: Structure) -> list[np.ndarray]:
    """Residue indices of each covalently continuous stretch of nucleotides: consecutive nucleic
    residues of one chain whose O3'(i)-P(i+1) distance is at most ``LINK_DISTANCE``."""
    fragments: list[list[int]] = []
    previous = None
    for r in np.flatnonzero(structure.res_kind == "nucleic"):
        joined = False
        if previous is not None and r == previous + 1 and structure.chain_id[r] == structure.chain_id[previous]:
            a, b = _atoms_of(structure, previous), _atoms_of(structure, r)
            if "O3'" in a and "P" in b:
                joined = np.linalg.norm(structure.coords[a["O3'"]] - structure.coords[b["P"]]) <= LINK_DISTANCE
        if joined:
            fragments[-1].append(int(r))
        else:
            fragments.append([int(r)])
        previous = r
    return [np.array(f, dtype=np.int64) for f in fragments]


@dataclass
class NucleicBeads:
    """Beads of one nucleic-acid fragment: coords (M, 3) Å, residue (M,) index into the structure,
    topology (bonded terms, bead names and Martini 2 types), itp (the polyply topology text)."""

    coords: np.ndarray
    residue: np.ndarray
    topology: Topology
    itp: str


def _bead_groups(res_name: str, first: bool) -> dict[str, tuple[str, ...]]:
    groups = {k: v for k, v in BACKBONE.items() if not (first and k == "BB1")}
    return {**groups, **BASES[BASE_OF[res_name]]}


def map_fragment(structure: Structure, residues: np.ndarray, source=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Bead positions (M, 3) Å, their residues (M,) and names for the nucleotides ``residues`` (one
    fragment, 5' to 3'); a bead with none of its atoms present is an error naming it."""
    coords, owner, names = [], [], []
    previous_o3 = None
    for i, r in enumerate(residues):
        atoms = _atoms_of(structure, r)
        for bead, group in _bead_groups(str(structure.res_name[r]), i == 0).items():
            members = [atoms[a] for a in group if a in atoms]
            if bead == "BB1" and previous_o3 is not None:
                members.append(previous_o3)
            if not members:
                raise InputError(source, f"nucleotide {structure.res_name[r]} {structure.chain_id[r]}{structure.res_seq[r]}: "
                                 f"bead {bead} has none of its atoms ({', '.join(group)}) in the model; complete the "
                                 "nucleotide (e.g. with pdbfixer) and try again")
            mass = np.array([MASS.get(str(structure.element[a]).upper(), 12.011) for a in members])
            coords.append(mass @ structure.coords[members] / mass.sum())
            owner.append(int(r))
            names.append(bead)
        previous_o3 = atoms.get("O3'")
    return np.array(coords, dtype=np.float64), np.array(owner, dtype=np.int64), names


def _polyply_script() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "polyply"
    if not path.is_file():
        raise CryodynaError("polyply is not installed; pip install polyply cgsmiles pysmiles (or reinstall cryodyna)")
    return path


def fragment_topology(res_names: list[str], name: str) -> tuple[Topology, str]:
    """Martini 2 DNA topology of one strand with residues ``res_names`` (5' to 3'), from polyply."""
    martini = [MARTINI_RESIDUE[BASE_OF[n]] for n in res_names]
    martini[0] += "5"
    martini[-1] += "3"
    with tempfile.TemporaryDirectory(prefix="cryodyna-polyply-") as tmp:
        out = Path(tmp) / f"{name}.itp"
        cmd = [sys.executable, str(_polyply_script()), "gen_params", "-lib", LIBRARY, "-name", name, "-o", str(out),
               "-seq", *(f"{m}:1" for m in martini)]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.is_file():
            raise CryodynaError(f"polyply could not build the Martini DNA topology: {proc.stderr.strip()[-400:]}")
        return read_itp(out), out.read_text()


def martinize_nucleic(structure: Structure, residues: np.ndarray, name: str, source=None) -> NucleicBeads:
    """Beads and topology of one nucleic-acid fragment (residue indices, 5' to 3')."""
    if len(residues) < 2:
        r = residues[0]
        raise InputError(source, f"nucleotide {structure.res_name[r]} {structure.chain_id[r]}{structure.res_seq[r]} is "
                         "not bonded to another nucleotide; the Martini DNA library has no single-nucleotide "
                         "topology (remove it or complete the strand)")
    res_names = [str(structure.res_name[r]) for r in residues]
    if not set(res_names) <= DNA:
        warnings.warn(f"chain {structure.chain_id[residues[0]]}: RNA residues get the Martini DNA parameters "
                      "(U those of T); no Martini RNA library is available", stacklevel=2)
    coords, owner, names = map_fragment(structure, residues, source)
    topology, itp = fragment_topology(res_names, name)
    if list(topology.names) != names:
        raise CryodynaError(f"polyply's Martini DNA topology has beads {list(topology.names)[:8]}... but the "
                            f"mapping produced {names[:8]}...")
    return NucleicBeads(coords, owner, topology, itp)
