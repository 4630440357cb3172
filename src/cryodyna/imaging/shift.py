"""Translations as exact Fourier phase ramps.

``fourier_shift(F, t)`` moves image content by ``+t`` pixels (``t = (tx, ty)``: +x = towards higher
column, +y = towards higher row).  RELION's ``rlnOriginX/YAngst`` (and cryoSPARC's
``alignments3D/shift``) give the vector that re-centres the particle: the particle centre sits at
``-origin`` in the raw image.  The model therefore shifts its *prediction* by ``-origin``
(:func:`apply_origin`) instead of interpolating the noisy data.
"""

from __future__ import annotations

import torch


def phase_ramp(shift_px: torch.Tensor, d: int) -> torch.Tensor:
    """``exp(-2 pi i (k_x t_x + k_y t_y) / D)`` on the centred grid: shift (B, 2) px -> (B, D, D)."""
    k = torch.arange(d, device=shift_px.device, dtype=torch.float32) - d // 2
    tx = shift_px[:, 0, None, None].float()
    ty = shift_px[:, 1, None, None].float()
    phase = -2 * torch.pi * (k.view(1, 1, -1) * tx + k.view(1, -1, 1) * ty) / d
    return torch.polar(torch.ones_like(phase), phase)


def fourier_shift(f_centered: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Move the content of centred spectra (B, D, D) by ``shift_px`` (B, 2) pixels (x, y)."""
    return f_centered * phase_ramp(shift_px, f_centered.shape[-1])


def apply_origin(f_centered: torch.Tensor, origin_px: torch.Tensor) -> torch.Tensor:
    """Place a centred prediction where a particle with RELION origin ``origin_px`` (B, 2) sits in
    its raw image, i.e. shift it by ``-origin``."""
    return fourier_shift(f_centered, -origin_px)
