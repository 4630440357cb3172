"""Simulated landscapes: normal modes, occupancy, curved and 2-D motions, ground truth, and the ceiling."""

import warnings

import numpy as np
import pytest

from cryodyna.errors import CryodynaError
from cryodyna.simulate.ceiling import accuracy_ceiling
from cryodyna.simulate.landscape import Landscape, anm_modes
from cryodyna.simulate.simulator import SimulationSpec, build_landscape, simulate
from cryodyna.structure.nodes import residue_nodes


@pytest.fixture(scope="module")
def adk():
    from cryodyna.simulate.adk import adk_states

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adk_states()


def test_anm_modes_are_internal_orthogonal_and_scaled(adk):
    ca = residue_nodes(adk[0]).coords
    modes = anm_modes(ca, 3)
    assert modes.shape == (3, len(ca), 3)
    np.testing.assert_allclose(np.sqrt((modes**2).sum(-1).mean(-1)), 1.0, rtol=1e-6)  # 1 Å RMS each
    flat = modes.reshape(3, -1)
    np.testing.assert_allclose(flat @ flat.T / len(ca), np.eye(3), atol=1e-8)
    # no rigid translation or rotation in a normal mode
    np.testing.assert_allclose(modes.mean(1), 0.0, atol=1e-8)
    centred = ca - ca.mean(0)
    torque = np.cross(centred[None], modes).sum(1)
    np.testing.assert_allclose(torque, 0.0, atol=1e-6)
    np.testing.assert_allclose(anm_modes(ca, 3), modes)  # deterministic sign


def test_weighted_path_occupancy_follows_the_state_weights(adk):
    lands = build_landscape(list(adk) + [adk[1]], SimulationSpec(density="residue"), weights=[1.0, 0.1, 1.0])
    u = lands.sample(40000, np.random.default_rng(0))[:, 0]
    hist = np.histogram(u, bins=10, range=(0, 1))[0]
    assert hist[0] > 4 * hist[5] and hist[-1] > 4 * hist[4]  # populated ends, sparse middle
    expected = np.interp([0.05, 0.55], [0, 0.5, 1], [1.0, 0.1, 1.0])  # linear density: bin mean = centre value
    assert hist[0] / hist[5] == pytest.approx(expected[0] / expected[1], rel=0.2)


def test_arc_of_two_modes_is_a_curved_one_dimensional_motion(adk):
    spec = SimulationSpec(density="residue", normal_modes=2, mode_amplitude=3.0, mode_path="arc")
    lands = build_landscape([adk[0]], spec)
    params = lands.sample(500, np.random.default_rng(1))
    np.testing.assert_allclose(np.hypot(params[:, 1], params[:, 2]), 3.0)
    nodes = lands.nodes(params)
    ref = residue_nodes(adk[0]).coords
    np.testing.assert_allclose(np.sqrt(((nodes - ref) ** 2).sum(-1).mean(-1)), 3.0, rtol=1e-6)  # orthonormal modes
    t = lands.path_coordinate(params)
    assert 0 <= t.min() and t.max() <= 1
    ends = nodes[np.argsort(t)[[0, -1]]]
    mid = ref + 3.0 * lands.modes[1]
    # a curve: the middle of the motion is far from the chord between its ends
    assert np.sqrt(((mid - ends.mean(0)) ** 2).sum(-1).mean()) > 2.5


def test_discrete_states_mixed_with_a_mode_and_atoms_follow_their_residue(adk):
    spec = SimulationSpec(density="atom", normal_modes=1, mode_amplitude=2.0)
    lands = build_landscape(list(adk), spec, mode="discrete", weights=[3, 1])
    params = lands.sample(4000, np.random.default_rng(2))
    assert set(np.unique(params[:, 0])) == {0.0, 1.0}
    assert np.mean(params[:, 0] == 0) == pytest.approx(0.75, abs=0.03)
    atoms, nodes = lands.points(params[:5]), lands.nodes(params[:5])
    ca = residue_nodes(adk[0]).atoms
    np.testing.assert_allclose(atoms[:, ca], nodes, atol=1e-9)


def test_single_state_without_motion_is_a_homogeneous_set(adk):
    lands = build_landscape([adk[0]], SimulationSpec(density="residue"), mode="discrete")
    params = lands.sample(5, np.random.default_rng(0))
    np.testing.assert_array_equal(lands.path_coordinate(params), 0.0)
    np.testing.assert_allclose(lands.nodes(params), np.broadcast_to(residue_nodes(adk[0]).coords, (5, 214, 3)))


def test_landscape_errors(adk):
    with pytest.raises(CryodynaError, match="normal modes"):
        build_landscape([adk[0]], SimulationSpec(density="residue"))
    with pytest.raises(CryodynaError, match="mode_path"):
        SimulationSpec(mode_path="circle")
    with pytest.raises(ValueError, match="arc"):
        Landscape(np.zeros((1, 3, 3)), np.arange(3), np.zeros((1, 3, 3)), "interpolate", np.ones(1), np.zeros((1, 3, 3)),
                  1.0, "arc")


def test_simulated_ground_truth_rebuilds_the_landscape_and_ceiling_finds_the_truth(adk, tmp_path):
    spec = SimulationSpec(n_particles=40, box=32, apix=4.0, snr=None, density="atom", normal_modes=1, mode_amplitude=3.0,
                          seed=4)
    simulate(list(adk), spec, tmp_path)
    gt = np.load(tmp_path / "ground_truth.npz")
    lands = Landscape.from_arrays(gt)
    np.testing.assert_allclose(lands.nodes(gt["params"]), gt["node_coords"], atol=1e-3)
    assert gt["params"].shape == (40, 2)
    np.testing.assert_allclose(gt["path_coordinate"], gt["params"][:, 0])
    # noiseless images: the Bayes estimate with the simulator's own density is exact
    exact = accuracy_ceiling(tmp_path, "density", n_queries=10, n_candidates=40)
    assert exact.median_rmsd == 0.0 and exact.spearman == pytest.approx(1.0)
    assert exact.posterior_median_rmsd == pytest.approx(0.0, abs=1e-6) and exact.posterior_spearman == pytest.approx(1.0)
    approx = accuracy_ceiling(tmp_path, "image", n_queries=20, n_candidates=40, lowpass=12.0)
    assert approx.spearman > 0.9 and approx.median_rmsd < 1.0
