"""Projection of a 3-D isotropic Gaussian mixture along the beam (analytic line integral).

A Gaussian ``A exp(-|x - mu|^2 / (2 sigma^2))`` integrates along z to
``sqrt(2 pi) sigma A exp(-((x-p0)^2 + (y-p1)^2) / (2 sigma^2))`` with ``p = R mu``.  Three amplitude
conventions (``norm``):

* ``"peak"``: ``A`` is the 2-D peak height (the reference method's form, no prefactor);
* ``"mass"``: ``A`` is the integrated mass (e.g. electrons); the 2-D Gaussian carries
  ``1 / (2 pi sigma^2)`` so that ``image.sum() * apix**2 == A`` for each node: the line integral of
  the normalised 3-D density of :func:`cryodyna.imaging.density.gaussian_density`, and the right
  form when widths differ between nodes.

The sum is separable: per image two profile tensors (B, N, D) and one batched matmul, so memory is
O(B N D) and work O(B N D^2); nodes are taken in cache-sized chunks whose images are summed.
``pixel_average=True`` replaces point samples by the exact pixel average of each 1-D profile (erf
differences), which stays accurate when sigma is below a pixel.
The projection always runs in float32 (never under autocast).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from cryodyna.chunking import row_chunks
from cryodyna.imaging.grids import grid_1d

Norm = Literal["peak", "mass"]
EXP_FLOOR = -87.0  # exp(-87) ~ 1.6e-38, the smallest normal float32: below it exp() takes a slow path on CPU


def _profiles(centres: torch.Tensor, sigmas: torch.Tensor, d: int, apix: float, pixel_average: bool) -> torch.Tensor:
    """1-D Gaussian profiles ``exp(-(g - c)^2 / 2 sigma^2)`` on the pixel grid: centres (B, N),
    sigmas (N,) or (B, N) -> (B, N, D).

    With ``pixel_average`` each value is the mean of the profile over the pixel, from erf
    differences at the D + 1 pixel edges (each edge evaluated once).
    """
    inv = 1.0 / sigmas.expand_as(centres).unsqueeze(-1)
    if not pixel_average:
        t = (grid_1d(d, apix, device=centres.device).view(1, 1, -1) - centres.unsqueeze(-1)) * inv
        return torch.exp((-0.5 * t * t).clamp(min=EXP_FLOOR))
    edges = (torch.arange(d + 1, device=centres.device, dtype=torch.float32) - d // 2 - 0.5) * apix
    e = torch.erf((edges.view(1, 1, -1) - centres.unsqueeze(-1)) * (inv / math.sqrt(2.0)))
    return (e[..., 1:] - e[..., :-1]) * ((math.sqrt(math.pi / 2) / apix) / inv)


def project_gaussians(
    coords: torch.Tensor,
    amplitudes: torch.Tensor,
    sigmas: torch.Tensor,
    rotations: torch.Tensor,
    d: int,
    apix: float,
    norm: Norm = "peak",
    pixel_average: bool = False,
) -> torch.Tensor:
    """Project Gaussians posed by ``rotations``.

    Parameters
    ----------
    coords: (B, N, 3) or (N, 3) centres in Å, map frame (origin at the box centre).
    amplitudes: (N,) or (B, N).
    sigmas: (N,) or (B, N) standard deviations in Å.
    rotations: (B, 3, 3) RELION-convention pose matrices (``p = R x``).
    d, apix: image side (px) and pixel size (Å).

    Returns
    -------
    (B, D, D) float32 images indexed ``[b, row, col]`` with column = ``p0``, row = ``p1``.
    """
    device = rotations.device
    with torch.autocast(device_type=device.type, enabled=False):
        rotations = rotations.float()
        coords = coords.float()
        if coords.ndim == 2:
            coords = coords.unsqueeze(0).expand(rotations.shape[0], -1, -1)
        posed = torch.einsum("bij,bnj->bni", rotations, coords)
        sigmas = sigmas.float().to(device)
        amps = amplitudes.float().to(device).expand(posed.shape[:2])
        if norm == "mass":
            amps = amps / (2 * math.pi * sigmas.expand(posed.shape[:2]) ** 2)
        elif norm != "peak":
            raise ValueError(f"unknown norm {norm!r}; expected 'peak' or 'mass'")
        image = None
        for rows in row_chunks(posed.shape[1], posed.shape[0] * d * 4):  # (B, n, D) profiles per chunk of nodes
            s = sigmas[..., rows] if sigmas.ndim else sigmas
            px = _profiles(posed[:, rows, 0], s, d, apix, pixel_average)
            py = _profiles(posed[:, rows, 1], s, d, apix, pixel_average)
            part = torch.bmm((py * amps[:, rows].unsqueeze(-1)).transpose(1, 2), px)
            image = part if image is None else image + part
        return image
