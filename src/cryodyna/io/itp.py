"""GROMACS molecule topologies (``.itp``, as written by martinize2) -> one :class:`Topology` in Å and
kJ/mol, with bead indices 0-based over the whole system.

Supported directives: ``[ atoms ]``, ``[ bonds ]`` (type 1), ``[ constraints ]`` (type 1), ``[ angles ]``
(types 1, 2, 10), ``[ dihedrals ]`` (proper types 1 and 9, improper type 2), ``[ exclusions ]``;
``#ifdef FLAG`` / ``#ifndef FLAG`` / ``#else`` / ``#endif`` with no flag defined (so martinize2's
rigid constraints are used, not the ``FLEXIBLE`` bonds).  Other directives are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryodyna.errors import InputError

NM = 10.0  # Å per nm


@dataclass
class Topology:
    """Bonded terms of N beads.

    names, types, res_names (N,) str; res_ids (N,) int (residue number in the file); charges (N,);
    bonds (P, 2) with bond_b0 Å and bond_k kJ mol^-1 Å^-2; constraints (C, 2) with constraint_b0 Å;
    angles (A, 3) with angle_func (1 harmonic, 2 cosine-harmonic, 10 restricted bending), angle_theta0 rad
    and angle_k (kJ mol^-1 rad^-2 for type 1, kJ mol^-1 otherwise); propers (D, 4) with phi0 rad,
    proper_k kJ/mol, multiplicity; impropers (I, 4) with xi0 rad and improper_k kJ mol^-1 rad^-2;
    exclusions (E, 2) extra non-bonded exclusions.
    """

    names: np.ndarray
    types: np.ndarray
    res_names: np.ndarray
    res_ids: np.ndarray
    charges: np.ndarray
    bonds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    bond_b0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bond_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    constraints: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    constraint_b0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    angles: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    angle_func: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    angle_theta0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    angle_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    propers: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    proper_phi0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    proper_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    proper_mult: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    impropers: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    improper_xi0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    improper_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    exclusions: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    @property
    def n_beads(self) -> int:
        return len(self.names)

    def bonded_pairs(self) -> np.ndarray:
        """Unique (i < j) pairs joined by a bond or constraint (MARTINI's 1-2 exclusions), (P, 2)."""
        pairs = np.sort(np.concatenate([self.bonds, self.constraints]), axis=1)
        return np.unique(pairs, axis=0) if len(pairs) else pairs

    def excluded_pairs(self) -> np.ndarray:
        """1-2 pairs plus the ``[ exclusions ]`` pairs, unique with i < j, (P, 2)."""
        pairs = np.sort(np.concatenate([self.bonded_pairs(), self.exclusions]), axis=1)
        return np.unique(pairs, axis=0) if len(pairs) else pairs


def _active_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside comments and outside ``#ifdef`` blocks (no flags)."""
    out, stack = [], []
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        word = line.split()[0]
        if word in ("#ifdef", "#ifndef"):
            stack.append(word == "#ifndef")
        elif word == "#else":
            if not stack:
                raise InputError(path, f"line {number}: #else without #ifdef")
            stack[-1] = not stack[-1]
        elif word == "#endif":
            if not stack:
                raise InputError(path, f"line {number}: #endif without #ifdef")
            stack.pop()
        elif word.startswith("#"):
            continue
        elif all(stack):
            out.append((number, line))
    return out


def section_lines(path: Path) -> Iterator[tuple[str | None, int, list[str]]]:
    """(section name in lower case, line number, fields) of every active data line of a GROMACS
    topology or force-field file."""
    section = None
    for number, line in _active_lines(path):
        if line.startswith("["):
            section = line.strip("[] ").lower()
            continue
        yield section, number, line.split()


def read_itp(path: str | Path) -> Topology:
    """The first ``[ moleculetype ]`` of an ``.itp`` file as a :class:`Topology`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    atoms: list[list[str]] = []
    terms: dict[str, list] = {k: [] for k in ("bonds", "constraints", "angles", "propers", "impropers", "exclusions")}
    for section, number, f in section_lines(path):
        try:
            if section == "atoms":
                atoms.append(f)
            elif section == "bonds":
                if int(f[2]) != 1:
                    raise InputError(path, f"line {number}: bond function type {f[2]} is not supported (expected 1)")
                terms["bonds"].append((int(f[0]), int(f[1]), float(f[3]) * NM, float(f[4]) / NM**2))
            elif section == "constraints":
                terms["constraints"].append((int(f[0]), int(f[1]), float(f[3]) * NM))
            elif section == "angles":
                func = int(f[3])
                if func not in (1, 2, 10):
                    raise InputError(path, f"line {number}: angle function type {func} is not supported (expected 1, 2 or 10)")
                terms["angles"].append((int(f[0]), int(f[1]), int(f[2]), func, np.deg2rad(float(f[4])), float(f[5])))
            elif section == "dihedrals":
                idx = [int(x) for x in f[:4]]
                func = int(f[4])
                if func in (1, 9):
                    terms["propers"].append((*idx, np.deg2rad(float(f[5])), float(f[6]), int(f[7])))
                elif func == 2:
                    terms["impropers"].append((*idx, np.deg2rad(float(f[5])), float(f[6])))
                else:
                    raise InputError(path, f"line {number}: dihedral function type {func} is not supported (expected 1, 2 or 9)")
            elif section == "exclusions":
                terms["exclusions"] += [(int(f[0]), int(j)) for j in f[1:]]
        except (IndexError, ValueError):
            raise InputError(path, f"line {number}: cannot read the [ {section} ] entry {' '.join(f)!r}") from None
    if not atoms:
        raise InputError(path, "no [ atoms ] entries; expected a GROMACS molecule topology written by martinize2")

    def idx(rows, k):
        return np.array([r[:k] for r in rows], dtype=np.int64).reshape(-1, k) - 1

    def col(rows, j, dtype=float):
        return np.array([r[j] for r in rows], dtype=dtype)

    b, c, a = terms["bonds"], terms["constraints"], terms["angles"]
    p, q = terms["propers"], terms["impropers"]
    return Topology(
        names=np.array([r[4] for r in atoms], dtype=object), types=np.array([r[1] for r in atoms], dtype=object),
        res_names=np.array([r[3] for r in atoms], dtype=object), res_ids=np.array([int(r[2]) for r in atoms]),
        charges=np.array([float(r[6]) if len(r) > 6 else 0.0 for r in atoms]),
        bonds=idx(b, 2), bond_b0=col(b, 2), bond_k=col(b, 3),
        constraints=idx(c, 2), constraint_b0=col(c, 2),
        angles=idx(a, 3), angle_func=col(a, 3, np.int64), angle_theta0=col(a, 4), angle_k=col(a, 5),
        propers=idx(p, 4), proper_phi0=col(p, 4), proper_k=col(p, 5), proper_mult=col(p, 6, np.int64),
        impropers=idx(q, 4), improper_xi0=col(q, 4), improper_k=col(q, 5),
        exclusions=idx(terms["exclusions"], 2),
    )


def concatenate(topologies: list[Topology]) -> Topology:
    """One topology for molecules placed one after the other (indices offset)."""
    offsets = np.cumsum([0] + [t.n_beads for t in topologies[:-1]])
    merged = {}
    for name in Topology.__dataclass_fields__:
        parts = [getattr(t, name) for t in topologies]
        if name in ("bonds", "constraints", "angles", "propers", "impropers", "exclusions"):
            parts = [x + o for x, o in zip(parts, offsets)]
        merged[name] = np.concatenate(parts)
    return Topology(**merged)
