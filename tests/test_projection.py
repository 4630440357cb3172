import numpy as np
import pytest
import torch

from cryodyna.imaging.density import gaussian_density
from cryodyna.imaging.projection import project_gaussians
from cryodyna.imaging.rotations import random_rotations
from cryodyna.io.angles import euler_relion_to_matrix


def as_t(x):
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


@pytest.mark.parametrize("d", [32, 33])
def test_matches_brute_force_volume_summed_along_z(d):
    rng = np.random.default_rng(0)
    apix = 1.0
    coords = rng.uniform(-6, 6, size=(5, 3))
    amps = rng.uniform(1, 3, size=5)
    sigmas = rng.uniform(1.5, 2.5, size=5)
    r = euler_relion_to_matrix(*np.deg2rad([[40.0], [70.0], [-20.0]]))
    posed = coords @ r[0].T
    vol = sum(gaussian_density(as_t(posed[i : i + 1]), as_t(amps[i : i + 1]), float(sigmas[i]), d, apix) for i in range(5))
    brute = vol.sum(0) * apix  # line integral along z
    proj = project_gaussians(as_t(coords)[None], as_t(amps), as_t(sigmas), as_t(r), d, apix, norm="mass")[0]
    torch.testing.assert_close(proj, brute, rtol=1e-4, atol=1e-4 * brute.max().item())


