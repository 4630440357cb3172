import warnings

import numpy as np
import pytest
import torch
from conftest import plain_particle_images

from cryodyna.data.dataset import ParticleDataset
from cryodyna.imaging.loss import masked_pearson
from cryodyna.imaging.filters import circular_mask
from cryodyna.imaging.projection import project_gaussians
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_structure
from cryodyna.simulate.simulator import SimulationSpec, simulate
from cryodyna.structure.nodes import residue_nodes


@pytest.fixture(scope="module")
def two_states(tmp_path_factory):
    from cryodyna.simulate.adk import adk_states

    return adk_states()


def forward(ds, nodes_coords, electrons, sigma, idx, flip_shift=False):
    """Our image model rebuilt from the files the simulator wrote."""
    batch = ds.batch(np.asarray(list(idx)))
    poses = batch["poses"]
    img = project_gaussians(torch.as_tensor(nodes_coords, dtype=torch.float32), torch.as_tensor(electrons, dtype=torch.float32),
                            torch.full((len(electrons),), sigma), poses.rotations, ds.box, float(ds.apix[0]), norm="mass",
                            pixel_average=True)
    origins = poses.origins * (-1 if flip_shift else 1)
    return plain_particle_images(img, origins, batch["ctf"], float(ds.apix[0])), batch["images"]


def test_noiseless_residue_simulation_matches_forward_model_through_files(tmp_path, two_states):
    # an odd box: the formulas' complex FFT and the image model's half spectrum then agree at every frequency
    spec = SimulationSpec(n_particles=12, box=49, apix=2.5, snr=None, density="residue", max_shift=6.0, seed=3)
    star = simulate(list(two_states), spec, tmp_path)
    gt = np.load(tmp_path / "ground_truth.npz")
    ds = ParticleDataset(read_particles(star))
    electrons = residue_nodes(two_states[0]).electrons
    for i in range(12):
        pred, data = forward(ds, gt["node_coords"][i][None], electrons, 2.0, [i])
        torch.testing.assert_close(pred, data, atol=2e-4 * data.abs().max().item(), rtol=0)
    # the RELION shift sign matters: the flipped convention fits clearly worse
    pred, data = forward(ds, gt["node_coords"], electrons, 2.0, range(12))
    pred_flip, _ = forward(ds, gt["node_coords"], electrons, 2.0, range(12), flip_shift=True)
    mask = circular_mask(49, 1.0)
    assert masked_pearson(pred, data, mask).min() > 0.999
    assert masked_pearson(pred_flip, data, mask).mean() < 0.9


def test_ground_truth_and_determinism(tmp_path, two_states):
    spec = SimulationSpec(n_particles=20, box=32, apix=4.0, snr=0.1, seed=7)
    simulate(list(two_states), spec, tmp_path / "a")
    simulate(list(two_states), spec, tmp_path / "b")
    import mrcfile

    with mrcfile.open(tmp_path / "a" / "particles.mrcs") as a, mrcfile.open(tmp_path / "b" / "particles.mrcs") as b:
        np.testing.assert_array_equal(a.data, b.data)  # the header label holds a time stamp
    def star_body(path):  # without starfile's "# Created by ... at <time>" comment
        return [line for line in path.read_text().splitlines() if not line.startswith("#")]

    assert star_body(tmp_path / "a" / "particles.star") == star_body(tmp_path / "b" / "particles.star")
    gt = np.load(tmp_path / "a" / "ground_truth.npz")
    u = gt["path_coordinate"]
    assert gt["node_coords"].shape == (20, 214, 3) and gt["state_node_coords"].shape == (2, 214, 3)
    assert ((u >= 0) & (u <= 1)).all()
    expected = gt["state_node_coords"][0] * (1 - u[:, None, None]) + gt["state_node_coords"][1] * u[:, None, None]
    np.testing.assert_allclose(gt["node_coords"], expected, atol=1e-4)
    np.testing.assert_array_equal(gt["state"], np.rint(u).astype(int))


def test_float16_stack_holds_the_same_images_in_half_the_disk(tmp_path, two_states):
    import mrcfile

    spec = SimulationSpec(n_particles=20, box=32, apix=4.0, snr=0.1, seed=7)
    simulate(list(two_states), spec, tmp_path / "f32")
    simulate(list(two_states), SimulationSpec(**{**spec.__dict__, "float16": True}), tmp_path / "f16")
    with mrcfile.open(tmp_path / "f32" / "particles.mrcs") as a, mrcfile.open(tmp_path / "f16" / "particles.mrcs") as b:
        assert int(b.header.mode) == 12 and b.data.dtype == np.float16
        np.testing.assert_allclose(b.data.astype(np.float32), a.data, rtol=2e-3, atol=2e-3 * np.abs(a.data).max())
    assert (tmp_path / "f16" / "particles.mrcs").stat().st_size < 0.55 * (tmp_path / "f32" / "particles.mrcs").stat().st_size
    dataset = ParticleDataset(read_particles(tmp_path / "f16" / "particles.star"))  # read back as float32 images
    assert dataset.batch([0, 1])["images"].dtype == torch.float32


