"""Secondary-structure blocks ("meta nodes"), the block graph, and residue <-> block links."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def assign_blocks(ss: np.ndarray, chain_id: np.ndarray, min_length: int = 3) -> np.ndarray:
    """Block id (0..M-1, consecutive in file order) per residue.

    Within each chain, maximal runs of equal secondary-structure letter form blocks; a run shorter
    than ``min_length`` joins the previous block of the same chain (never a block of another chain;
    the first run of a chain always opens a block).  A nucleic chain (all 'N') is one block.
    """
    block = np.empty(len(ss), dtype=np.int64)
    next_id = 0
    for chain in dict.fromkeys(chain_id.tolist()):
        idx = np.flatnonzero(chain_id == chain)
        letters = ss[idx]
        starts = np.flatnonzero(np.r_[True, letters[1:] != letters[:-1]])
        ends = np.r_[starts[1:], len(idx)]
        current = -1
        for s, e in zip(starts, ends):
            if current < 0 or e - s >= min_length:
                current = next_id
                next_id += 1
            block[idx[s:e]] = current
    return block


def block_centroids(coords: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Mean coordinate (M, 3) of the residues of each block."""
    m = int(block.max()) + 1
    sums = np.zeros((m, 3))
    np.add.at(sums, block, coords)
    return sums / np.bincount(block, minlength=m)[:, None]


def knn_graph(centroids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours (M, K) of each block, itself included, K = min(k, M), nearest first; and the
    centroid distances (M, K) in Å."""
    kk = min(k, len(centroids))
    dist, nbr = cKDTree(centroids).query(centroids, k=kk)
    return nbr.reshape(len(centroids), kk), dist.reshape(len(centroids), kk)


def residue_block_links(
    coords: np.ndarray, block: np.ndarray, chain_id: np.ndarray, centroids: np.ndarray, n_near: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Blocks that send messages to each residue besides its own: the ``n_near`` nearest other
    blocks and the sequence-adjacent blocks of the same chain.

    Returns link indices (N, L) and a boolean validity mask (N, L) (padding where a residue has
    fewer links, e.g. when there are few blocks).
    """
    m = len(centroids)
    near = min(n_near, m - 1)
    links: list[list[int]] = []
    if near > 0:
        _, nearest = cKDTree(centroids).query(coords, k=near + 1)
        nearest = nearest.reshape(len(coords), near + 1)
    block_chain = np.empty(m, dtype=object)
    block_chain[block] = chain_id
    for i, s in enumerate(block):
        cand = [int(t) for t in (nearest[i] if near > 0 else []) if t != s][:near]
        for t in (s - 1, s + 1):
            if 0 <= t < m and block_chain[t] == chain_id[i] and t not in cand:
                cand.append(int(t))
        links.append(cand)
    width = max(1, max(len(c) for c in links))
    idx = np.zeros((len(coords), width), dtype=np.int64)
    mask = np.zeros((len(coords), width), dtype=bool)
    for i, c in enumerate(links):
        idx[i, : len(c)] = c
        mask[i, : len(c)] = True
    return idx, mask
