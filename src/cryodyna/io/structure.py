"""Atomic models (PDB / mmCIF, read with gemmi) in one in-memory form.

Only polymer residues are kept: the 20 canonical amino acids (plus the common histidine
protonation names) and DNA/RNA nucleotides.  Waters, ligands and non-standard residues are dropped
with a warning that lists them; the first model and the first alternate location are used; chains
keep their file order; blank chain ids are filled from the segment id.
"""

from __future__ import annotations

import string
import warnings
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from cryodyna.errors import CryodynaError, InputError

AMINO_ACIDS = {
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET", "PHE",
    "PRO", "SER", "THR", "TRP", "TYR", "VAL", "HSD", "HSE", "HSP", "HID", "HIE", "HIP", "HIH",
}
NUCLEOTIDES = {"DA", "DC", "DG", "DT", "DU", "A", "C", "G", "U", "RA", "RC", "RG", "RU"}
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "P": 15, "S": 16}


@dataclass
class Structure:
    """A polymer model as flat arrays.

    Atoms (length A): ``coords`` (A, 3) Å, ``atom_name``, ``element``, ``atomic_number``,
    ``residue`` (index of the atom's residue).
    Residues (length R): ``res_name``, ``res_seq`` (int), ``ins_code``, ``chain_id``,
    ``res_kind`` ("protein" or "nucleic").
    """

    coords: np.ndarray
    atom_name: np.ndarray
    element: np.ndarray
    atomic_number: np.ndarray
    residue: np.ndarray
    res_name: np.ndarray
    res_seq: np.ndarray
    ins_code: np.ndarray
    chain_id: np.ndarray
    res_kind: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.coords)

    @property
    def n_residues(self) -> int:
        return len(self.res_name)

    @property
    def chains(self) -> list[str]:
        """Chain ids in file order."""
        return list(dict.fromkeys(self.chain_id.tolist()))

    def select_atoms(self, atoms: np.ndarray) -> "Structure":
        """A structure with only the atoms ``atoms`` (indices, kept in order); residues without a
        selected atom are removed."""
        atoms = np.asarray(atoms)
        res_used, new_res = np.unique(self.residue[atoms], return_inverse=True)
        return Structure(
            coords=self.coords[atoms], atom_name=self.atom_name[atoms], element=self.element[atoms],
            atomic_number=self.atomic_number[atoms], residue=new_res.reshape(-1),
            res_name=self.res_name[res_used], res_seq=self.res_seq[res_used], ins_code=self.ins_code[res_used],
            chain_id=self.chain_id[res_used], res_kind=self.res_kind[res_used],
        )

    def with_coords(self, coords: np.ndarray) -> "Structure":
        """The same atoms at new coordinates (A, 3)."""
        return Structure(**{**vars(self), "coords": np.asarray(coords, dtype=np.float64)})


def _element_from_name(name: str) -> str:
    """Element of an atom of a standard residue from its name (first letter after leading digits)."""
    letters = name.lstrip(string.digits)
    return letters[:1].upper() if letters else "X"


def _open_models(path: Path) -> gemmi.Structure:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:
        raise InputError(path, f"cannot read as PDB/mmCIF ({exc})") from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError(path, "no atoms found (no ATOM/HETATM records); expected a PDB or mmCIF model")
    st.remove_alternative_conformations()
    return st


def read_structure(path: str | Path) -> Structure:
    """Read the first model of a PDB or mmCIF file (see module docstring for what is kept)."""
    path = Path(path)
    st = _open_models(path)
    if len(st) > 1:
        warnings.warn(f"{path}: {len(st)} models found; using the first", stacklevel=2)
    return _convert(path, st[0])


def read_models(path: str | Path) -> list[Structure]:
    """Every model of a multi-model PDB/mmCIF file (e.g. a conformational ensemble)."""
    path = Path(path)
    return [_convert(path, model) for model in _open_models(path)]


def model_count(path: str | Path) -> int:
    """Number of models in a PDB/mmCIF file."""
    return len(_open_models(Path(path)))


def _convert(path: Path, model: gemmi.Model) -> Structure:
    coords, atom_name, element, resid = [], [], [], []
    res_name, res_seq, ins_code, chain_id, res_kind = [], [], [], [], []
    dropped: list[str] = []
    used_ids = {c.name for c in model if c.name.strip()}
    free_ids = iter([c for c in string.ascii_uppercase + string.digits if c not in used_ids])
    segment_ids: dict[str, str] = {}
    for chain in model:
        for res in chain:
            name = res.name.strip()
            kind = "protein" if name in AMINO_ACIDS else "nucleic" if name in NUCLEOTIDES else None
            if kind is None:
                dropped.append(f"{name} {chain.name or '?'}{res.seqid.num}{res.seqid.icode.strip()}")
                continue
            cid = chain.name.strip()
            if not cid:
                seg = res.segment.strip()
                if seg not in segment_ids:
                    segment_ids[seg] = next(free_ids)
                cid = segment_ids[seg]
            r = len(res_name)
            res_name.append(name)
            res_seq.append(res.seqid.num)
            ins_code.append(res.seqid.icode.strip())
            chain_id.append(cid)
            res_kind.append(kind)
            for atom in res:
                coords.append((atom.pos.x, atom.pos.y, atom.pos.z))
                atom_name.append(atom.name)
                element.append(_element_from_name(atom.name))
                resid.append(r)
    if segment_ids:
        pairs = ", ".join(f"segment {s or '(blank)'} -> chain {c}" for s, c in segment_ids.items())
        warnings.warn(f"{path}: blank chain ids filled from segment ids ({pairs})", stacklevel=3)
    if dropped:
        shown = ", ".join(dropped[:20]) + (f" and {len(dropped) - 20} more" if len(dropped) > 20 else "")
        warnings.warn(f"{path}: dropped {len(dropped)} non-polymer or non-standard residue(s): {shown}", stacklevel=3)
    if not res_name:
        raise InputError(path, "no standard amino-acid or nucleotide residue found (only HETATM/ligands/waters?)")
    coords_arr = np.asarray(coords, dtype=np.float64)
    if not np.isfinite(coords_arr).all():
        raise InputError(path, "atom coordinates contain non-finite values")
    element_arr = np.asarray(element, dtype=object)
    return Structure(
        coords=coords_arr,
        atom_name=np.asarray(atom_name, dtype=object),
        element=element_arr,
        atomic_number=np.array([ATOMIC_NUMBER.get(e, 0) for e in element_arr], dtype=np.int64),
        residue=np.asarray(resid, dtype=np.int64),
        res_name=np.asarray(res_name, dtype=object),
        res_seq=np.asarray(res_seq, dtype=np.int64),
        ins_code=np.asarray(ins_code, dtype=object),
        chain_id=np.asarray(chain_id, dtype=object),
        res_kind=np.asarray(res_kind, dtype=object),
    )


