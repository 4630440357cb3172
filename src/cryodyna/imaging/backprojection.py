"""Real-space back-projection: the adjoint of projection along the beam.

For a particle with pose ``R`` (``p = R x``), the back-projection of an image ``I`` gives every point
``x`` of the volume the value ``I(p0, p1)`` of the image at its projected position (bilinear
interpolation, zero outside the image).  Points may be displaced per particle (a deformed grid):
then ``x`` reads the pixel where ``x + u(x)`` projects, which undoes a deformation ``u`` of the
particle relative to the volume's frame.

Images are indexed ``[row, col]`` with column = ``p0`` and row = ``p1``; pixel ``n`` sits at
``(n - D//2) * apix`` Å (the real-space convention of :mod:`cryodyna.imaging.grids`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def backproject(images: torch.Tensor, rotations: torch.Tensor, points: torch.Tensor, apix: float) -> torch.Tensor:
    """Sum over particles of their images read at the projections of ``points``.

    images: (B, C, D, D) real images (C channels back-projected together); rotations (B, 3, 3);
    points: (P, 3) Å shared by all particles, or (B, P, 3) per particle (a deformed grid), in the
    volume frame (origin at voxel D//2).  Returns (C, P): ``sum_b images[b, c](R_b x_p)``.
    """
    d = images.shape[-1]
    scale = 2.0 / ((d - 1) * apix)  # Å -> grid_sample's [-1, 1] (align_corners: -1 = pixel 0)
    to_grid = (rotations[:, :2, :].to(images.dtype) * scale).transpose(1, 2)  # (B, 3, 2)
    grid = torch.matmul(points.to(images.dtype), to_grid).add_(2.0 * (d // 2) / (d - 1) - 1.0)  # (B, P, 2): x, y
    values = F.grid_sample(images, grid.unsqueeze(1), mode="bilinear", padding_mode="zeros", align_corners=True)
    return values.sum(0)[:, 0]
