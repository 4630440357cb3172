"""Node pair sets for the structural priors, from a KD-tree (no dense N x N matrices)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def connect_pairs(chain_id: np.ndarray, res_seq: np.ndarray) -> np.ndarray:
    """Consecutive nodes of the same chain with residue numbers differing by 0 or 1 (insertion
    codes share a number): (P, 2) index pairs in file order."""
    same_chain = chain_id[1:] == chain_id[:-1]
    step = np.abs(res_seq[1:] - res_seq[:-1]) <= 1
    i = np.flatnonzero(same_chain & step)
    return np.stack([i, i + 1], axis=1)


def exclude_pairs(pairs: np.ndarray, excluded: np.ndarray, n: int) -> np.ndarray:
    """``pairs`` (P, 2) without those in ``excluded`` (E, 2), in either order; ``n`` = node count."""
    if len(pairs) == 0 or len(excluded) == 0:
        return pairs
    key = np.minimum(pairs[:, 0], pairs[:, 1]) * n + np.maximum(pairs[:, 0], pairs[:, 1])
    ex = np.minimum(excluded[:, 0], excluded[:, 1]) * n + np.maximum(excluded[:, 0], excluded[:, 1])
    return pairs[~np.isin(key, ex)]


def pairs_within(coords: np.ndarray, cutoff: float) -> np.ndarray:
    """All unordered pairs i < j with distance <= ``cutoff`` Å, (P, 2)."""
    if cutoff <= 0 or len(coords) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    return np.asarray(sorted(cKDTree(coords).query_pairs(cutoff)), dtype=np.int64).reshape(-1, 2)


def elastic_pairs(
    coords: np.ndarray, chain_id: np.ndarray, is_nucleic: np.ndarray, intra_cutoff: float, inter_cutoff: float,
    nucleic_cutoff: float, excluded: np.ndarray,
) -> np.ndarray:
    """Elastic-network pairs: protein-protein pairs within ``intra_cutoff`` (same chain) or
    ``inter_cutoff`` (different chains), nucleotide-nucleotide pairs within ``nucleic_cutoff``; no
    protein-nucleotide pairs; ``excluded`` pairs (e.g. connect pairs) removed.  (P, 2), i < j."""
    pairs = pairs_within(coords, max(intra_cutoff, inter_cutoff, nucleic_cutoff if is_nucleic.any() else 0))
    i, j = pairs[:, 0], pairs[:, 1]
    d = np.linalg.norm(coords[i] - coords[j], axis=1)
    same = chain_id[i] == chain_id[j]
    prot = ~is_nucleic[i] & ~is_nucleic[j]
    nuc = is_nucleic[i] & is_nucleic[j]
    keep = (prot & same & (d <= intra_cutoff)) | (prot & ~same & (d <= inter_cutoff)) | (nuc & (d <= nucleic_cutoff))
    return exclude_pairs(pairs[keep], excluded, len(coords))


def protein_nucleic_pairs(coords: np.ndarray, is_nucleic: np.ndarray, cutoff: float, excluded: np.ndarray) -> np.ndarray:
    """(protein node, nucleotide node) pairs within ``cutoff`` Å, ``excluded`` removed: the
    reference method's protein-nucleic distance restraint (``dist_aa_nt``).  (P, 2), i < j."""
    if cutoff <= 0 or not is_nucleic.any() or is_nucleic.all():
        return np.zeros((0, 2), dtype=np.int64)
    pairs = pairs_within(coords, cutoff)
    return exclude_pairs(pairs[is_nucleic[pairs[:, 0]] != is_nucleic[pairs[:, 1]]], excluded, len(coords))


def clash_pairs(coords: np.ndarray, min_distance: float, search: float, excluded: np.ndarray) -> np.ndarray:
    """Pairs that may come into contact: reference distance in [``min_distance``, ``search``] Å
    (pairs already closer in the reference are never penalised), ``excluded`` removed. (P, 2)."""
    pairs = pairs_within(coords, search)
    d = np.linalg.norm(coords[pairs[:, 0]] - coords[pairs[:, 1]], axis=1)
    return exclude_pairs(pairs[d >= min_distance], excluded, len(coords))