def test_snr_sets_noise_level(tmp_path, two_states):
    spec = SimulationSpec(n_particles=200, box=32, apix=4.0, snr=0.5, seed=1, max_shift=0)
    simulate(list(two_states), spec, tmp_path)
    gt = np.load(tmp_path / "ground_truth.npz")
    ds = ParticleDataset(read_particles(tmp_path / "particles.star"))
    images = torch.stack([ds.image(i) for i in range(200)])
    total_var = images.var(dim=(-2, -1)).mean().item()
    noise_var = float(gt["noise_std"]) ** 2
    signal_var = total_var - noise_var
    assert signal_var / noise_var == pytest.approx(0.5, rel=0.15)


def test_discrete_ensemble_with_weights(tmp_path, two_states):
    spec = SimulationSpec(n_particles=400, box=24, apix=5.0, snr=None, density="residue", seed=2)
    simulate(list(two_states), spec, tmp_path, mode="discrete", weights=[3, 1])
    gt = np.load(tmp_path / "ground_truth.npz")
    assert np.mean(gt["state"] == 0) == pytest.approx(0.75, abs=0.06)
    np.testing.assert_allclose(gt["node_coords"][gt["state"] == 1][0], gt["state_node_coords"][1])


def test_states_must_match(tmp_path, two_states, peptide_pdb):
    from cryodyna.errors import InputError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pep = read_structure(peptide_pdb)
    with pytest.raises(InputError, match="identical atoms"):
        simulate([two_states[0], pep], SimulationSpec(n_particles=2, box=16), tmp_path)


def test_invalid_settings_are_rejected():
    from cryodyna.errors import CryodynaError

    with pytest.raises(CryodynaError, match="density must be 'atom' or 'residue'"):
        SimulationSpec(density="cloud")
    with pytest.raises(CryodynaError, match="snr must be positive"):
        SimulationSpec(snr=-1.0)


def test_adk_md_frames_are_a_superposed_closed_to_open_trajectory():
    from cryodyna.simulate.adk import adk_md_frames, adk_states
    from cryodyna.structure.align import rmsd

    frames = adk_md_frames(every=11)
    assert len(frames) == 10 and all(f.n_atoms == 3341 for f in frames)
    ca = np.stack([residue_nodes(f).coords for f in frames])
    np.testing.assert_allclose(frames[0].coords.mean(0), 0, atol=1e-3)  # the first frame at the box centre
    for x in ca[1:]:  # each frame superposed on the first: superposing again changes nothing
        assert float(rmsd(x, ca[0])) == pytest.approx(float(rmsd(x, ca[0], superpose=True)), abs=1e-3)
    closed, opened = (residue_nodes(s).coords for s in adk_states())
    assert float(rmsd(ca[0], closed, superpose=True)) < 0.5 and float(rmsd(ca[-1], opened, superpose=True)) < 1.0
    assert 5.5 < float(rmsd(ca[-1], ca[0])) < 7.5  # the closed -> open motion


def test_simulate_centres_a_deposited_model_and_writes_the_model_it_simulated(tmp_path, two_states):
    from typer.testing import CliRunner

    from cryodyna.cli import app
    from cryodyna.io.structure import write_structure
    from cryodyna.train.preflight import check_model_in_box

    corner = two_states[0].with_coords(two_states[0].coords + np.array([195.0, 180.0, 170.0], dtype=np.float32))
    write_structure(tmp_path / "deposited.pdb", corner)  # origin at the map corner, as in the PDB
    r = CliRunner().invoke(app, ["simulate", str(tmp_path / "deposited.pdb"), "-o", str(tmp_path / "sim"),
                                                 "-n", "8", "--box", "48", "--apix", "3.0", "--mode", "discrete"])
    assert r.exit_code == 0, r.output
    reference = read_structure(tmp_path / "sim" / "reference.pdb")
    np.testing.assert_allclose(reference.coords.mean(0), 0, atol=1e-2)
    check_model_in_box(residue_nodes(reference).coords, 48 * 3.0, tmp_path / "sim" / "reference.pdb")
    images = ParticleDataset(read_particles(tmp_path / "sim" / "particles.star")).batch(np.arange(8))["images"]
    assert float(images.std()) > 0  # the molecule is in the images, not outside the box
    r = CliRunner().invoke(app, ["simulate", str(tmp_path / "deposited.pdb"), "-o", str(tmp_path / "small"),
                                                 "-n", "8", "--box", "16", "--apix", "2.0", "--mode", "discrete"])
    assert r.exit_code != 0 and "use a larger --box or --apix" in str(r.exception)
