"""Translations as exact Fourier phase ramps.

``fourier_shift(F, t)`` moves image content by ``+t`` pixels (``t = (tx, ty)``: +x = towards higher
column, +y = towards higher row).  RELION's ``rlnOriginX/YAngst`` (and cryoSPARC's
``alignments3D/shift``) give the vector that re-centres the particle: the particle centre sits at
``-origin`` in the raw image.  The model therefore shifts its *prediction* by ``-origin``
(:func:`apply_origin`) instead of interpolating the noisy data.
"""

from __future__ import annotations

import torch

from cryodyna.imaging.fft import frequency_grid_2d


def ramp_on(shift_px: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """``exp(-2 pi i (q_x t_x + q_y t_y))`` for shifts ``t`` (B, 2) px on a grid of ``frequencies``
    (2, ...) in cycles/pixel (``[0]`` along columns): returns complex (B, ...)."""
    phase = (-2 * torch.pi) * (shift_px.float() @ frequencies.reshape(2, -1).float())
    return torch.polar(torch.ones_like(phase), phase).view(-1, *frequencies.shape[1:])


def phase_ramp(shift_px: torch.Tensor, d: int) -> torch.Tensor:
    """:func:`ramp_on` the centred (D, D) grid: shift (B, 2) px -> (B, D, D)."""
    return ramp_on(shift_px, frequency_grid_2d(d, 1.0, device=shift_px.device).permute(2, 0, 1))


def fourier_shift(f_centered: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Move the content of centred spectra (B, D, D) by ``shift_px`` (B, 2) pixels (x, y)."""
    return f_centered * phase_ramp(shift_px, f_centered.shape[-1])


def apply_origin(f_centered: torch.Tensor, origin_px: torch.Tensor) -> torch.Tensor:
    """Place a centred prediction where a particle with RELION origin ``origin_px`` (B, 2) sits in
    its raw image, i.e. shift it by ``-origin``."""
    return fourier_shift(f_centered, -origin_px)
