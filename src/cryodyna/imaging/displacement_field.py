"""A smooth 3-D displacement field from the displacements of a model's nodes (Gaussian RBF).

``u(x) = sum_n g_n(x) d_n / max(sum_n g_n(x), floor)`` with ``g_n(x) = exp(-|x - c_n|^2 / 2 w^2)``:
inside the molecule (where the weights sum well above ``floor``) the field is a normalised weighted
mean of the nearby node displacements, so a rigid translation of all nodes is reproduced exactly;
beyond about two widths from the nearest node it fades to zero like a Gaussian.  Only the
``neighbours`` nearest nodes within ``3 w`` enter each point.

The field is computed on a coarse grid (spacing ``w``) and interpolated trilinearly at the voxels
that lie within ``3 w`` of a node; every other voxel has ``u = 0``.  Work per particle is
O(coarse points x neighbours + voxels near the model), linear in the model size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from cryodyna.imaging.grids import grid_1d, voxel_points

FLOOR = math.exp(-2.0)  # the weight of a single node two widths away


class DisplacementField:
    """Displacement field of a box of side ``d`` px (``apix`` Å) around nodes ``c`` (N, 3) Å.

    width: RBF width ``w`` (Å); neighbours: nodes per point.  ``voxels`` (M,) are the flat indices
    (``[z, y, x]`` order) of the voxels where the field can be non-zero, ``points`` (M, 3) Å their
    centres.
    """

    def __init__(self, nodes: np.ndarray, d: int, apix: float, width: float, neighbours: int = 32, device=None):
        if width <= 0:
            raise ValueError(f"the field width must be positive, got {width}")
        nodes = np.asarray(nodes, np.float64)
        self.n_nodes, self.device = len(nodes), torch.device(device or "cpu")
        tree = cKDTree(nodes)
        g = grid_1d(d, apix).numpy().astype(np.float64)
        self.lo, self.hi = float(g[0]), float(g[-1])
        n = max(2, int(math.ceil((self.hi - self.lo) / width)) + 1)
        self.coarse_shape = (n, n, n)
        c = np.linspace(self.lo, self.hi, n)
        cz, cy, cx = np.meshgrid(c, c, c, indexing="ij")
        coarse = np.stack([cx, cy, cz], -1).reshape(-1, 3)
        k = min(neighbours, self.n_nodes)
        dist, idx = tree.query(coarse, k=k, distance_upper_bound=3 * width)
        dist, idx = dist.reshape(len(coarse), k), idx.reshape(len(coarse), k)  # missing: dist inf, idx N
        weight = np.exp(-0.5 * (dist / width) ** 2)
        weight /= np.maximum(weight.sum(1, keepdims=True), FLOOR)
        rows, cols = np.nonzero(weight > 0)
        active, rows = np.unique(rows, return_inverse=True)  # coarse points with a node in range
        self._active = torch.as_tensor(active, dtype=torch.int64, device=self.device)
        self._weights = torch.sparse_coo_tensor(np.stack([rows, idx[active[rows], cols]]), weight[active[rows], cols],
                                                (len(active), self.n_nodes), dtype=torch.float32,
                                                check_invariants=False).coalesce().to(self.device)
        near = tree.query(voxel_points(d, apix).numpy(), k=1, distance_upper_bound=3 * width)[0] < np.inf
        self.voxels = torch.as_tensor(np.flatnonzero(near), dtype=torch.int64, device=self.device)
        self.points = voxel_points(d, apix, device=self.device)[self.voxels]
        self._grid = ((self.points - self.lo) / (self.hi - self.lo) * 2 - 1).view(1, 1, 1, -1, 3)

    def coarse(self, displacements: torch.Tensor) -> torch.Tensor:
        """Field on the coarse grid: displacements (B, N, 3) Å -> (B, 3, n, n, n) ``[z, y, x]``."""
        b = displacements.shape[0]
        values = self._weights @ displacements.float().permute(1, 0, 2).reshape(self.n_nodes, 3 * b)  # (Pa, B*3)
        u = displacements.new_zeros(b, 3, int(np.prod(self.coarse_shape)), dtype=torch.float32)
        u[:, :, self._active] = values.reshape(-1, b, 3).permute(1, 2, 0)
        return u.reshape(b, 3, *self.coarse_shape)

    def at_voxels(self, displacements: torch.Tensor) -> torch.Tensor:
        """Field (B, M, 3) Å at :attr:`points` for node displacements (B, N, 3) Å."""
        u = self.coarse(displacements)
        grid = self._grid.expand(u.shape[0], -1, -1, -1, -1)
        return F.grid_sample(u, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, :, 0, 0].transpose(1, 2)
