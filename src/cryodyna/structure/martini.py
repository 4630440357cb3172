"""MARTINI coarse-grained model of an all-atom structure, built with vermouth's ``martinize2`` (run
as a subprocess of this Python; no external binaries) with the eight DSSP classes of mdtraj's DSSP
(turns and bends get their own parameters, as with martinize2's own ``-dssp``).

Martini 3 (``martini3001``) is the default; Martini 2.2 (``martini22``, the reference method's force
field, run with ``-noscfix``) is selectable for proteins; nucleic acids get Martini-DNA beads
(:mod:`cryodyna.structure.martini_nucleic`).  Bead amplitudes are the electrons of the heavy
atoms mapped to each bead (martinize2's mapping, shared atoms split); ``sizes`` are the beads'
Lennard-Jones sizes (regular / small / tiny beads).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import sparse

from cryodyna.errors import CryodynaError, InputError
from cryodyna.io.itp import Topology, concatenate, read_itp
from cryodyna.io.structure import PDB_CHAIN_IDS, Structure, write_structure
from cryodyna.structure.martini_mapping import mapping_weights
from cryodyna.structure.martini_nucleic import martinize_nucleic, nucleic_fragments
from cryodyna.structure.secondary import dssp

FORCE_FIELDS = {"martini3001": [], "martini22": ["-noscfix"]}
BACKBONE_BEADS = ("BB", "BB3")
NUCLEIC_FORCE_FIELD = "martini22"  # the Martini DNA parameters are Martini 2 ones, whatever the protein force field
# Lennard-Jones sigma (Å) of regular, small and tiny beads
BEAD_SIZES = {"martini3001": {"R": 4.7, "S": 4.1, "T": 3.4}, "martini22": {"R": 4.7, "S": 4.3, "T": 3.2}}


def bead_size_class(bead_type: str) -> str:
    """'T' (tiny), 'S' (small) or 'R' (regular) from a MARTINI bead type name (e.g. TC3, SP2, Q5)."""
    return bead_type[0] if bead_type[0] in "TS" and len(bead_type) > 1 and not bead_type[1].islower() else "R"


@dataclass
class CGModel:
    """A coarse-grained model.

    coords (N, 3) Å bead positions (map frame; minimised after cg-prep); mapped (N, 3) Å the positions
    martinize2 mapped from the atoms (where the all-atom reference sits relative to the beads); topology: bead names/types and bonded terms;
    residue (N,) index of each bead's residue in the all-atom structure; chain_id (N,) str;
    electrons (N,) heavy-atom electrons per bead; sizes (N,) LJ sigma Å from the bead size class;
    force_field (of the protein beads); itp: the molecule topologies (name -> text, martinize2 or
    polyply); ss: per-residue DSSP class letters (H G I E B T S C; 'N' for nucleotides).
    """

    coords: np.ndarray
    mapped: np.ndarray
    topology: Topology
    residue: np.ndarray
    chain_id: np.ndarray
    electrons: np.ndarray
    sizes: np.ndarray
    force_field: str
    itp: dict[str, str]
    ss: str

    @property
    def n_beads(self) -> int:
        return len(self.coords)

    def template(self, structure: Structure) -> Structure:
        """A structure with one atom per bead (atom name = bead name) in the residues of ``structure``,
        for writing bead models as PDB/mmCIF."""
        res, local = np.unique(self.residue, return_inverse=True)
        return Structure(
            coords=self.coords.copy(), atom_name=self.topology.names.copy(), element=np.full(self.n_beads, "C", dtype=object),
            atomic_number=np.full(self.n_beads, 6), residue=local.reshape(-1), res_name=structure.res_name[res],
            res_seq=structure.res_seq[res], ins_code=structure.ins_code[res], chain_id=structure.chain_id[res],
            res_kind=structure.res_kind[res])

    def backbone_beads(self) -> tuple[np.ndarray, np.ndarray]:
        """(residues (R,) with beads, in increasing order; index (R,) of each one's backbone bead: BB
        for amino acids, BB3 (the sugar) for nucleotides, else its first bead)."""
        residues, first = np.unique(self.residue, return_index=True)
        backbone = np.flatnonzero(np.isin(self.topology.names, BACKBONE_BEADS))
        position = np.searchsorted(residues, self.residue[backbone])
        first[position] = backbone
        return residues, first

    def with_coords(self, coords: np.ndarray) -> CGModel:
        """The same model with other bead positions (N, 3)."""
        return replace(self, coords=np.asarray(coords, dtype=np.float64))


def _martinize_script() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "martinize2"
    if not path.is_file():
        raise CryodynaError("martinize2 is not installed; pip install vermouth")
    return path


def _write_input(structure: Structure, path: Path) -> None:
    """Heavy atoms of ``structure`` as PDB for martinize2, without the CRYST1 record it rejects and
    with atom serial numbers beyond 99,999 wrapped to 5 decimal digits (gemmi writes them in
    hybrid-36, which martinize2 cannot read; it uses serials only for CONECT records, none here)."""
    write_structure(path, structure.select_atoms(np.flatnonzero(structure.atomic_number > 1)))
    lines, serial = [], 0
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith(("ATOM", "HETATM")):
            serial += 1
            line = f"{line[:6]}{serial % 100_000:5d}{line[11:]}"
        if not line.startswith("CRYST1"):
            lines.append(line)
    path.write_text("".join(lines))


def _molecule_itps(top: Path) -> list[Path]:
    """The molecule .itp files of a martinize2 topol.top, in [ molecules ] order (with counts)."""
    names, section = [], None
    for line in top.read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[] ").lower()
        elif section == "molecules" and line:
            name, count = line.split()[:2]
            names += [name] * int(count)
    return [top.parent / f"{n}.itp" for n in names]


@dataclass
class _Molecule:
    """Beads of one molecule: coords (M, 3) Å, residue (M,), topology, itp name and text."""

    coords: np.ndarray
    residue: np.ndarray
    topology: Topology
    name: str
    itp: str


def _martinize_proteins(structure: Structure, force_field: str, ss: str, source) -> list[_Molecule]:
    """The protein chains of ``structure`` through martinize2, one molecule per chain."""
    protein = structure.select_atoms(np.flatnonzero(structure.res_kind[structure.residue] == "protein"))
    with tempfile.TemporaryDirectory(prefix="cryodyna-martinize-") as tmp:
        tmp = Path(tmp)
        _write_input(protein, tmp / "aa.pdb")
        cmd = [sys.executable, str(_martinize_script()), "-f", "aa.pdb", "-x", "cg.pdb", "-o", "topol.top",
               "-ff", force_field, "-ss", ss, *FORCE_FIELDS[force_field]]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (tmp / "cg.pdb").is_file():
            problems = [ln.strip() for ln in proc.stderr.splitlines() if "WARNING" in ln or "ERROR" in ln or "Error" in ln]
            raise InputError(source, "martinize2 could not map the model: " + " | ".join(problems[:4] or [proc.stderr.strip()[-400:]])
                             + ". Missing side-chain or backbone atoms are the usual cause: complete the model "
                             "(e.g. with pdbfixer) and try again")
        itps = _molecule_itps(tmp / "topol.top")
        topologies = [read_itp(p) for p in itps]
        texts = [p.read_text() for p in itps]
        given, beads = _read_pdb_residues(tmp / "aa.pdb"), _read_pdb_residues(tmp / "cg.pdb")
    coords = beads.coords
    if len(coords) != sum(t.n_beads for t in topologies):
        raise CryodynaError(f"martinize2 wrote {len(coords)} beads but topologies of {sum(t.n_beads for t in topologies)}")
    residue = _bead_residues(structure, given, beads, source)
    empty = np.flatnonzero(~np.isfinite(coords).all(1))
    if empty.size:
        r, b = int(residue[empty[0]]), int(empty[0])
        names = np.concatenate([t.names for t in topologies])
        raise InputError(source, f"residue {structure.res_name[r]} {structure.chain_id[r]}{structure.res_seq[r]}: bead "
                         f"{names[b]} has none of its atoms in the model ({empty.size} bead(s) affected); "
                         "complete the missing side chains (e.g. with pdbfixer) and try again")
    molecules, start = [], 0
    for path, topology, text in zip(itps, topologies, texts):
        stop = start + topology.n_beads
        molecules.append(_Molecule(coords[start:stop], residue[start:stop], topology, path.stem, text))
        start = stop
    return molecules


def martinize(structure: Structure, force_field: str = "martini3001", source: str | Path | None = None) -> CGModel:
    """Map ``structure`` (map frame, Å) to MARTINI beads and build its topology: proteins with
    martinize2 in ``force_field``, nucleic acids with the Martini 2 DNA library (polyply).  Molecules
    (one per protein chain and per nucleic-acid strand) are ordered as their residues in the file."""
    if force_field not in FORCE_FIELDS:
        raise CryodynaError(f"force field {force_field!r} is not supported; choose one of {', '.join(FORCE_FIELDS)}")
    chains = len(set(structure.chain_id))
    if chains > len(PDB_CHAIN_IDS):
        raise InputError(source, f"{chains} chains; the bead level maps the model with martinize2 through a PDB file, which "
                         f"holds at most {len(PDB_CHAIN_IDS)} chains: train the residue level on it (cryodyna train-atom), "
                         "or train-cg on a model of at most 62 chains")
    protein = structure.res_kind == "protein"
    ss_res = dssp(structure)
    molecules = []
    if protein.any():
        ss = "".join(ss_res[protein])
        molecules += _martinize_proteins(structure, force_field, ss, source)
    for i, fragment in enumerate(nucleic_fragments(structure)):
        beads = martinize_nucleic(structure, fragment, f"nucleic_{i}", source)
        molecules.append(_Molecule(beads.coords, beads.residue, beads.topology, f"nucleic_{i}", beads.itp))
    molecules.sort(key=lambda m: int(m.residue.min()))
    topology = concatenate([m.topology for m in molecules])
    coords = np.concatenate([m.coords for m in molecules])
    residue = np.concatenate([m.residue for m in molecules])
    nucleic = structure.res_kind[residue] == "nucleic"
    sizes = np.array([BEAD_SIZES[NUCLEIC_FORCE_FIELD if n else force_field][bead_size_class(t)]
                      for t, n in zip(topology.types, nucleic)])
    return CGModel(coords, coords.copy(), topology, residue, structure.chain_id[residue].astype(object),
                   _bead_electrons(structure, coords, residue, topology.names, force_field), sizes, force_field, {m.name: m.itp for m in molecules},
                   "".join(ss_res))


@dataclass
class _PdbResidues:
    """Atoms of a PDB file in file order: coords (M, 3) Å and residue (M,) ordinal; per residue
    chain (R,) and name (R,).  A residue starts where the label (chain, number, insertion code, name)
    changes or after a TER record."""

    coords: np.ndarray
    residue: np.ndarray
    chain: np.ndarray
    name: np.ndarray


def _read_pdb_residues(path: Path) -> _PdbResidues:
    """:class:`_PdbResidues` of ``path``, read line by line: martinize2 numbers every molecule of a
    chain from 1, so a PDB reader that groups atoms by label (gemmi) merges residues of different
    molecules."""
    coords, residue, chain, name, previous = [], [], [], [], None
    for line in path.read_text().splitlines():
        if line.startswith("TER"):
            previous = None
        elif line.startswith(("ATOM", "HETATM")):
            label = line[17:27]
            if label != previous:
                chain.append(line[21])
                name.append(line[17:20].strip())
            previous = label
            residue.append(len(chain) - 1)
            coords.append((float(line[30:38]), float(line[38:46]), float(line[46:54])))
    return _PdbResidues(np.array(coords, dtype=np.float64).reshape(-1, 3), np.array(residue, dtype=np.int64),
                        np.array(chain, dtype=object), np.array(name, dtype=object))


def _bead_residues(structure: Structure, given: _PdbResidues, beads: _PdbResidues, source) -> np.ndarray:
    """Residue of ``structure`` of every bead of martinize2's output ``beads``, from its input
    ``given`` (the protein residues of ``structure`` in order).  martinize2 renumbers residues
    (``52A`` becomes ``53``) and may reorder whole chains (two chains it bonds because atoms of both
    touch are written together), but keeps the residues of each chain in input order: the k-th
    residue of chain X in its output is the k-th residue of chain X in its input."""
    protein = np.flatnonzero(structure.res_kind == "protein")
    ordinal = np.empty(len(beads.chain), dtype=np.int64)
    for chain in np.unique(given.chain):
        sent, back = np.flatnonzero(given.chain == chain), np.flatnonzero(beads.chain == chain)
        if len(sent) != len(back) or (given.name[sent] != beads.name[back]).any():
            k = int(np.argmax(given.name[sent[: len(back)]] != beads.name[back[: len(sent)]])) if len(back) else 0
            r = protein[sent[min(k, len(sent) - 1)]]
            raise InputError(source, f"martinize2 wrote {len(back)} residues for chain {chain}, which has {len(sent)} protein "
                             f"residues; they differ from residue {structure.res_name[r]} {structure.chain_id[r]}{structure.res_seq[r]} "
                             "on. Check this chain for residues with missing backbone atoms or unusual names")
        ordinal[back] = sent
    return protein[ordinal[beads.residue]]


def _grouped(labels: np.ndarray, n: int) -> list[np.ndarray]:
    """Indices of ``labels`` (M,) ints in [0, n) grouped by label: n arrays, each in increasing order."""
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.searchsorted(labels[order], np.arange(1, n)))


def bead_atom_shares(structure: Structure, residue: np.ndarray, names: np.ndarray, force_field: str) -> sparse.csr_array:
    """Sparse (n_beads, n_atoms) share of each heavy atom in each bead, as martinize2's mapping files
    say (:mod:`cryodyna.structure.martini_mapping`); beads of ``residue`` (n_beads,) residue index and
    ``names`` (n_beads,).  An atom the mapping does not name, or names for a bead its residue lacks
    (terminal oxygens, nucleotides), has an empty column."""
    weights = mapping_weights(force_field)
    rows, cols, values = [], [], []
    heavy = np.flatnonzero(structure.atomic_number > 1)
    atoms_of = _grouped(structure.residue[heavy], structure.n_residues)
    for r, beads in enumerate(_grouped(residue, structure.n_residues)):
        index = {str(n): b for n, b in zip(names[beads], beads)}
        mapping = weights.get(str(structure.res_name[r]), {})
        for a in heavy[atoms_of[r]]:
            atom = mapping.get(str(structure.atom_name[a]), {})
            if atom and all(bead in index for bead in atom):
                for bead, share in atom.items():
                    rows.append(index[bead]), cols.append(a), values.append(share)
    return sparse.csr_array((values, (rows, cols)), shape=(len(residue), structure.n_atoms))


def bead_position_weights(structure: Structure, cg: CGModel) -> sparse.csr_array:
    """Sparse (n_beads, n_atoms) weights that place each bead at the electron-weighted centre of its
    share of ``structure``'s heavy atoms (``weights @ coords``): martinize2's mapping of any
    conformation of the same atoms, within 0.04 Å RMS of martinize2's own positions on the AdK
    crystal structures and 0.10 Å on the first frame of its MD trajectory (terminal beads differ most)."""
    w = bead_atom_shares(structure, cg.residue, np.asarray(cg.topology.names), cg.force_field) * structure.atomic_number[None, :]
    return sparse.csr_array(w / np.maximum(w.sum(1), 1e-12)[:, None])


def _bead_electrons(structure: Structure, coords: np.ndarray, residue: np.ndarray, names: np.ndarray,
                    force_field: str) -> np.ndarray:
    """Heavy-atom electrons per bead: each atom split over its beads by :func:`bead_atom_shares`;
    an atom the mapping does not name goes to the nearest bead of its residue."""
    shares = bead_atom_shares(structure, residue, names, force_field)
    electrons = shares @ structure.atomic_number.astype(np.float64)
    unmapped = np.flatnonzero((structure.atomic_number > 1) & (np.asarray(shares.sum(0)) == 0))
    beads_of = _grouped(residue, structure.n_residues)
    for a in unmapped:
        beads = beads_of[structure.residue[a]]
        if len(beads):
            electrons[beads[np.argmin(((coords[beads] - structure.coords[a]) ** 2).sum(-1))]] += structure.atomic_number[a]
    return electrons
