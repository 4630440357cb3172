import numpy as np
import pytest
import torch

from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.imaging.filters import circular_mask, lowpass_filter
from cryodyna.imaging.loss import correlation_loss, masked_pearson
from cryodyna.imaging.projection import project_gaussians
from cryodyna.imaging.formation import ImageFormation


def unit_ctf(b: int) -> CTFParams:
    """A CTF of 1 at every frequency: no defocus, no spherical aberration, amplitude contrast 1."""
    z = torch.zeros(b, dtype=torch.float64)
    return CTFParams(z, z, z, z + 300, z, z + 1, z)


def place(img: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """Images of centred ``img`` (B, D, D) through the image model with RELION ``origins`` (B, 2) px."""
    b, d = img.shape[0], img.shape[-1]
    return ImageFormation(d, 1.0)(img, PoseBatch(torch.eye(3).expand(b, 3, 3), origins), unit_ctf(b))


@pytest.mark.parametrize("d", [16, 17])
def test_integer_shift_equals_roll(d):
    img = torch.randn(1, d, d)
    moved = place(img, -torch.tensor([[2.0, -3.0]]))  # the particle moves to -origin: +2 px along x (columns), -3 along y
    torch.testing.assert_close(moved, torch.roll(img, shifts=(-3, 2), dims=(-2, -1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("d", [32, 33])
def test_relion_origin_puts_particle_at_minus_origin_and_the_adjoint_brings_it_back(d):
    img = project_gaussians(torch.zeros(1, 3), torch.ones(1), torch.full((1,), 1.5), torch.eye(3)[None], d, 1.0)
    origin = torch.tensor([[3.0, 1.0]])  # rlnOriginX/Y in px
    placed = place(img, origin)[0]
    row, col = divmod(int(torch.argmax(placed)), d)
    assert (col, row) == (d // 2 - 3, d // 2 - 1)
    back, psf = ImageFormation(d, 1.0).adjoint(placed[None], PoseBatch(torch.eye(3)[None], origin), unit_ctf(1))
    torch.testing.assert_close(back, img, atol=1e-5, rtol=0)
    assert float(psf[0, d // 2, d // 2]) == pytest.approx(1.0) and float(psf.abs().sum()) == pytest.approx(1.0)


def test_subpixel_shift_moves_centroid():
    d = 32
    img = project_gaussians(torch.zeros(1, 3), torch.ones(1), torch.full((1,), 2.0), torch.eye(3)[None], d, 1.0)
    moved = place(img, -torch.tensor([[0.5, -1.25]]))[0]
    n = torch.arange(d, dtype=torch.float32) - d // 2
    cx = (moved.sum(0) * n).sum() / moved.sum()
    cy = (moved.sum(1) * n).sum() / moved.sum()
    assert cx.item() == pytest.approx(0.5, abs=1e-3) and cy.item() == pytest.approx(-1.25, abs=1e-3)


@pytest.mark.parametrize("d", [16, 17])
def test_circular_mask(d):
    m = circular_mask(d, 1.0)
    assert m[d // 2, d // 2] and not m[0, 0] and not m[-1, -1]
    assert m[d // 2, 1] and m[1, d // 2]
    c = d // 2
    for k in range(1, d - c):  # symmetric about the centre pixel
        assert m[c, c + k] == m[c, c - k] == m[c + k, c]


def test_lowpass_hard_and_soft():
    d, apix = 64, 2.0
    hard = lowpass_filter(d, apix, resolution=8.0)  # cut-off at D apix / 8 = 16 Fourier px
    assert hard[32, 32 + 15] == 1 and hard[32, 32 + 16] == 0
    soft = lowpass_filter(d, apix, resolution=8.0, soft_width=4)
    assert soft[32, 32 + 15] == 1 and 0 < soft[32, 32 + 18] < 1 and soft[32, 32 + 21] == 0
    profile = soft[32, 32:]
    assert (profile[1:] <= profile[:-1]).all()


def test_masked_pearson_exact():
    rng = np.random.default_rng(0)
    d = 24
    a = torch.as_tensor(rng.normal(size=(3, d, d)), dtype=torch.float64)
    b = a + torch.as_tensor(rng.normal(size=(3, d, d)), dtype=torch.float64)
    mask = circular_mask(d, 0.8)
    rho = masked_pearson(a, b, mask)
    for i in range(3):
        expected = np.corrcoef(a[i][mask].numpy(), b[i][mask].numpy())[0, 1]
        assert rho[i].item() == pytest.approx(expected, abs=1e-8)
    # affine invariance and independence from pixels outside the mask
    b2 = 5 * b + 3
    b2[:, ~mask] = 1e3
    torch.testing.assert_close(masked_pearson(a, b2, mask), rho)
    assert correlation_loss(a, a, mask).item() == pytest.approx(0.0, abs=1e-8)


def test_legacy_correlation_form():
    rng = np.random.default_rng(1)
    d = 16
    p = torch.as_tensor(rng.normal(size=(2, d, d)))
    y = torch.as_tensor(rng.normal(size=(2, d, d)))
    mask = circular_mask(d, 0.9375)
    n = mask.sum().item()
    expected = []
    for i in range(2):
        pm, ym = (p[i] * mask).flatten().numpy(), (y[i] * mask).flatten().numpy()
        expected.append(-(pm @ ym) / ((ym.std(ddof=1) + 1e-5) * (pm.std(ddof=1) + 1e-5)) / n)
    assert correlation_loss(p, y, mask, legacy=True).item() == pytest.approx(np.mean(expected), rel=1e-6)
