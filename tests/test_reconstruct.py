"""Deformation-corrected reconstruction: the displacement field, back-projection geometry, exact
reconstruction of a homogeneous set, correction of a known motion, and the reconstruct command."""

import json
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cryodyna.analysis.fsc import fsc
from cryodyna.analysis.halfsets import halfset_agreement
from cryodyna.analysis.reconstruct import reconstruct
from cryodyna.cli import app
from cryodyna.data.dataset import ParticleDataset
from cryodyna.errors import CryodynaError
from cryodyna.imaging.backprojection import backproject
from cryodyna.imaging.density import gaussian_density
from cryodyna.imaging.displacement_field import DisplacementField
from cryodyna.imaging.grids import voxel_points
from cryodyna.io.mrc import read_volume
from cryodyna.io.read import read_particles
from cryodyna.simulate.adk import adk_states
from cryodyna.simulate.simulator import SimulationSpec, simulate
from cryodyna.structure.nodes import residue_nodes
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom
from conftest import TINY_TRAIN_SETTINGS

runner = CliRunner()


@pytest.fixture(scope="module")
def adk():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adk_states()


def test_displacement_field_moves_the_molecule_rigidly_and_fades_outside(adk):
    nodes = residue_nodes(adk[0]).coords
    field = DisplacementField(nodes, 48, 2.0, width=3.8)
    shift = torch.tensor([1.5, -2.0, 0.5])
    u = field.at_voxels(shift.expand(1, len(nodes), 3))[0]
    dist = np.linalg.norm(field.points.numpy()[:, None] - nodes[None], axis=-1).min(1)
    inside = dist < 4.0  # side-chain atoms lie within ~4-6 Å of their CA
    assert inside.sum() > 2000
    np.testing.assert_allclose(u[inside].numpy(), shift.expand(int(inside.sum()), 3).numpy(), rtol=2e-3)  # exact inside
    edge = dist > 10.0
    assert edge.any() and u[edge].norm(dim=1).mean() < 0.4 * shift.norm()  # fades beyond ~2.5 widths
    assert len(field.voxels) < 48**3 / 2  # voxels far from the model are never deformed
    rng = np.random.default_rng(0)
    d1, d2 = (torch.as_tensor(rng.normal(size=(1, len(nodes), 3)), dtype=torch.float32) for _ in range(2))
    torch.testing.assert_close(field.at_voxels(2 * d1 - d2), 2 * field.at_voxels(d1) - field.at_voxels(d2), atol=1e-4, rtol=0)


