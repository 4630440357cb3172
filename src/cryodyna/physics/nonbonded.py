"""MARTINI non-bonded parameters and neighbour lists.

The Martini 3 Lennard-Jones table (``martini_v3.0.0.itp``: ``[ atomtypes ]`` and ``[ nonbond_params ]``
with sigma in nm and epsilon in kJ/mol) is read at run time from an installed copy (the PyPI packages
``martini-shaker`` or ``martini-taster`` ship it; ``pip install --no-deps martini-shaker`` is enough;
it is never bundled here).  Pairs without table parameters (no table given, or bead types the table
lacks, such as the Martini 2 DNA beads) get a size-based repulsion: sigma = the mean LJ size of the
two beads (regular / small / tiny) and ``FALLBACK_EPSILON``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from cryodyna.errors import InputError
from cryodyna.io.itp import section_lines
from cryodyna.structure.pairs import exclude_pairs

FALLBACK_EPSILON = 2.0  # kJ/mol
TABLE_NAME = "martini_v3.0.0.itp"


def find_martini3_table() -> Path | None:
    """Path of an installed ``martini_v3.0.0.itp`` (martini-shaker or martini-taster), without
    importing those packages; None when neither is installed."""
    for package in ("shaker", "taster"):
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            path = Path(root) / "data" / "itps" / TABLE_NAME
            if path.is_file():
                return path
    return None


@dataclass
class LJTable:
    """sigma (Å) and epsilon (kJ/mol) for every pair of the bead types ``names``, (T, T) each."""

    names: list[str]
    sigma: np.ndarray
    epsilon: np.ndarray

    def index(self, types) -> np.ndarray:
        lookup = {n: i for i, n in enumerate(self.names)}
        missing = sorted({t for t in types if t not in lookup})
        if missing:
            raise InputError(None, f"bead type(s) {', '.join(missing)} are not in the Lennard-Jones table")
        return np.array([lookup[t] for t in types], dtype=np.int64)


def read_lj_table(path: str | Path, only: set[str] | None = None) -> LJTable:
    """Parse ``[ atomtypes ]`` and ``[ nonbond_params ]`` (func 1, sigma nm, epsilon kJ/mol) of a
    MARTINI force-field file, keeping the types in ``only`` when given."""
    path = Path(path)
    names: list[str] = []
    pairs: list[tuple[str, str, float, float]] = []
    for section, number, f in section_lines(path):
        try:
            if section == "atomtypes" and (only is None or f[0] in only):
                names.append(f[0])
            elif section == "nonbond_params" and (only is None or (f[0] in only and f[1] in only)):
                pairs.append((f[0], f[1], float(f[3]) * 10.0, float(f[4])))
        except (IndexError, ValueError):
            raise InputError(path, f"line {number}: cannot read {' '.join(f)!r} in [ {section} ]") from None
    if not names or not pairs:
        raise InputError(path, "no [ atomtypes ] / [ nonbond_params ] entries; expected a MARTINI force-field file")
    index = {n: i for i, n in enumerate(names)}
    sigma = np.full((len(names), len(names)), np.nan)
    epsilon = np.full_like(sigma, np.nan)
    for a, b, s, e in pairs:
        i, j = index[a], index[b]
        sigma[i, j] = sigma[j, i] = s
        epsilon[i, j] = epsilon[j, i] = e
    return LJTable(names, sigma, epsilon)


class PairParameters(nn.Module):
    """sigma/epsilon lookup for bead pairs through a (T, T) table over the T bead types present.
    Memory O(T^2), never O(N^2).

    types (N,) bead type names; sizes (N,) LJ size of each bead (Å); table: a MARTINI force-field file
    with ``[ nonbond_params ]`` (None: size-based parameters for every pair).  ``source`` says what
    was used.
    """

    def __init__(self, types: np.ndarray, sizes: np.ndarray, table: Path | None = None):
        super().__init__()
        present, index = np.unique(np.asarray(types).astype(str), return_inverse=True)
        size = np.zeros(len(present))
        size[index.reshape(-1)] = np.asarray(sizes, dtype=np.float64)
        sigma = 0.5 * (size[:, None] + size[None, :])
        epsilon = np.full_like(sigma, FALLBACK_EPSILON)
        self.source = "size-based WCA (regular / small / tiny bead sizes) for all pairs"
        if table is not None:
            lj = read_lj_table(table, set(present))
            known = np.array([t in lj.names for t in present])
            rows = lj.index(present[known])
            sigma[np.ix_(known, known)] = lj.sigma[np.ix_(rows, rows)]
            epsilon[np.ix_(known, known)] = lj.epsilon[np.ix_(rows, rows)]
            self.source = f"Martini 3 Lennard-Jones table {table}"
            if not known.all():
                self.source += (f"; size-based WCA for pairs with the {int((~known).sum())} bead type(s) it lacks "
                                f"({', '.join(present[~known][:6])})")
        self.register_buffer("type_index", torch.as_tensor(index.reshape(-1), dtype=torch.int64))
        self.register_buffer("sigma", torch.as_tensor(sigma, dtype=torch.float32))
        self.register_buffer("epsilon", torch.as_tensor(epsilon, dtype=torch.float32))

    def forward(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma (P,) Å, epsilon (P,) kJ/mol) of bead pairs (P, 2)."""
        ti, tj = self.type_index[pairs[:, 0]], self.type_index[pairs[:, 1]]
        return self.sigma[ti, tj], self.epsilon[ti, tj]


def neighbour_pairs(coords: np.ndarray, cutoff: float, excluded: np.ndarray) -> np.ndarray:
    """Bead pairs (P, 2), i < j, closer than ``cutoff`` Å in ``coords`` (N, 3) or in any of a batch
    (B, N, 3), minus the ``excluded`` pairs (E, 2).  KD-tree: O(N) memory and time per structure."""
    frames = coords[None] if coords.ndim == 2 else coords
    n = frames.shape[1]
    found = [cKDTree(f).query_pairs(cutoff, output_type="ndarray").astype(np.int64) for f in frames]
    keys = np.unique(np.concatenate([p[:, 0] * n + p[:, 1] for p in found]))  # query_pairs gives i < j
    return exclude_pairs(np.stack(np.divmod(keys, n), axis=1), excluded, n)
