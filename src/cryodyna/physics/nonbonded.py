"""MARTINI non-bonded parameters and neighbour lists.

The Martini 3 Lennard-Jones table (``martini_v3.0.0.itp``: ``[ atomtypes ]`` and ``[ nonbond_params ]``
with sigma in nm and epsilon in kJ/mol) is read at run time from an installed copy (the PyPI packages
``martini-shaker`` or ``martini-taster`` ship it; it is never bundled here).  Without it, a size-based
repulsion is used: WCA with sigma = the mean LJ size of the two beads (regular / small / tiny) and
``FALLBACK_EPSILON``.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from cryodyna.errors import InputError
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
    section = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[] ").lower()
            continue
        f = line.split()
        try:
            if section == "atomtypes" and (only is None or f[0] in only):
                names.append(f[0])
            elif section == "nonbond_params" and (only is None or (f[0] in only and f[1] in only)):
                pairs.append((f[0], f[1], float(f[3]) * 10.0, float(f[4])))
        except (IndexError, ValueError):
            raise InputError(path, f"line {number}: cannot read {line!r} in [ {section} ]") from None
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
    """sigma/epsilon lookup for bead pairs through a (T, T) table over T bead classes: the bead types
    present (Lennard-Jones table), or the bead size classes (fallback).  Memory O(T^2), never O(N^2).

    types (N,) bead type names; sizes (N,) LJ size of each bead (Å) for the fallback.
    """

    def __init__(self, types: np.ndarray, sizes: np.ndarray, use_table: bool = True):
        super().__init__()
        present = sorted(set(types))
        path = find_martini3_table() if use_table else None
        table = read_lj_table(path, set(present)) if path is not None else None
        if table is not None and all(t in table.names for t in present):
            index, sigma, epsilon = table.index(types), table.sigma, table.epsilon
            self.source = f"Martini 3 Lennard-Jones table {path}"
        else:
            if use_table:
                missing = sorted(set(present) - set(table.names)) if table is not None else []
                reason = (f"{path} has no bead type(s) {', '.join(missing[:6])} (Martini 2 DNA beads have no Martini 3 "
                          "parameters)" if missing else f"no Martini 3 Lennard-Jones table (pip install martini-shaker "
                          f"for {TABLE_NAME})")
                warnings.warn(f"{reason}; using a size-based WCA repulsion (epsilon {FALLBACK_EPSILON} kJ/mol) for "
                              "all bead pairs", stacklevel=2)
            classes, index = np.unique(np.asarray(sizes, dtype=np.float64), return_inverse=True)
            sigma = 0.5 * (classes[:, None] + classes[None, :])
            epsilon = np.full_like(sigma, FALLBACK_EPSILON)
            self.source = "size-based WCA (regular / small / tiny bead sizes)"
        self.register_buffer("type_index", torch.as_tensor(np.asarray(index).reshape(-1), dtype=torch.int64))
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