def _to_gemmi(structure: Structure, segments: np.ndarray | None, models: np.ndarray, bfactors: np.ndarray | None) -> gemmi.Structure:
    """gemmi structure of ``structure`` with one model per coordinate set of ``models`` (K, A, 3);
    ``segments``: optional per-residue segment ids."""
    st = gemmi.Structure()
    st.setup_cell_images()
    for k, coords in enumerate(models):
        model = gemmi.Model(k + 1)
        chains: dict[str, gemmi.Chain] = {}
        order: list[str] = []
        residues: list[gemmi.Residue] = []
        for r in range(structure.n_residues):
            res = gemmi.Residue()
            res.name = structure.res_name[r]
            res.seqid = gemmi.SeqId(int(structure.res_seq[r]), (structure.ins_code[r] or " ")[0])
            res.het_flag = "A"
            res.segment = "" if segments is None else segments[r]
            residues.append(res)
        for a in range(structure.n_atoms):
            atom = gemmi.Atom()
            atom.name = structure.atom_name[a]
            atom.element = gemmi.Element(structure.element[a])
            atom.pos = gemmi.Position(*map(float, coords[a]))
            atom.occ = 1.0
            atom.b_iso = 0.0 if bfactors is None else float(bfactors[a])
            atom.serial = a + 1
            residues[structure.residue[a]].add_atom(atom)
        for r, res in enumerate(residues):
            cid = structure.chain_id[r]
            if cid not in chains:
                chains[cid] = gemmi.Chain(cid)
                order.append(cid)
            chains[cid].add_residue(res)
        for cid in order:
            model.add_chain(chains[cid])
        st.add_model(model)
    st.setup_entities()
    return st


PDB_CHAIN_IDS = string.ascii_uppercase + string.ascii_lowercase + string.digits


def structure_suffix(structure: Structure) -> str:
    """File suffix for writing ``structure``: ``.pdb``, or ``.cif`` when it has more chains than the
    PDB format's one-character ids can name (62)."""
    return ".pdb" if len(set(structure.chain_id)) <= len(PDB_CHAIN_IDS) else ".cif"


def _pdb_chain_ids(structure: Structure, path: Path) -> tuple[Structure, np.ndarray | None]:
    """``structure`` with one-character chain ids for the PDB format, and per-residue segment ids
    (or None): kept when they all fit; else A-Z, a-z, 0-9 in order of appearance, the full name
    going to the segment id column (first 4 characters).  More than 62 chains do not fit: an error
    that says to write mmCIF."""
    names = list(dict.fromkeys(structure.chain_id))
    if all(len(str(c)) <= 1 for c in names):
        return structure, None
    if len(names) > len(PDB_CHAIN_IDS):
        raise CryodynaError(f"{path}: {len(names)} chains do not fit the PDB format (one-character chain ids, at most "
                            f"{len(PDB_CHAIN_IDS)}); write mmCIF instead (a .cif file name)")
    short = dict(zip(names, PDB_CHAIN_IDS))
    renamed = dataclasses.replace(structure, chain_id=np.array([short[c] for c in structure.chain_id], dtype=object))
    return renamed, np.array([str(c)[:4] for c in structure.chain_id], dtype=object)


def write_structure(path: str | Path, structure: Structure, models: np.ndarray | None = None,
                    bfactors: np.ndarray | None = None) -> None:
    """Write ``structure`` as PDB (``.pdb``) or mmCIF (``.cif``/``.mmcif``).

    ``models``: optional (K, A, 3) coordinates, one MODEL each, for the same atoms; default: the
    structure's own coordinates.  ``bfactors``: optional (A,) values for the B-factor column (e.g. a
    per-residue RMSF for colouring).  Residue names, numbers, insertion codes and chains are kept.
    """
    path = Path(path)
    models = structure.coords[None] if models is None else np.asarray(models)
    if models.ndim != 3 or models.shape[1:] != (structure.n_atoms, 3):
        raise ValueError(f"models must have shape (K, {structure.n_atoms}, 3), got {models.shape}")
    if path.suffix.lower() in {".cif", ".mmcif"}:
        _to_gemmi(structure, None, models, bfactors).make_mmcif_document().write_file(str(path))
    else:
        st = _to_gemmi(*_pdb_chain_ids(structure, path), models, bfactors)
        opts = gemmi.PdbWriteOptions()
        opts.minimal_file = True
        opts.numbered_ter = False
        st.write_pdb(str(path), opts)
