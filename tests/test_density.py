"""Density generator: central-slice geometry, FSC, homogeneous recovery, outputs and CLI."""

import math
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cryodyna.analysis.fsc import fsc, map_fsc
from cryodyna.cli import app
from cryodyna.config import load_config
from cryodyna.errors import CryodynaError, InputError
from cryodyna.imaging.density import gaussian_density
from cryodyna.imaging.fft import fft2_center
from cryodyna.imaging.projection import project_gaussians
from cryodyna.imaging.rotations import random_rotations
from cryodyna.imaging.slicing import CentralSlice, volume_from_fourier
from cryodyna.io.mrc import read_volume, write_volume
from cryodyna.models.volume import VolumeDecoder
from cryodyna.simulate.adk import adk_states
from cryodyna.simulate.simulator import SimulationSpec, simulate
from cryodyna.structure.nodes import residue_nodes
from cryodyna.pipelines.training import train_density

SMALL_NET = ["model.hidden=64", "model.layers=2", "optim.lr=2e-3", "optim.batch_size=16", "data.cache_images=false"]


def gaussian_fourier(mu: torch.Tensor, amps: torch.Tensor, sigma: float, d: int, apix: float):
    """Exact DFT / D (per-voxel mass) of a Gaussian mixture at frequencies k (1, P, 3) cycles/px."""
    def evaluate(k):
        s = k[0] / apix
        phase = -2 * math.pi * (s @ mu.T)
        env = amps * torch.exp(-2 * math.pi**2 * sigma**2 * (s * s).sum(-1, keepdim=True))
        return ((env * torch.polar(torch.ones_like(phase), phase)).sum(-1) / d).unsqueeze(0)
    return evaluate


@pytest.mark.parametrize("d", [32, 33])
def test_central_slice_and_volume_match_projection_and_density(d):
    # Projection-slice theorem with the training conventions (p = R x, k -> k @ R), even and odd boxes.
    apix, sigma = 2.0, 3.0
    g = torch.Generator().manual_seed(0)
    mu, amps = torch.randn(5, 3, generator=g) * 8, torch.rand(5, generator=g) + 0.5
    evaluate = gaussian_fourier(mu, amps, sigma, d, apix)
    vol = volume_from_fourier(evaluate, d, apix, d, apix)
    ref = gaussian_density(mu, amps, sigma, d, apix) * apix**3
    assert float((vol - ref).norm() / ref.norm()) < 1e-3
    rot = torch.as_tensor(random_rotations(3, np.random.default_rng(1)), dtype=torch.float32)
    images = project_gaussians(mu, amps, torch.full((5,), sigma), rot, d, apix, norm="mass") * apix**2
    cs = CentralSlice(d)
    observed = cs.gather(fft2_center(images)) / d
    predicted = cs.assemble(torch.cat([evaluate(k[None]) for k in cs.rotate(rot)]))
    assert float((observed - predicted).abs().norm() / observed.abs().norm()) < 1e-4
    # A finer, larger output grid of the same object (sample-volumes --box/--apix) keeps mass per Å^3.
    fine = volume_from_fourier(evaluate, d, apix, 2 * d, apix / 2)
    ref_fine = gaussian_density(mu, amps, sigma, 2 * d, apix / 2) * (apix / 2) ** 3
    assert float((fine - ref_fine).norm() / ref_fine.norm()) < 1e-3


def test_volume_network_is_hermitian():
    net = VolumeDecoder(16, 2, hidden=16, layers=1, z_mean=torch.zeros(2), z_scale=1.0)
    k = torch.rand(1, 50, 3) - 0.5
    z = torch.randn(1, 2)
    torch.testing.assert_close(net(-k, z), net(k, z).conj())
    assert float(net(torch.zeros(1, 1, 3), z).imag.detach().abs()) == 0


def test_fsc_curve_resolution_and_auc(tmp_path):
    rng = np.random.default_rng(0)
    d, apix = 32, 2.0
    a = rng.standard_normal((d, d, d))
    same = fsc(a, a, apix)
    assert np.allclose(same.fsc, 1) and same.auc == pytest.approx(1.0) and same.resolution(0.5) == 2 * apix
    other = fsc(a, rng.standard_normal((d, d, d)), apix)
    assert abs(other.fsc).max() < 0.3 and other.auc < 0.2
    # Shared low frequencies only (shells < 8): the curve falls at shell 8 = 8 / (32 x 2 Å) = 1/8 Å^-1.
    n = np.fft.fftfreq(d) * d
    r = np.sqrt(n[:, None, None] ** 2 + n[None, :, None] ** 2 + n[None, None, :] ** 2)
    low = np.fft.ifftn(np.fft.fftn(a) * (r < 8)).real
    mixed = fsc(low + np.fft.ifftn(np.fft.fftn(rng.standard_normal((d, d, d))) * (r >= 8)).real, a, apix)
    assert 7.0 < mixed.resolution(0.5) < 9.0
    assert same.describe(0.143) == "above 0.143 up to Nyquist (4.00 Å)"  # never crosses: said so, not a resolution
    assert mixed.describe(0.5) == f"{mixed.resolution(0.5):.2f} Å"
    write_volume(tmp_path / "a.mrc", a, apix)
    write_volume(tmp_path / "b.mrc", a[:16, :16, :16], apix)
    with pytest.raises(InputError, match="box"):
        map_fsc(tmp_path / "a.mrc", tmp_path / "b.mrc")


