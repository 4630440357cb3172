"""Real-space masks and Fourier filters."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from cryodyna.imaging.grids import radius_grid, voxel_points


def circular_mask(d: int, radius: float = 1.0, device=None) -> torch.Tensor:
    """Boolean (D, D) disc centred on pixel ``D//2``; ``radius`` in units of ``D/2`` (1 touches the
    edges, as the reference's ``mask_rad``)."""
    return radius_grid(d, device=device) < radius


def default_lowpass(apix: float) -> float:
    """Low-pass resolution (Å) of the training image model when none is configured: 2.5 px, but not
    finer than 6 Å, which a model of 2 Å residue Gaussians cannot describe anyway."""
    return max(2.5 * apix, 6.0)


def lowpass_filter(d: int, apix: float, resolution: float, soft_width: float = 0.0, device=None) -> torch.Tensor:
    """Centred (D, D) low-pass weights passing frequencies below ``1/resolution`` (Å).

    ``soft_width`` (in Fourier pixels) adds a raised-cosine fall-off above the cut-off, which
    avoids the ringing of the reference's hard binary mask; 0 gives the hard mask ``|s| < 1/b``.
    """
    n = torch.arange(d, device=device, dtype=torch.float32) - d // 2
    y, x = torch.meshgrid(n, n, indexing="ij")
    r_px = torch.sqrt(x * x + y * y)  # Fourier pixels; |s| = r_px / (D apix)
    cutoff_px = d * apix / resolution
    if soft_width <= 0:
        return (r_px < cutoff_px).float()
    t = ((r_px - cutoff_px) / soft_width).clamp(0.0, 1.0)
    return 0.5 * (1 + torch.cos(torch.pi * t))


def model_mask(nodes: np.ndarray, d: int, apix: float, radius: float = 6.0, edge: float = 6.0) -> np.ndarray:
    """Soft (D, D, D) mask ``[z, y, x]`` around a model: 1 within ``radius`` Å of any node (N, 3) Å,
    a raised-cosine fall-off to 0 over the next ``edge`` Å (origin at voxel D//2)."""
    dist = cKDTree(np.asarray(nodes, np.float64)).query(voxel_points(d, apix).numpy(), distance_upper_bound=radius + edge)[0]
    t = np.clip((dist - radius) / max(edge, 1e-6), 0.0, 1.0)
    return (0.5 * (1 + np.cos(np.pi * t))).reshape(d, d, d).astype(np.float32)
