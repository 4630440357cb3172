import numpy as np
import pytest
import torch

from cryodyna.imaging.fft import fft2_center, fft3_center, fourier_crop, frequency_grid_2d, ifft2_center, ifft3_center
from cryodyna.imaging.grids import grid_1d, radius_grid


@pytest.mark.parametrize("d", [8, 9])
def test_dc_at_center_and_origin_pixel(d):
    f = fft2_center(torch.ones(d, d))
    assert torch.argmax(f.abs()).item() == (d // 2) * d + d // 2
    assert grid_1d(d, 1.5)[d // 2] == 0
    assert radius_grid(d)[d // 2, d // 2] == 0
    s = frequency_grid_2d(d, 2.0)
    assert s[d // 2, d // 2].abs().sum() == 0
    # s_x varies along columns, s_y along rows
    assert s[d // 2, d // 2 + 1, 0] == pytest.approx(1 / (d * 2.0))
    assert s[d // 2 + 1, d // 2, 1] == pytest.approx(1 / (d * 2.0))


@pytest.mark.parametrize("d", [8, 9])
def test_delta_at_origin_has_flat_real_spectrum(d):
    img = torch.zeros(d, d)
    img[d // 2, d // 2] = 1
    f = fft2_center(img)
    torch.testing.assert_close(f, torch.ones(d, d, dtype=torch.complex64))


@pytest.mark.parametrize("d", [8, 9])
def test_round_trips(d):
    x = torch.randn(3, d, d, dtype=torch.float64)
    torch.testing.assert_close(ifft2_center(fft2_center(x)).real, x)
    v = torch.randn(d, d, d, dtype=torch.float64)
    torch.testing.assert_close(ifft3_center(fft3_center(v)).real, v)


@pytest.mark.parametrize("d_in,d_out", [(32, 16), (33, 17), (32, 15)])
def test_fourier_crop_band_limited_signal(d_in, d_out):
    # A low-frequency cosine with a whole number of periods in the box survives cropping exactly.
    n_in = torch.arange(d_in, dtype=torch.float64) - d_in // 2
    n_out = torch.arange(d_out, dtype=torch.float64) - d_out // 2
    k = 2
    img = 3.0 + torch.cos(2 * np.pi * k * n_in / d_in)[None, :].repeat(d_in, 1)
    small = fourier_crop(img, d_out)
    expected = 3.0 + torch.cos(2 * np.pi * k * n_out / d_out)[None, :].repeat(d_out, 1)
    torch.testing.assert_close(small, expected)


def test_fourier_crop_refuses_upsampling():
    with pytest.raises(ValueError):
        fourier_crop(torch.zeros(8, 8), 16)
