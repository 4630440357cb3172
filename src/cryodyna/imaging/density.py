"""3-D Gaussian density of a structure on the box grid (for maps, FSC and ``pdb2mrc``)."""

from __future__ import annotations

import math

import torch

from cryodyna.imaging.grids import grid_1d


def gaussian_density(
    coords: torch.Tensor,
    amplitudes: torch.Tensor,
    sigmas: torch.Tensor | float,
    d: int,
    apix: float,
    chunk: int = 512,
) -> torch.Tensor:
    """Sum of normalised 3-D Gaussians ``A (2 pi s^2)^(-3/2) exp(-|x - mu|^2 / 2 s^2)`` sampled at
    voxel centres.

    coords: (N, 3) Å in the map frame (x, y, z), origin at voxel ``D//2``; amplitudes: (N,) (e.g.
    electrons); sigmas: scalar or (N,) Å.  Returns a (D, D, D) float32 volume indexed ``[z, y, x]``
    in units of amplitude per Å^3.  Separable: work O(N D^3) in chunks of ``chunk`` Gaussians,
    memory O(chunk D^2).
    """
    coords = coords.float()
    amplitudes = amplitudes.float()
    sig = torch.as_tensor(sigmas, dtype=torch.float32, device=coords.device).expand(coords.shape[0])
    g = grid_1d(d, apix, device=coords.device)
    vol = torch.zeros(d, d * d, device=coords.device)
    for start in range(0, coords.shape[0], chunk):
        c, s = coords[start : start + chunk], sig[start : start + chunk]
        a = amplitudes[start : start + chunk] / (2 * math.pi * s * s) ** 1.5
        prof = torch.exp(-0.5 * ((g.view(1, 1, -1) - c.T.unsqueeze(-1)) / s.view(1, -1, 1)) ** 2)  # (3, n, D)
        gx, gy, gz = prof[0], prof[1], prof[2]
        plane = (gy * a.unsqueeze(-1)).unsqueeze(-1) * gx.unsqueeze(1)  # (n, D_y, D_x)
        vol += gz.T @ plane.reshape(plane.shape[0], -1)
    return vol.reshape(d, d, d)