@pytest.mark.parametrize("d", [32, 33])
def test_off_centre_gaussian_lands_on_expected_pixel(d):
    # RELION rot = 90 deg: p = R x = (x1, -x0, x2); x = (5, -3, 7) -> p = (-3, -5, 7).
    r = euler_relion_to_matrix(np.deg2rad([90.0]), np.zeros(1), np.zeros(1))
    apix = 1.5
    x = np.array([[5 * apix, -3 * apix, 7 * apix]])
    img = project_gaussians(as_t(x), torch.ones(1), torch.ones(1), as_t(r), d, apix)[0]
    row, col = divmod(int(torch.argmax(img)), d)
    assert (col, row) == (d // 2 - 3, d // 2 - 5)
    assert img.max().item() == pytest.approx(1.0)  # "peak" convention: amplitude = peak height


def test_mass_normalisation_and_pixel_average():
    d, apix = 48, 1.0
    x = torch.tensor([[0.3, -0.7, 2.0]])
    r = torch.eye(3)[None]
    for sigma in (2.0, 0.4):
        img = project_gaussians(x, torch.tensor([7.0]), torch.tensor([sigma]), r, d, apix, norm="mass", pixel_average=True)
        assert img.sum().item() * apix**2 == pytest.approx(7.0, rel=1e-4)
    wide_point = project_gaussians(x, torch.ones(1), torch.tensor([3.0]), r, d, apix, pixel_average=False)
    wide_avg = project_gaussians(x, torch.ones(1), torch.tensor([3.0]), r, d, apix, pixel_average=True)
    # pixel averaging lowers the peak by about (1 - apix^2 / (24 sigma^2))^2, < 1 % here
    torch.testing.assert_close(wide_avg, wide_point, atol=1e-2, rtol=0)


def test_batched_equals_per_sample_and_gradients_flow():
    rng = np.random.default_rng(1)
    coords = as_t(rng.normal(0, 5, size=(4, 10, 3))).requires_grad_(True)
    rots = as_t(random_rotations(4, rng))
    amps, sig = torch.rand(10) + 0.5, torch.full((10,), 2.0)
    batch = project_gaussians(coords, amps, sig, rots, 24, 1.2)
    for b in range(4):
        torch.testing.assert_close(batch[b], project_gaussians(coords[b], amps, sig, rots[b : b + 1], 24, 1.2)[0])
    batch.square().sum().backward()
    assert torch.isfinite(coords.grad).all() and coords.grad.abs().sum() > 0


def test_projection_stays_fp32_under_autocast():
    x = torch.randn(2, 5, 3) * 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = project_gaussians(x, torch.ones(5), torch.full((5,), 2.0), torch.eye(3).expand(2, 3, 3), 16, 1.0)
    assert img.dtype == torch.float32


def test_density_peak_position_and_mass():
    d, apix = 32, 1.0
    x = torch.tensor([[3.0, -2.0, 5.0]])  # (x, y, z)
    vol = gaussian_density(x, torch.tensor([10.0]), 1.5, d, apix)
    z, y, xx = np.unravel_index(int(torch.argmax(vol)), vol.shape)
    assert (xx, y, z) == (d // 2 + 3, d // 2 - 2, d // 2 + 5)
    assert vol.sum().item() * apix**3 == pytest.approx(10.0, rel=1e-4)


def test_volume_mrc_has_voxel_size_and_centred_origin(tmp_path):
    from cryodyna.io.mrc import read_header, read_volume, write_volume

    d, apix = 33, 1.7
    x = torch.tensor([[3.0 * apix, -2.0 * apix, 5.0 * apix]])
    vol = gaussian_density(x, torch.tensor([10.0]), 2.0, d, apix).numpy()
    write_volume(tmp_path / "v.mrc", vol, apix)
    back, voxel, origin = read_volume(tmp_path / "v.mrc")
    np.testing.assert_array_equal(back, vol)
    assert voxel == pytest.approx(apix) and origin == pytest.approx((-(d // 2) * apix,) * 3)
    # the peak voxel, placed with the header origin, sits at the model coordinate (as ChimeraX shows it)
    z, y, xx = np.unravel_index(int(np.argmax(back)), back.shape)
    np.testing.assert_allclose(np.array([xx, y, z]) * apix + np.array(origin), x[0].numpy(), atol=1e-4)
    assert read_header(tmp_path / "v.mrc").n == d


def test_images_pull_the_reference_nodes_towards_the_imaged_conformation(tiny_adk):
    """ImageModel.pull (the encoder's ``gradient`` input): for noiseless images of the open AdK in
    random poses, minus the loss gradient at the closed reference points along the closed -> open
    displacement, in the map frame whatever the pose."""
    from cryodyna.imaging.batches import CTFParams, PoseBatch
    from cryodyna.imaging.image_model import ImageModel
    from cryodyna.io.structure import read_structure
    from cryodyna.structure.nodes import residue_nodes

    closed, opened = (residue_nodes(read_structure(tiny_adk / name)) for name in ("reference.pdb", "open.pdb"))
    ref = torch.as_tensor(closed.coords, dtype=torch.float32)
    move = torch.as_tensor(opened.coords, dtype=torch.float32) - ref
    model = ImageModel(48, 2.0, torch.as_tensor(closed.electrons, dtype=torch.float32), torch.full((len(ref),), 2.0), 8.0, 2.0, 0.9375)
    n = 12
    poses = PoseBatch(torch.as_tensor(random_rotations(n, np.random.default_rng(0)), dtype=torch.float32), torch.zeros(n, 2))
    ctf = CTFParams(*torch.tensor([[15000.0, 14800.0, 0.3, 300.0, 2.7, 0.1, 0.0]], dtype=torch.float64).expand(n, -1).T)
    with torch.no_grad():
        images = model.predict((ref + move).expand(n, -1, -1), poses, ctf)
    pull = model.pull(ref.expand(n, -1, -1), images, poses, ctf)
    assert pull.shape == (n, len(ref), 3) and not pull.requires_grad
    cosine = torch.nn.functional.cosine_similarity(pull.flatten(1), move.flatten()[None], dim=1)
    assert (cosine > 0.05).all(), cosine  # one view cannot see motion along its own line of sight
    assert torch.nn.functional.cosine_similarity(pull.mean(0).flatten(), move.flatten(), dim=0) > 0.3  # views combined
    depth = torch.einsum("bnj,bj->bn", pull, poses.rotations[:, 2])  # along each view's line of sight: nothing
    assert depth.abs().max() < 1e-4 * pull.abs().max()
    still = model.pull(ref.expand(n, -1, -1), model.predict(ref.expand(n, -1, -1), poses, ctf), poses, ctf)
    assert still.abs().max() < 2e-2 * pull.abs().max()  # images of the reference itself pull nowhere (float32)
