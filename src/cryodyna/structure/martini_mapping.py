"""Which atoms make up each MARTINI bead: the atom -> bead weights of vermouth's mapping files (the
ones martinize2 maps with), read from the installed vermouth package.

In a ``.map`` file each ``[ atoms ]`` line names an atom and the beads it belongs to, a bead listed
k times taking k shares (``SC1 SC2 SC2``: one third to SC1, two thirds to SC2; ``!BB``: BB, not used
for the position but still part of the bead).  The CHARMM and AMBER files of a residue are merged, so
both naming schemes (e.g. Ile CD / CD1) are known.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import vermouth

MAPPING_DIRS = {"martini3001": "martini3001", "martini22": ""}  # martini22 files lie at the top level


def _blocks(text: str):
    """(section, words) of every non-comment line of a mapping file."""
    section = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            section = line.strip("[] ").lower()
            continue
        yield section, line.split()


def _read_map(path: Path, force_field: str) -> dict[str, dict[str, dict[str, float]]]:
    """residue -> atom -> {bead: share} of one mapping file (empty when it maps to another force field)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    molecule, targets = None, []
    for section, words in _blocks(path.read_text()):
        if section == "molecule":
            molecule, targets = words[0].upper(), []
        elif section == "to":
            targets.append(words[0])
        elif section == "atoms" and molecule and len(words) >= 3 and force_field in targets:
            counts = Counter(w.lstrip("!") for w in words[2:])
            total = sum(counts.values())
            out.setdefault(molecule, {})[words[1]] = {bead: n / total for bead, n in counts.items()}
    return out


@functools.cache
def mapping_weights(force_field: str) -> dict[str, dict[str, dict[str, float]]]:
    """Residue name -> atom name -> {bead name: share of the atom} for ``force_field``."""
    folder = Path(vermouth.__file__).parent / "data" / "mappings" / MAPPING_DIRS[force_field]
    weights: dict[str, dict[str, dict[str, float]]] = {}
    for path in sorted(folder.glob("*.map")):
        for residue, atoms in _read_map(path, force_field).items():
            for atom, shares in atoms.items():
                weights.setdefault(residue, {}).setdefault(atom, shares)
    return weights
