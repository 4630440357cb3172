"""Rotation conventions.

All pose matrices follow RELION's ``Euler_angles2matrix(rot, tilt, psi)`` (ZYZ): for a point ``x``
in the map frame (Å, origin at the box centre), ``p = R @ x`` gives image column ``p[0]``, image row
``p[1]``; the projection runs along ``p[2]``.  cryoSPARC stores the transpose as an axis-angle
vector: ``R = expmap(pose).T``.  Angles are in radians unless a name says ``_deg``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation


def euler_relion_to_matrix(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """RELION ZYZ Euler angles (radians, shape (N,)) -> rotation matrices (N, 3, 3)."""
    a, b, g = (np.asarray(v, dtype=np.float64) for v in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    r = np.empty(np.broadcast(a, b, g).shape + (3, 3))
    r[..., 0, 0] = cg * cb * ca - sg * sa
    r[..., 0, 1] = cg * cb * sa + sg * ca
    r[..., 0, 2] = -cg * sb
    r[..., 1, 0] = -sg * cb * ca - cg * sa
    r[..., 1, 1] = -sg * cb * sa + cg * ca
    r[..., 1, 2] = sg * sb
    r[..., 2, 0] = sb * ca
    r[..., 2, 1] = sb * sa
    r[..., 2, 2] = cb
    return r


def matrix_to_euler_relion(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation matrices (N, 3, 3) -> RELION (rot, tilt, psi) in radians, inverse of
    :func:`euler_relion_to_matrix` (tilt in [0, pi]; at tilt 0 or pi, psi is set to 0)."""
    r = np.asarray(r, dtype=np.float64)
    tilt = np.arccos(np.clip(r[..., 2, 2], -1.0, 1.0))
    sb = np.sin(tilt)
    gimbal = sb < 1e-8
    rot = np.where(gimbal, 0.0, np.arctan2(r[..., 2, 1], r[..., 2, 0]))
    psi = np.where(gimbal, 0.0, np.arctan2(r[..., 1, 2], -r[..., 0, 2]))
    # Gimbal lock: R = Rz(psi) Ry(tilt) Rz(rot) collapses to one in-plane angle; put it in rot.
    sign = np.where(r[..., 2, 2] > 0, 1.0, -1.0)
    rot_gimbal = np.arctan2(sign * r[..., 0, 1], sign * r[..., 0, 0])
    rot = np.where(gimbal, rot_gimbal, rot)
    return rot, tilt, psi


def axis_angle_to_matrix(vectors: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (N, 3) (direction = axis, norm = angle in radians) -> matrices (N, 3, 3)."""
    return Rotation.from_rotvec(np.asarray(vectors, dtype=np.float64)).as_matrix()


def cryosparc_pose_to_matrix(pose: np.ndarray) -> np.ndarray:
    """cryoSPARC ``alignments3D/pose`` (N, 3) -> RELION-convention matrices (N, 3, 3)."""
    return np.swapaxes(axis_angle_to_matrix(pose), -1, -2)


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
