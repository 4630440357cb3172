"""Pose angles as particle files store them, to and from RELION-convention rotation matrices.

RELION's ``Euler_angles2matrix(rot, tilt, psi)`` (ZYZ): for a point ``x`` in the map frame,
``p = R @ x`` gives image column ``p[0]``, row ``p[1]``.  cryoSPARC stores the transpose as an
axis-angle vector: ``R = expmap(pose).T``.  Angles in radians.
"""

from __future__ import annotations

import numpy as np
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


def cryosparc_pose_to_matrix(pose: np.ndarray) -> np.ndarray:
    """cryoSPARC ``alignments3D/pose`` (N, 3) -> RELION-convention matrices (N, 3, 3)."""
    return np.swapaxes(Rotation.from_rotvec(np.asarray(pose, dtype=np.float64)).as_matrix(), -1, -2)