@pytest.fixture(scope="module")
def homogeneous_data(tmp_path_factory):
    """300 noiseless AdK projections (residue Gaussians of 4 Å, 32 px, 4 Å/px, CTF) and the true map."""
    out = tmp_path_factory.mktemp("homogeneous")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        closed, _ = adk_states()
    spec = SimulationSpec(n_particles=300, box=32, apix=4.0, snr=None, density="residue", residue_sigma=4.0, seed=3)
    simulate([closed], spec, out, mode="discrete")
    nodes = residue_nodes(closed)
    truth = gaussian_density(torch.as_tensor(nodes.coords), torch.as_tensor(nodes.electrons, dtype=torch.float32),
                             4.0, 32, 4.0).numpy()
    return out, truth


def test_homogeneous_reconstruction_recovers_the_map(homogeneous_data, tmp_path):
    data, truth = homogeneous_data
    cfg = load_config("train-density", None, SMALL_NET + ["optim.epochs=20", "optim.eval_every=20"])
    folder = train_density(data / "particles.star", None, tmp_path / "run", cfg)
    vol, apix, origin = read_volume(folder / "vol.mrc")
    assert apix == pytest.approx(4.0) and origin == pytest.approx((-64.0, -64.0, -64.0))
    result = fsc(vol, truth, apix)
    half_nyquist = result.fsc[np.argmin(abs(result.frequency - 0.25 / apix))]
    assert half_nyquist > 0.9, result.fsc


def test_train_density_outputs_cli_and_errors(tiny_adk, tmp_path):
    runner = CliRunner()
    u = np.load(tiny_adk / "ground_truth.npz")["path_coordinate"]
    np.save(tmp_path / "z.npy", np.stack([u, u**2], 1).astype(np.float32))
    args = ["train-density", str(tiny_adk / "particles.star"), "--z", str(tmp_path / "z.npy"), "-o", str(tmp_path / "run"),
            "--epochs", "2"] + [x for s in SMALL_NET + ["analysis.kmeans=3", "analysis.pc_frames=4", "analysis.pcs=2",
                                                        "optim.refine_poses=true", "optim.pose_warmup_epochs=1"]
                                for x in ("--set", s)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    folder = sorted((tmp_path / "run").glob("epoch-*"))[-1]
    names = {p.name for p in folder.iterdir()}
    assert {"ckpt.pt", "z.npy", "z_kmeans.txt", "z_kmeans_ind.txt", "z_pca_1.txt", "z_pca_ind_2.txt", "particles_refined.star"} <= names
    assert {f"vol_kmeans_{i:03d}.mrc" for i in range(3)} | {f"vol_pca_{k}_{i:03d}.mrc" for k in (1, 2) for i in range(4)} <= names
    assert np.loadtxt(folder / "z_pca_1.txt").shape == (4, 2) and np.loadtxt(folder / "z_kmeans_ind.txt").shape == (3,)
    vol, apix, origin = read_volume(folder / "vol_kmeans_000.mrc")
    assert vol.shape == (32, 32, 32) and apix == pytest.approx(4.0) and origin == pytest.approx((-64.0,) * 3)
    assert np.isfinite(vol).all() and vol.std() > 0
    for name in ("command.txt", "environment.txt", "config.yaml", "progress.json", "metrics.csv"):
        assert (tmp_path / "run" / name).is_file()
    poses = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["poses"]
    assert poses["visits"].max() == 1 and poses["values"].abs().sum() > 0  # epoch 2 refined the poses

    r = runner.invoke(app, ["sample-volumes", str(tmp_path / "run"), "--z", str(folder / "z_pca_1.txt"), "-o",
                            str(tmp_path / "maps"), "--box", "48", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    big, big_apix, _ = read_volume(tmp_path / "maps" / "vol_003.mrc")
    assert big.shape == (48, 48, 48) and big_apix == pytest.approx(32 * 4.0 / 48)
    ref, _, _ = read_volume(tmp_path / "maps" / "vol_000.mrc")
    r = runner.invoke(app, ["fsc", str(tmp_path / "maps" / "vol_000.mrc"), str(tmp_path / "maps" / "vol_003.mrc"),
                            "--plot", str(tmp_path / "fsc.png"), "--csv", str(tmp_path / "fsc.csv")])
    assert r.exit_code == 0 and "FSC-AUC" in r.output and (tmp_path / "fsc.png").stat().st_size > 0
    assert np.loadtxt(tmp_path / "fsc.csv", delimiter=",", skiprows=1).shape == (24, 3)

    np.save(tmp_path / "short.npy", np.zeros((5, 2), np.float32))
    with pytest.raises(InputError, match="has 5 latent rows but the particle file has 200"):
        train_density(tiny_adk / "particles.star", tmp_path / "short.npy", tmp_path / "bad", load_config("train-density"))
    with pytest.raises(CryodynaError, match="latent file not found"):
        train_density(tiny_adk / "particles.star", tmp_path / "missing.npy", tmp_path / "bad", load_config("train-density"))
