"""Local pose refinement: simulated pose errors, per-particle corrections, resume and DDP."""

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPEATABLE, TINY_TRAIN_SETTINGS
from cryodyna.analysis.cluster import run_particles
from cryodyna.config.schema import OptimConfig
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.imaging.rotations import axis_angle_to_matrix, random_rotations, rotation_angle_deg
from cryodyna.io.star import read_star
from cryodyna.io.structure import read_structure
from cryodyna.simulate.simulator import SimulationSpec, perturb_poses, simulate
from cryodyna.structure.nodes import residue_nodes
from cryodyna.imaging.filters import circular_mask
from cryodyna.imaging.image_model import ImageModel
from cryodyna.train.poses import PoseCorrections, fourier_halves, image_model_spectra
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom


def test_perturbed_poses_have_the_requested_rms_error():
    rng = np.random.default_rng(0)
    rot = random_rotations(4000, rng)
    shifts = rng.uniform(-4, 4, (4000, 2))
    given_rot, given_shifts = perturb_poses(rot, shifts, 3.0, 0.8, rng)
    angle = rotation_angle_deg(given_rot, rot)
    assert np.sqrt((angle**2).mean()) == pytest.approx(3.0, rel=0.05)
    assert np.sqrt(((given_shifts - shifts) ** 2).sum(1).mean()) == pytest.approx(0.8, rel=0.05)
    same_rot, same_shifts = perturb_poses(rot, shifts, 0.0, 0.0, rng)
    assert same_rot is rot and same_shifts is shifts


