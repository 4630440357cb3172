"""Real-space sampling grids: pixel ``n`` sits at ``(n - D//2) * apix`` Å, so the origin (0 Å) is
pixel ``D//2`` for odd and even ``D`` — the same pixel as the DC term of the centred DFT."""

from __future__ import annotations

import torch


def grid_1d(d: int, apix: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates (D,) in Å."""
    return (torch.arange(d, device=device, dtype=dtype) - d // 2) * apix


def radius_grid(d: int, device=None) -> torch.Tensor:
    """Distance of each pixel from the centre pixel ``D//2`` in units of ``D/2`` (so 1 = the edge
    midpoint), shape (D, D)."""
    n = (torch.arange(d, device=device, dtype=torch.float32) - d // 2) / (d / 2)
    y, x = torch.meshgrid(n, n, indexing="ij")
    return torch.sqrt(x * x + y * y)


def voxel_points(d: int, apix: float, device=None) -> torch.Tensor:
    """Centres (D^3, 3) Å (x, y, z) of the voxels of a (D, D, D) box indexed ``[z, y, x]``."""
    g = grid_1d(d, apix, device=device)
    z, y, x = torch.meshgrid(g, g, g, indexing="ij")
    return torch.stack([x, y, z], -1).reshape(-1, 3)
