import pickle

import numpy as np
import pytest
import torch

from cryodyna.imaging.ctf import CTFParams, compute_ctf
from conftest import fixture_file


def cryodrgn_compute_ctf(freqs, dfu, dfv, dfang_deg, volt_kv, cs_mm, w, phase_deg=0.0, bfactor=None):
    """cryoDRGN's compute_ctf restated from its published equations (numpy)."""
    volt = volt_kv * 1000
    cs = cs_mm * 10**7
    dfang = dfang_deg * np.pi / 180
    phase = phase_deg * np.pi / 180
    lam = 12.2639 / np.sqrt(volt + 0.97845e-6 * volt**2)
    x, y = freqs[..., 0], freqs[..., 1]
    ang = np.arctan2(y, x)
    s2 = x**2 + y**2
    df = 0.5 * (dfu + dfv + (dfu - dfv) * np.cos(2 * (ang - dfang)))
    gamma = 2 * np.pi * (-0.5 * df * lam * s2 + 0.25 * cs * lam**3 * s2**2) - phase
    ctf = np.sqrt(1 - w**2) * np.sin(gamma) - w * np.cos(gamma)
    if bfactor is not None:
        ctf *= np.exp(-bfactor / 4 * s2)
    return ctf


def params(dfu, dfv, ang_deg, kv, cs, w, phase_deg=0.0, bfactor=None):
    t = lambda v: torch.tensor([float(v)], dtype=torch.float64)  # noqa: E731
    return CTFParams(t(dfu), t(dfv), t(np.deg2rad(ang_deg)), t(kv), t(cs), t(w), t(np.deg2rad(phase_deg)),
                     None if bfactor is None else t(bfactor))


@pytest.mark.parametrize("d,apix", [(64, 1.2), (96, 2.0)])
def test_matches_cryodrgn_with_opposite_sign(d, apix):
    # cryoDRGN's even-box frequency grid: arange(-D/2, D/2) / (D apix), x along columns.
    n = np.arange(-d / 2, d / 2) / (d * apix)
    x, y = np.meshgrid(n, n)
    freqs = np.stack([x, y], -1)
    for dfu, dfv, ang, kv, cs, w, ph, b in [(15000, 14500, 30, 300, 2.7, 0.1, 0, None),
                                           (22000, 20000, -60, 200, 2.0, 0.07, 45, 80.0)]:
        ours = compute_ctf(params(dfu, dfv, ang, kv, cs, w, ph, b), d, apix)[0].numpy()
        ref = -cryodrgn_compute_ctf(freqs, dfu, dfv, ang, kv, cs, w, ph, b)
        np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_dc_equals_amplitude_contrast_and_first_lobe_positive():
    h = compute_ctf(params(15000, 15000, 0, 300, 2.7, 0.1), 64, 1.0)[0]
    assert h[32, 32].item() == pytest.approx(0.1, abs=1e-6)
    assert h[32, 34].item() > 0.1  # low frequency: contrast grows before the first zero


def first_zero_radius(profile):
    i = int(np.flatnonzero(np.diff(np.sign(profile)) != 0)[0])
    return i + profile[i] / (profile[i] - profile[i + 1])  # linear interpolation of the crossing


def test_astigmatism_direction():
    # dfU > dfV with the angle at 30 deg from the x (column) axis towards y (rows): Thon rings are
    # densest (first zero closest to the centre) along 30 deg, sparsest along 120 deg.
    d, apix = 256, 4.0
    h = compute_ctf(params(30000, 10000, 30, 300, 2.7, 0.1), d, apix)[0].numpy()
    r = np.arange(1, d // 2 - 1)
    def along(theta_deg):
        t = np.deg2rad(theta_deg)
        cols = np.rint(d // 2 + r * np.cos(t)).astype(int)
        rows = np.rint(d // 2 + r * np.sin(t)).astype(int)
        return h[rows, cols]
    radii = np.array([first_zero_radius(along(a)) for a in range(0, 180)])
    assert abs(int(np.argmin(radii)) - 30) <= 3
    assert abs(int(np.argmax(radii)) - 120) <= 3
    assert first_zero_radius(along(30)) == pytest.approx(first_zero_radius(along(210)), abs=0.2)  # centrosymmetric


def test_phase_shift_and_bfactor():
    h = compute_ctf(params(15000, 15000, 0, 300, 2.7, 0.0, phase_deg=90), 32, 1.0)[0]
    assert h[16, 16].item() == pytest.approx(1.0, abs=1e-6)  # -sin(-pi/2) = 1 at DC
    plain = compute_ctf(params(15000, 15000, 0, 300, 2.7, 0.1), 32, 1.0)[0]
    damped = compute_ctf(params(15000, 15000, 0, 300, 2.7, 0.1, bfactor=200), 32, 1.0)[0]
    assert damped.abs().sum() < plain.abs().sum()
    assert damped[16, 16] == pytest.approx(plain[16, 16].item())


def test_ctf1_parameters_from_fixture():
    ctf = pickle.load(open(fixture_file("cryodrgn", "ctf1.pkl"), "rb"))
    d, apix = int(ctf[0, 0]), float(ctf[0, 1])
    n = np.arange(-d / 2, d / 2) / (d * apix)
    x, y = np.meshgrid(n, n)
    for row in ctf[:3].astype(np.float64):
        ours = compute_ctf(params(*row[2:9]), d, apix)[0].numpy()
        ref = -cryodrgn_compute_ctf(np.stack([x, y], -1), *row[2:9])
        np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_per_particle_pixel_size():
    p = CTFParams(*(torch.tensor([v, v]) for v in (15000.0, 15000.0, 0.0, 300.0, 2.7, 0.1, 0.0)))
    h = compute_ctf(p, 32, torch.tensor([1.0, 2.0]))
    single = compute_ctf(params(15000, 15000, 0, 300, 2.7, 0.1), 32, 2.0)[0]
    torch.testing.assert_close(h[1], single.float())
    assert not torch.allclose(h[0], h[1])