def test_backprojection_reads_each_voxel_at_its_projected_pixel():
    d, apix = 16, 1.5
    image = torch.randn(1, 1, d, d)
    points = voxel_points(d, apix)
    flat = backproject(image, torch.eye(3)[None], points, apix)[0].view(d, d, d)  # [z, y, x]
    torch.testing.assert_close(flat, image[0, 0].expand(d, d, d))  # p = (x, y): constant along z
    about_x = torch.tensor([[[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]])  # p0 = x, p1 = -z
    tilted = backproject(image, about_x, points, apix)[0].view(d, d, d)
    z = torch.arange(1, d)  # z index k reads image row d - k (row 0 would be p1 = +d/2 px: outside)
    torch.testing.assert_close(tilted[z, 3], image[0, 0][d - z])
    assert tilted[0].abs().max() == 0  # outside the image: zero, never wrapped
    two = backproject(torch.cat([image, 2 * image], 1), about_x, points, apix)  # channels together
    torch.testing.assert_close(two[1], 2 * two[0])


def _simulated(tmp_path, states, density, n, d, apix, snr=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulate(states, SimulationSpec(n_particles=n, box=d, apix=apix, snr=snr, density=density, seed=0), tmp_path,
                 mode="discrete" if len(states) == 1 else "interpolate")
    return ParticleDataset(read_particles(tmp_path / "particles.star")), np.load(tmp_path / "ground_truth.npz")


def test_homogeneous_particles_reconstruct_the_true_map(adk, tmp_path):
    d, apix = 32, 3.0
    dataset, _ = _simulated(tmp_path, [adk[0]], "residue", 300, d, apix)
    nodes = residue_nodes(adk[0])
    frame = nodes.coords
    rec = reconstruct(dataset, [np.arange(0, 300, 2), np.arange(1, 300, 2)],
                      lambda k, idx: torch.as_tensor(frame)[None].expand(len(idx), -1, -1), frame, 3.8)
    truth = gaussian_density(torch.as_tensor(frame), torch.as_tensor(nodes.electrons), 2.0, d, apix).numpy()
    for maps in (rec.corrected, rec.plain):  # no motion: the two agree
        curve = fsc(maps.full, truth, apix, rec.mask)
        assert curve.fsc[: int(0.8 * len(curve.fsc))].min() > 0.9, curve.fsc
        assert abs((maps.full * rec.mask).sum() / (truth * rec.mask).sum() - 1) < 0.15  # in e/Å^3, like the truth
        assert maps.fsc.resolution(0.143) < 2.2 * apix
    np.testing.assert_allclose(rec.corrected.full, rec.plain.full, atol=1e-5 * np.abs(truth).max())
    assert rec.particles == (150, 150)


def test_known_motion_is_undone_by_the_corrected_backprojection(adk, tmp_path):
    """Closed <-> open particles (all-atom density) back-projected into the closed frame through their
    true node motion: the corrected map matches the closed state's map far better than the plain one."""
    d, apix = 48, 2.0
    dataset, gt = _simulated(tmp_path, list(adk), "atom", 300, d, apix)
    closed = adk[0]
    frame = residue_nodes(closed).coords
    true_nodes = torch.as_tensor(gt["node_coords"])
    rec = reconstruct(dataset, [np.arange(0, 300, 2), np.arange(1, 300, 2)], lambda k, idx: true_nodes[idx], frame, 3.8)
    truth = gaussian_density(torch.as_tensor(closed.coords), torch.as_tensor(closed.atomic_number, dtype=torch.float32),
                             1.0, d, apix).numpy()
    corrected, plain = (fsc(m.full, truth, apix, rec.mask) for m in (rec.corrected, rec.plain))
    assert corrected.resolution(0.5) < 4.6 and plain.resolution(0.5) > 7.0, (corrected.fsc, plain.fsc)
    assert corrected.auc > plain.auc + 0.15


def test_halfset_agreement_separates_reproducible_from_unreproducible_motion():
    rng = np.random.default_rng(0)
    amplitude = np.linspace(0, 4, 50)  # node n moves by up to amplitude[n] Å along x
    t = rng.uniform(-1, 1, (400, 1))
    truth = np.zeros((400, 50, 3))
    truth[..., 0] = t * amplitude
    a, b = (truth + rng.normal(0, 0.1, truth.shape) for _ in range(2))
    good = halfset_agreement((a[i : i + 64], b[i : i + 64]) for i in range(0, 400, 64))  # streamed in batches
    expected = np.sqrt(amplitude**2 / 3 + 3 * 0.1**2 / 2)  # RMS of a uniform motion, plus the noise of the mean
    np.testing.assert_allclose(good.motion, expected, rtol=0.12)
    np.testing.assert_allclose(good.disagreement, 0.1 * np.sqrt(6), rtol=0.15)  # |noise_A - noise_B|
    assert good.particle_rmsd.shape == (400,) and good.warning() is None
    other = truth.copy()
    other[..., 0] = rng.uniform(-1, 1, (400, 1)) * amplitude  # the second half orders the particles differently
    bad = halfset_agreement([(truth, other)])
    assert bad.ratio > 1 and "not reproducible" in bad.warning()
    still = np.zeros((20, 50, 3))  # two models that learned no motion at all, one slightly off
    none = halfset_agreement([(still, still + 0.001 * rng.normal(size=still.shape))])
    assert "describe no motion" in none.warning() and "%" not in none.warning()


def test_halfsets_train_two_independent_models_and_compare_them(halfset_run, tiny_adk):
    labels = np.load(halfset_run / "halfset.npy")
    assert sorted(np.unique(labels)) == [1, 2] and abs((labels == 1).sum() - 100) <= 1
    assert "random halves" in json.loads((halfset_run / "halfsets.json").read_text())["split"]
    for k in (1, 2):
        half = halfset_run / f"half-{k}"
        info = json.loads((half / "run.json").read_text())
        assert info["n_trained_on"] == (labels == k).sum() and info["n_particles"] == 200
        holdout = torch.load(half / "checkpoints" / "last.pt", weights_only=False)["holdout"]
        assert len(holdout) and np.all(labels[holdout] == k)  # trained and held out within its own half
        assert len(np.load(sorted(half.glob("epoch-*"))[-1] / "z.npy")) == 200  # latents for every particle
        assert "Half-set agreement" in (half / "report.html").read_text()
    per_node = np.genfromtxt(halfset_run / "halfset_agreement.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert len(per_node) == 214 and {"disagreement_a", "motion_a", "ratio"} <= set(per_node.dtype.names)
    assert np.all(np.isfinite(per_node["disagreement_a"])) and np.all(per_node["motion_a"] >= 0)
    per_particle = np.genfromtxt(halfset_run / "halfset_particles.csv", delimiter=",", names=True)
    assert len(per_particle) == 200 and np.array_equal(per_particle["half"], labels)
    assert (halfset_run / "cache" / "images.npy").is_file() and not (halfset_run / "half-1" / "cache").exists()


def test_reconstruct_command_on_halfset_and_single_runs(halfset_run, tiny_adk, tmp_path):
    r = runner.invoke(app, ["reconstruct", str(halfset_run), "-o", str(tmp_path / "consensus.mrc")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # the console wraps long lines
    assert "independent models" in text and "FSC=0.143" in text
    for name in ("consensus", "consensus_half1", "consensus_half2", "consensus_plain", "consensus_plain_half1",
                 "consensus_plain_half2", "consensus_mask"):
        vol, apix, _ = read_volume(tmp_path / f"{name}.mrc")
        assert vol.shape == (32, 32, 32) and apix == pytest.approx(4.0) and np.isfinite(vol).all() and vol.std() > 0
    summary = json.loads((tmp_path / "consensus.json").read_text())
    assert summary["particles"] == [100, 100] and summary["corrected"]["fsc_0.143_a"] >= 8.0
    assert (tmp_path / "consensus_fsc.png").is_file()
    assert np.loadtxt(tmp_path / "consensus_fsc.csv", delimiter=",", skiprows=1).shape == (16, 4)

    single = tmp_path / "single"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", single,
                   resolved_config(None, TINY_TRAIN_SETTINGS + ["optim.refine_poses=true", "optim.pose_warmup_epochs=0"], 1))
    z = np.load(sorted(single.glob("epoch-*"))[-1] / "z.npy")
    from cryodyna.pipelines.reconstruct import _source, _with_refined_poses

    source = _source(single, None, torch.device("cpu"))
    refined = read_particles(source.folder / "particles_refined.star")
    given = read_particles(tiny_adk / "particles.star")
    labels = np.array([1, 2] * 100)
    used = _with_refined_poses(given, [source, source], labels, resolved_config(None, [], 1))
    assert not np.allclose(refined.rotations, given.rotations)  # refinement moved the poses; reconstruct uses them
    np.testing.assert_allclose(used.rotations, refined.rotations)
    np.testing.assert_allclose(used.shifts, refined.shifts)
    np.savetxt(tmp_path / "targets.txt", z[[0, 5]])
    r = runner.invoke(app, ["reconstruct", str(single), "-o", str(tmp_path / "s.mrc"), "--box", "24", "--z",
                            str(tmp_path / "targets.txt"), "--particles-per-map", "60"])
    assert r.exit_code == 0, r.output
    assert "one model trained on all particles" in " ".join(r.output.split())
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [m["particles"] for m in summary["latent_maps"]] == [60, 60]
    vol, apix, _ = read_volume(tmp_path / "s_z001.mrc")
    assert vol.shape == (24, 24, 24) and apix == pytest.approx(32 * 4.0 / 24)
    np.savetxt(tmp_path / "bad.txt", np.zeros((1, 3)))
    r = runner.invoke(app, ["reconstruct", str(single), "-o", str(tmp_path / "b.mrc"), "--z", str(tmp_path / "bad.txt")])
    assert isinstance(r.exception, CryodynaError) and "rows of 4 values" in str(r.exception)
    r = runner.invoke(app, ["reconstruct", str(tmp_path), "-o", str(tmp_path / "c.mrc")])
    assert isinstance(r.exception, CryodynaError) and "not a train-atom or train-cg run folder" in str(r.exception)
