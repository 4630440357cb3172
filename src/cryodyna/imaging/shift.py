"""Translations as exact Fourier phase ramps.

``ramp_on(t, q)`` multiplies a spectrum so that image content moves by ``+t`` pixels
(``t = (tx, ty)``: +x = towards higher column, +y = towards higher row).  The origin convention of
the whole package lives in :class:`cryodyna.imaging.formation.FourierTransfer`: RELION's
``rlnOriginX/YAngst`` (and cryoSPARC's ``alignments3D/shift``) give the vector that re-centres the
particle, so the particle centre sits at ``-origin`` and the model moves its *prediction* by
``-origin`` instead of interpolating the noisy data.
"""

from __future__ import annotations

import torch


def ramp_on(shift_px: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """``exp(-2 pi i (q_x t_x + q_y t_y))`` for shifts ``t`` (B, 2) px on a grid of ``frequencies``
    (2, ...) in cycles/pixel (``[0]`` along columns): returns complex (B, ...)."""
    phase = (-2 * torch.pi) * (shift_px.float() @ frequencies.reshape(2, -1).float())
    return torch.polar(torch.ones_like(phase), phase).view(-1, *frequencies.shape[1:])
