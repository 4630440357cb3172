"""Optimal superposition (Kabsch) and RMSD."""

from __future__ import annotations

import numpy as np


def kabsch(mobile: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation ``R`` (3, 3) and translation ``t`` (3,) minimising ``|mobile @ R.T + t - target|``
    for paired points (N, 3) (proper rotation, no reflection)."""
    mc, tc = mobile.mean(0), target.mean(0)
    h = (mobile - mc).T @ (target - tc)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, tc - mc @ r.T


def rmsd(a: np.ndarray, b: np.ndarray, superpose: bool = False) -> np.ndarray:
    """RMSD between (..., N, 3) coordinate sets, optionally after superposing each ``a`` on ``b``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    if superpose:
        flat_a, flat_b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
        moved = np.empty_like(flat_a)
        for i, (x, y) in enumerate(zip(flat_a, flat_b)):
            r, t = kabsch(x, y)
            moved[i] = x @ r.T + t
        a = moved.reshape(a.shape)
    return np.sqrt(((a - b) ** 2).sum(-1).mean(-1))
