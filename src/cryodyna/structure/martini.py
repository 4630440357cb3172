"""MARTINI coarse-grained model of an all-atom structure, built with vermouth's ``martinize2`` (run
as a subprocess of this Python; no external binaries) with secondary structure from pydssp.

Martini 3 (``martini3001``) is the default; Martini 2.2 (``martini22``, the reference method's force
field, run with ``-noscfix``) is selectable.  Proteins only: vermouth has no nucleotide mappings.  Bead amplitudes are the electrons of the heavy
atoms mapped to each bead (each heavy atom goes to the nearest bead of its residue); Gaussian widths
are half the bead's Lennard-Jones size (regular / small / tiny beads).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import gemmi
import numpy as np

from cryodyna.errors import CryodynaError, InputError
from cryodyna.io.itp import Topology, concatenate, read_itp
from cryodyna.io.structure import Structure, write_structure
from cryodyna.structure.secondary import secondary_structure

FORCE_FIELDS = {"martini3001": [], "martini22": ["-noscfix"]}
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
    force_field; itp: the martinize2 molecule topologies (name -> text); ss: per-residue letters.
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

    def with_coords(self, coords: np.ndarray) -> CGModel:
        """The same model with other bead positions (N, 3)."""
        return replace(self, coords=np.asarray(coords, dtype=np.float64))


def _martinize_script() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "martinize2"
    if not path.is_file():
        raise CryodynaError("martinize2 is not installed; pip install vermouth (or pip install 'cryodyna[cg]')")
    return path


def _write_input(structure: Structure, path: Path) -> None:
    """Heavy atoms of ``structure`` as PDB for martinize2, without the CRYST1 record it rejects."""
    write_structure(path, structure.select_atoms(np.flatnonzero(structure.atomic_number > 1)))
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if not line.startswith("CRYST1")))


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


def martinize(structure: Structure, force_field: str = "martini3001", source: str | Path | None = None) -> CGModel:
    """Map ``structure`` (map frame, Å) to MARTINI beads and build its topology with martinize2."""
    if force_field not in FORCE_FIELDS:
        raise CryodynaError(f"force field {force_field!r} is not supported; choose one of {', '.join(FORCE_FIELDS)}")
    if (structure.res_kind == "nucleic").any():
        raise InputError(source, "the model contains nucleotides; vermouth's martinize2 ships no atomistic-to-MARTINI "
                         "nucleotide mappings, so the bead level supports proteins only for now (use train-atom, "
                         "which handles nucleic acids, or remove the nucleic-acid chains)")
    ss_res = secondary_structure(structure)
    ss = "".join("C" if s == "N" else s for s in ss_res)
    with tempfile.TemporaryDirectory(prefix="cryodyna-martinize-") as tmp:
        tmp = Path(tmp)
        _write_input(structure, tmp / "aa.pdb")
        cmd = [sys.executable, str(_martinize_script()), "-f", "aa.pdb", "-x", "cg.pdb", "-o", "topol.top",
               "-ff", force_field, "-ss", ss, *FORCE_FIELDS[force_field]]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (tmp / "cg.pdb").is_file():
            problems = [ln.strip() for ln in proc.stderr.splitlines() if "WARNING" in ln or "ERROR" in ln or "Error" in ln]
            raise InputError(source, "martinize2 could not map the model: " + " | ".join(problems[:4] or [proc.stderr.strip()[-400:]])
                             + ". Missing side-chain or backbone atoms are the usual cause: complete the model "
                             "(e.g. with pdbfixer) and try again")
        itps = _molecule_itps(tmp / "topol.top")
        topology = concatenate([read_itp(p) for p in itps])
        itp_text = {p.stem: p.read_text() for p in dict.fromkeys(itps)}
        cg = gemmi.read_structure(str(tmp / "cg.pdb"))
    beads = [(ch.name, res.seqid.num, atom.name, atom.pos.tolist()) for ch in cg[0] for res in ch for atom in res]
    if len(beads) != topology.n_beads:
        raise CryodynaError(f"martinize2 wrote {len(beads)} beads but a topology of {topology.n_beads}")
    coords = np.array([b[3] for b in beads], dtype=np.float64)
    chain_id = np.array([b[0] for b in beads], dtype=object)
    residue = _bead_residues(structure, chain_id, np.array([b[1] for b in beads]), source)
    empty = np.flatnonzero(~np.isfinite(coords).all(1))
    if empty.size:
        r, b = int(residue[empty[0]]), int(empty[0])
        raise InputError(source, f"residue {structure.res_name[r]} {structure.chain_id[r]}{structure.res_seq[r]}: bead "
                         f"{topology.names[b]} has none of its atoms in the model ({empty.size} bead(s) affected); "
                         "complete the missing side chains (e.g. with pdbfixer) and try again")
    sizes = np.array([BEAD_SIZES[force_field][bead_size_class(t)] for t in topology.types])
    return CGModel(coords, coords.copy(), topology, residue, chain_id, _bead_electrons(structure, coords, residue), sizes,
                   force_field, itp_text, ss)


def _bead_residues(structure: Structure, chain_id: np.ndarray, res_seq: np.ndarray, source) -> np.ndarray:
    lookup = {(c, int(n)): r for r, (c, n) in enumerate(zip(structure.chain_id, structure.res_seq))}
    try:
        return np.array([lookup[(c, int(n))] for c, n in zip(chain_id, res_seq)], dtype=np.int64)
    except KeyError as exc:
        raise InputError(source, f"martinize2 produced a bead for residue {exc.args[0]} that is not in the model") from None


def _bead_electrons(structure: Structure, coords: np.ndarray, residue: np.ndarray) -> np.ndarray:
    """Heavy-atom electrons per bead, each heavy atom assigned to the nearest bead of its residue."""
    electrons = np.zeros(len(coords))
    for r in np.unique(residue):
        beads = np.flatnonzero(residue == r)
        atoms = np.flatnonzero((structure.residue == r) & (structure.atomic_number > 1))
        d = ((structure.coords[atoms, None, :] - coords[None, beads, :]) ** 2).sum(-1)
        np.add.at(electrons, beads[np.argmin(d, axis=1)], structure.atomic_number[atoms])
    return electrons
