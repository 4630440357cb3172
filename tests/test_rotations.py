import numpy as np
import pytest

from cryodyna.imaging.rotations import axis_angle_to_matrix, random_rotations
from cryodyna.io.angles import cryosparc_pose_to_matrix, euler_relion_to_matrix, matrix_to_euler_relion


def cryodrgn_r_from_relion(a, b, y):
    """cryoDRGN's R_from_relion, restated from its published definition (degrees)."""
    a, b, y = np.deg2rad([a, b, y])
    ca, sa, cb, sb, cy, sy = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(y), np.sin(y)
    ra = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    rb = np.array([[cb, 0, -sb], [0, 1, 0], [sb, 0, cb]])
    ry = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    r = ry @ rb @ ra
    r[0, 1] *= -1
    r[1, 0] *= -1
    r[1, 2] *= -1
    r[2, 1] *= -1
    return r


def test_euler_matches_cryodrgn_r_from_relion():
    rng = np.random.default_rng(0)
    angles = rng.uniform([-180, 0, -180], [180, 180, 180], size=(50, 3))
    ours = euler_relion_to_matrix(*np.deg2rad(angles).T)
    ref = np.stack([cryodrgn_r_from_relion(*a) for a in angles])
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_known_rotation_rot90_maps_x_to_minus_y():
    r = euler_relion_to_matrix(np.deg2rad(90.0), 0.0, 0.0)
    np.testing.assert_allclose(r @ np.array([1.0, 0, 0]), [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(r @ np.array([0, 1.0, 0]), [1, 0, 0], atol=1e-12)


def test_tilt_90_brings_z_onto_minus_x():
    r = euler_relion_to_matrix(0.0, np.deg2rad(90.0), 0.0)
    np.testing.assert_allclose(r @ np.array([0, 0, 1.0]), [-1, 0, 0], atol=1e-12)


@pytest.mark.parametrize("tilt", [0.0, 0.3, 1.5, np.pi - 1e-3, np.pi])
def test_matrix_to_euler_round_trip(tilt):
    rng = np.random.default_rng(1)
    rot, psi = rng.uniform(-np.pi, np.pi, 20), rng.uniform(-np.pi, np.pi, 20)
    r = euler_relion_to_matrix(rot, np.full(20, tilt), psi)
    back = euler_relion_to_matrix(*matrix_to_euler_relion(r))
    np.testing.assert_allclose(back, r, atol=1e-9)


def test_axis_angle_and_cryosparc_transpose():
    v = np.array([[0, 0, np.pi / 2]])
    r = axis_angle_to_matrix(v)[0]
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(cryosparc_pose_to_matrix(v)[0], r.T, atol=1e-12)


def test_random_rotations_are_uniform_rotations():
    r = random_rotations(20000, np.random.default_rng(0))
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape), atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-10)
    # Haar measure: E[R] = 0 and the viewing direction (third row) is uniform on the sphere.
    assert np.abs(r.mean(0)).max() < 0.02
    assert abs(np.mean(r[:, 2, 2] > 0) - 0.5) < 0.02