def test_simulator_writes_perturbed_poses_and_keeps_true_images(tiny_adk, tmp_path):
    structure = read_structure(tiny_adk / "reference.pdb")
    spec = dict(n_particles=60, box=32, apix=4.0, snr=1.0, density="residue", seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulate([structure], SimulationSpec(**spec), tmp_path / "exact", mode="discrete")
    from typer.testing import CliRunner

    from cryodyna.cli import app

    r = CliRunner().invoke(app, ["simulate", str(tiny_adk / "reference.pdb"), "-o", str(tmp_path / "noisy"), "--mode", "discrete",
                                 "-n", "60", "--box", "32", "--apix", "4", "--snr", "1", "--density", "residue", "--seed", "3",
                                 "--pose-error-deg", "3", "--shift-error-a", "0.8"])
    assert r.exit_code == 0, r.output
    import mrcfile

    with mrcfile.open(tmp_path / "exact" / "particles.mrcs") as a, mrcfile.open(tmp_path / "noisy" / "particles.mrcs") as b:
        # images rendered in the true poses (equal up to the float rounding of the thread count, which follows the load)
        np.testing.assert_allclose(a.data, b.data, rtol=0, atol=1e-4)
    gt = np.load(tmp_path / "noisy" / "ground_truth.npz")
    star = read_star(tmp_path / "noisy" / "particles.star")
    np.testing.assert_allclose(star.rotations, gt["given_rotations"], atol=1e-4)
    np.testing.assert_allclose(read_star(tmp_path / "exact" / "particles.star").rotations, gt["rotations"], atol=1e-4)
    angle = rotation_angle_deg(star.rotations, gt["rotations"])
    assert 1.5 < np.median(angle) < 4.5
    assert 0.2 < np.median(np.linalg.norm(star.shifts - gt["shifts"], axis=1)) < 1.5


def _pose_problem(tiny_adk, n, error_deg, error_a, snr, seed, masked=False):
    """Images (n, 32, 32) of the reference in random true poses (white noise at ``snr``; none for
    0; noise alone, of unit variance, for ``inf``; ``masked``: then zeroed outside the disc, as
    training prepares particles), given poses ``error_deg`` / ``error_a`` RMS off, and the image
    model that made them."""
    torch.manual_seed(seed)
    nodes = residue_nodes(read_structure(tiny_adk / "reference.pdb"))
    coords = torch.as_tensor(nodes.coords, dtype=torch.float32)
    d, apix = 32, 4.0
    model = ImageModel(d, apix, torch.as_tensor(nodes.electrons, dtype=torch.float32), torch.full((len(coords),), 2.0),
                       8.0, 2.0, 0.9375)
    rng = np.random.default_rng(seed)
    true_rot = random_rotations(n, rng)
    true_shift = rng.uniform(-4, 4, (n, 2))
    given_rot, given_shift = perturb_poses(true_rot, true_shift, error_deg, error_a, rng)
    ctf = CTFParams(*torch.tensor([[15000.0, 14800.0, 0.3, 300.0, 2.7, 0.1, 0.0]], dtype=torch.float64).expand(n, -1).T)
    xyz = coords.expand(n, -1, -1)
    with torch.no_grad():
        images = model.predict(xyz, PoseBatch(torch.as_tensor(true_rot).float(), torch.as_tensor(true_shift / apix).float()), ctf)
        if snr == np.inf:
            images = torch.randn_like(images)
        elif snr:
            images = images + images.std() / np.sqrt(snr) * torch.randn_like(images)
        if masked:
            images = images * circular_mask(d)
    spectra = image_model_spectra(model, xyz, images, ctf)
    batch = {"index": torch.arange(n), "poses": PoseBatch(torch.as_tensor(given_rot).float(), torch.as_tensor(given_shift / apix).float())}
    return batch, spectra, (true_rot, true_shift), (given_rot, given_shift), apix


def _errors(poses, given, truth, apix):
    rot, shift = poses.corrected(*given, apix)
    return np.median(rotation_angle_deg(rot, truth[0])), np.median(np.linalg.norm(shift - truth[1], axis=1))


def test_corrections_recover_a_known_pose_error(tiny_adk):
    """Noiseless images of the reference in true poses, given poses 4 degrees / 1 Å off: a few
    visits of the Gauss-Newton update bring them back."""
    batch, spectra, truth, given, apix = _pose_problem(tiny_adk, 24, 4.0, 1.0, 0, 1)
    poses = PoseCorrections(24, OptimConfig(refine_poses=True, pose_prior_deg=10.0, pose_prior_a=3.0), apix, torch.device("cpu"))
    before = _errors(poses, given, truth, apix)
    for _ in range(4):
        poses.update(batch, spectra)
    after = _errors(poses, given, truth, apix)
    assert after[0] < 0.1 * before[0] and after[1] < 0.1 * before[1], (before, after)
    assert poses.visits.max() == 4


def test_corrections_shrink_to_what_noisy_images_support(tiny_adk):
    """Noisy images: with exact given poses (SNR 0.05) the estimated error spread collapses and the
    corrections stay far below the noise of single-image estimates; with poses 3 degrees / 1 Å off
    (SNR 0.5) the spread is found and the errors shrink."""
    n = 400
    optim = OptimConfig(refine_poses=True, pose_prior_deg=6.0, pose_prior_a=2.0)
    batch, spectra, truth, given, apix = _pose_problem(tiny_adk, n, 0.0, 0.0, 0.05, 2)
    exact = PoseCorrections(n, optim, apix, torch.device("cpu"))
    for _ in range(3):
        exact.update(batch, spectra)
    single = np.rad2deg(exact.stats[:, :2, :3].mean(1).norm(dim=1).median().item())  # the image-only estimates
    tau, _ = exact.prior_widths()
    assert np.rad2deg(tau[0].item()) < 1.0 and single > 3.0, (tau, single)
    assert _errors(exact, given, truth, apix)[0] < 0.25 * single

    batch, spectra, truth, given, apix = _pose_problem(tiny_adk, n, 3.0, 1.0, 0.5, 2)
    perturbed = PoseCorrections(n, optim, apix, torch.device("cpu"))
    before = _errors(perturbed, given, truth, apix)
    for _ in range(3):
        perturbed.update(batch, spectra)
    tau, _ = perturbed.prior_widths()
    assert 1.0 < np.rad2deg(tau[0].item()) < 3.0, tau  # 3 degrees RMS over three axes: 1.7 per axis
    after = _errors(perturbed, given, truth, apix)
    assert after[0] < 0.8 * before[0] and after[1] < 0.8 * before[1], (before, after)


def test_masked_noise_gives_independent_half_estimates(tiny_adk):
    """Masking the particles in real space correlates the noise of neighbouring Fourier
    coefficients.  On masked pure-noise images the two halves' pose estimates must be uncorrelated
    (else their agreement passes for a pose error); a checkerboard split of the same coefficients,
    which the test can tell apart, is not."""
    n = 1500
    batch, spectra, _, _, apix = _pose_problem(tiny_adk, n, 0.0, 0.0, np.inf, 4, masked=True)
    k = torch.round(torch.as_tensor(np.stack(np.meshgrid(np.fft.fftfreq(32), np.fft.rfftfreq(32), indexing="ij"))) * 32).long()
    checkerboard = ((k[0] + k[1]) % 2).flatten()
    optim = OptimConfig(refine_poses=True, pose_prior_deg=180.0, pose_prior_a=100.0)
    correlations = {}
    for name, halves in (("sectors", spectra.halves), ("checkerboard", checkerboard)):
        poses = PoseCorrections(n, optim, apix, torch.device("cpu"))
        poses.update(batch, dataclasses.replace(spectra, halves=halves))
        a, b = poses.stats[:, 0].double(), poses.stats[:, 1].double()
        correlations[name] = float(((a * b).mean(0) / (a.square().mean(0) * b.square().mean(0)).sqrt()).mean())
    assert abs(correlations["sectors"]) < 0.04 and correlations["checkerboard"] > 0.1, correlations


def test_fourier_halves_are_disjoint_symmetric_sectors():
    """Each half holds about as many coefficients, a pair k, -k shares its half, and no coefficient
    of one half is next to one of the other."""
    d = 48
    k = torch.stack(torch.meshgrid(torch.arange(-d // 2, d // 2), torch.arange(-d // 2, d // 2), indexing="ij")).float()
    halves = fourier_halves(k / d, d)
    inside = k.square().sum(0) < (d // 2) ** 2
    counts = [int(((halves == h) & inside).sum()) for h in (0, 1)]
    assert abs(counts[0] - counts[1]) < 0.05 * sum(counts) and sum(counts) > 0.5 * int(inside.sum()), counts
    flipped = fourier_halves(-k / d, d)
    assert torch.equal(halves[1:, 1:], flipped[1:, 1:])
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        neighbour = torch.roll(halves, shift, dims=(0, 1))
        assert not (((halves == 0) & (neighbour == 1)) | ((halves == 1) & (neighbour == 0)))[2:-2, 2:-2].any(), shift


POSE_SETTINGS = TINY_TRAIN_SETTINGS + REPEATABLE + ["optim.refine_poses=true", "optim.pose_warmup_epochs=1"]


def train(tiny_adk, run_dir, epochs, settings=POSE_SETTINGS):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run_dir, resolved_config(None, settings, epochs))


@pytest.mark.slow
def test_refinement_writes_star_and_resumes_exactly(tiny_adk, tmp_path):
    straight = train(tiny_adk, tmp_path / "straight", 3)
    train(tiny_adk, tmp_path / "resumed", 2)
    resumed = train(tiny_adk, tmp_path / "resumed", 3)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["poses"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["poses"]
    assert a["visits"].max() == 2  # epochs 2 and 3 refine (one warm-up epoch)
    assert a["values"].abs().sum() > 0
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)
    refined = read_star(straight / "particles_refined.star")
    given = read_star(tiny_adk / "particles.star")
    assert len(refined) == len(given) and np.abs(refined.rotations - given.rotations).max() > 0
    np.testing.assert_array_equal(refined.defocus_u, given.defocus_u)
    assert (resumed / "particles_refined.star").is_file()
    exported = run_particles(tmp_path / "straight")  # what `cluster` writes subsets from
    np.testing.assert_allclose(exported.rotations, refined.rotations)
    np.testing.assert_allclose(exported.shifts, refined.shifts)
    # the refined poses are the given ones composed with the stored corrections
    x = a["values"].double()
    angle = np.rad2deg(x[:, :3].norm(dim=1).numpy())
    np.testing.assert_allclose(rotation_angle_deg(refined.rotations, given.rotations), angle, atol=0.05)


def test_without_refinement_poses_stay_as_given(tiny_adk, tmp_path):
    folder = train(tiny_adk, tmp_path / "plain", 1, TINY_TRAIN_SETTINGS)
    assert not (folder / "particles_refined.star").exists()
    assert "poses" not in torch.load(tmp_path / "plain" / "checkpoints" / "last.pt", weights_only=False)


@pytest.mark.parametrize("legacy_origins", [False, True])
def test_refined_star_keeps_every_column_of_the_input(tiny_adk, tmp_path, legacy_origins):
    import starfile

    from cryodyna.io.star import write_star_with_poses

    blocks = starfile.read(tiny_adk / "particles.star", always_dict=True)
    df = blocks["particles"]
    df["rlnImageName"] = [f"{n.split('@')[0]}@{(tiny_adk / n.split('@')[1]).resolve()}" for n in df["rlnImageName"]]
    df["rlnRandomSubset"] = np.arange(len(df)) % 2 + 1
    if legacy_origins:
        df["rlnOriginX"], df["rlnOriginY"] = df.pop("rlnOriginXAngst") / 4.0, df.pop("rlnOriginYAngst") / 4.0
    (tmp_path / "in").mkdir()
    starfile.write(blocks, tmp_path / "in" / "given.star")
    table = read_star(tmp_path / "in" / "given.star")
    rng = np.random.default_rng(0)
    rotations = axis_angle_to_matrix(rng.normal(0, 0.02, (len(table), 3))) @ table.rotations
    shifts = table.shifts + rng.normal(0, 0.5, (len(table), 2))
    out = tmp_path / "out" / "refined.star"
    out.parent.mkdir()
    write_star_with_poses(out, table, rotations, shifts)
    back = read_star(out)
    np.testing.assert_allclose(back.rotations, rotations, atol=1e-5)
    np.testing.assert_allclose(back.shifts, shifts, atol=1e-5)
    np.testing.assert_array_equal(back.image_index, table.image_index)
    assert all(Path(f).resolve() == Path(g).resolve() for f, g in zip(back.image_file, table.image_file))
    written = starfile.read(out, always_dict=True)["particles"]
    assert list(written.columns) == list(df.columns)
    np.testing.assert_array_equal(written["rlnRandomSubset"], df["rlnRandomSubset"])
