"""Centred discrete Fourier transforms, frequency grids and Fourier cropping.

Centred means the zero frequency sits at index ``D // 2`` (odd and even ``D``), the same pixel as
the real-space origin: ``F = fftshift(fft2(ifftshift(x)))``.  No normalisation on the forward
transform; the inverse carries ``1/D^2``.
"""

from __future__ import annotations

import torch


def fft2_center(x: torch.Tensor) -> torch.Tensor:
    """Centred 2-D DFT over the last two axes: (..., D, D) real/complex -> complex."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1))), dim=(-2, -1))


def ifft2_center(f: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2_center` (complex result; take ``.real`` for images)."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(f, dim=(-2, -1))), dim=(-2, -1))


def fft3_center(x: torch.Tensor) -> torch.Tensor:
    """Centred 3-D DFT over the last three axes."""
    dims = (-3, -2, -1)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def ifft3_center(f: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft3_center` (complex result)."""
    dims = (-3, -2, -1)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(f, dim=dims), dim=dims), dim=dims)


def frequency_grid_2d(d: int, apix: torch.Tensor | float = 1.0, device=None) -> torch.Tensor:
    """Centred spatial frequencies in cycles/Å.

    Returns ``(D, D, 2)`` with ``[..., 0] = s_x`` (varies along columns) and ``[..., 1] = s_y``
    (rows), ``s = (n - D//2) / (D * apix)``.  With a per-particle ``apix`` of shape (B,) the result is
    (B, D, D, 2).
    """
    dtype = apix.dtype if isinstance(apix, torch.Tensor) and apix.is_floating_point() else torch.float32
    n = (torch.arange(d, device=device, dtype=dtype) - d // 2) / d
    sy, sx = torch.meshgrid(n, n, indexing="ij")
    grid = torch.stack([sx, sy], dim=-1)
    if isinstance(apix, torch.Tensor) and apix.ndim == 1:
        return grid / apix.to(grid)[:, None, None, None]
    return grid / apix


def rfft_frequency_grid(d: int, device=None) -> torch.Tensor:
    """Frequencies of the ``torch.fft.rfft2`` layout of a (D, D) image in cycles/pixel, float64:
    (D, D // 2 + 1, 2) with ``[..., 0]`` along columns (0 .. 1/2) and ``[..., 1]`` along rows
    (``fftfreq`` order, zero first)."""
    sy, sx = torch.meshgrid(torch.fft.fftfreq(d, dtype=torch.float64, device=device),
                            torch.fft.rfftfreq(d, dtype=torch.float64, device=device), indexing="ij")
    return torch.stack([sx, sy], dim=-1)


def fourier_crop(images: torch.Tensor, d_out: int) -> torch.Tensor:
    """Downsample real images (..., D, D) to (..., d_out, d_out) by cropping the centred spectrum.

    Intensities are rescaled so that a constant image keeps its value (mean preserving); the new
    pixel size is ``apix * D / d_out``.
    """
    d_in = images.shape[-1]
    if d_out == d_in:
        return images
    if d_out > d_in:
        raise ValueError(f"fourier_crop cannot upsample ({d_in} -> {d_out} px)")
    f = fft2_center(images)
    start = d_in // 2 - d_out // 2
    f = f[..., start : start + d_out, start : start + d_out]
    return ifft2_center(f).real * (d_out / d_in) ** 2
