"""Rotations: axis-angle maps, random rotations, angles between rotations.

All pose matrices follow RELION's convention (file angles are converted in
:mod:`cryodyna.io.angles`): for a point ``x`` in the map frame (Å, origin at the box centre),
``p = R @ x`` gives image column ``p[0]``, image row ``p[1]``; the projection runs along ``p[2]``.
Angles are in radians unless a name says ``_deg``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation


def axis_angle_to_matrix(vectors: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (N, 3) (direction = axis, norm = angle in radians) -> matrices (N, 3, 3)."""
    return Rotation.from_rotvec(np.asarray(vectors, dtype=np.float64)).as_matrix()


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotations drawn uniformly from SO(3) (Haar measure), shape (n, 3, 3)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Rotation.from_quat(q).as_matrix()


def rotvec_to_matrix_torch(vectors: torch.Tensor) -> torch.Tensor:
    """Differentiable axis-angle -> matrix (Rodrigues) for torch tensors (..., 3) rad -> (..., 3, 3);
    exact and smooth at zero (series expansion of the coefficients for small angles)."""
    theta2 = (vectors * vectors).sum(-1, keepdim=True).unsqueeze(-1)
    small = theta2 < 1e-8
    safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = safe.sqrt()
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / safe)
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(*vectors.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=vectors.dtype, device=vectors.device)
    return eye + a * k + b * (k @ k)


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (degrees) of the rotation taking matrices ``a`` to ``b`` (both (..., 3, 3))."""
    cos = (np.einsum("...ij,...ij->...", a, b) - 1) / 2
    return np.rad2deg(np.arccos(np.clip(cos, -1.0, 1.0)))
