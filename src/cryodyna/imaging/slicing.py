"""Central sections and volumes of an implicit Fourier-space density.

By the projection-slice theorem the centred 2-D DFT of a projection under pose ``R`` (``p = R x``)
is the 3-D transform of the density on the plane ``R^T (k_x, k_y, 0)``.  Frequencies are in cycles
per pixel of the training images; a row vector ``k`` maps to ``k @ R``.

A real density has ``F(-k) = conj F(k)``, so only the canonical half of each disc (or ball) is
evaluated and the rest is filled by conjugation; for even sides the unpaired frequency ``-D/2`` is
left at zero.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from cryodyna.imaging.fft import ifft3_center


def canonical_sign(k: torch.Tensor) -> torch.Tensor:
    """+1 where ``k`` (..., 3) lies in the canonical half-space, -1 in the other half, 0 at k = 0.

    The half-space is decided by the sign of ``k_z``, then ``k_y``, then ``k_x`` (for points on the
    dividing planes)."""
    sign = torch.sign(k[..., 2])
    for axis in (1, 0):
        sign = torch.where(sign == 0, torch.sign(k[..., axis]), sign)
    return sign


class CentralSlice(nn.Module):
    """Disc of image frequencies ``|k| < radius * D/2`` px, split into its canonical half.

    half_coords (H, 3): ``(k_x, k_y, 0)`` in cycles/px of the canonical half, zero frequency first;
    order (P,): flat indices into a (D, D) centred spectrum of ``[half, mirror of half without DC]``,
    the order of every disc vector this class returns; frequencies (P, 2): the image frequencies
    (cycles/px, ``[:, 0]`` along columns) of those pixels, float64, for a
    :class:`~cryodyna.imaging.formation.FourierTransfer` on the disc.
    """

    def __init__(self, d: int, radius: float = 1.0):
        super().__init__()
        n = torch.arange(d) - d // 2
        ky, kx = torch.meshgrid(n, n, indexing="ij")
        k = torch.stack([kx, ky, torch.zeros_like(kx)], -1).reshape(-1, 3).float() / d
        inside = (kx.reshape(-1).float() ** 2 + ky.reshape(-1).float() ** 2).sqrt() < radius * d / 2
        if d % 2 == 0:  # the -D/2 row and column have no mirror partner in the grid
            inside &= (kx.reshape(-1) > -d // 2) & (ky.reshape(-1) > -d // 2)
        sign = canonical_sign(k)
        dc = torch.nonzero(sign == 0).reshape(-1)
        half = torch.cat([dc, torch.nonzero((sign > 0) & inside).reshape(-1)])
        row, col = half[1:] // d, half[1:] % d
        mirror = (2 * (d // 2) - row) % d * d + (2 * (d // 2) - col) % d
        self.register_buffer("half_coords", k[half])
        self.register_buffer("order", torch.cat([half, mirror]))
        self.register_buffer("frequencies", torch.stack([self.order % d, self.order // d], -1).double().sub(d // 2).div(d))

    def rotate(self, rotations: torch.Tensor) -> torch.Tensor:
        """Volume-frame frequencies (B, H, 3) of the canonical half-disc under poses (B, 3, 3)."""
        return torch.einsum("hi,bij->bhj", self.half_coords, rotations.float())

    def assemble(self, half_values: torch.Tensor) -> torch.Tensor:
        """Complex values on the half disc (B, H) -> the whole disc (B, P) in :attr:`order`."""
        return torch.cat([half_values, half_values[:, 1:].conj()], dim=1)

    def gather(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Values (B, D, D) of a centred spectrum at the disc pixels -> (B, P)."""
        return spectrum.flatten(-2)[..., self.order]


def volume_from_fourier(evaluate: Callable[[torch.Tensor], torch.Tensor], d_train: int, apix_train: float,
                        d_out: int, apix_out: float, radius: float = 1.0, chunk: int = 65536, device=None) -> torch.Tensor:
    """Real (D, D, D) volume, indexed ``[z, y, x]`` with the origin at voxel ``D//2``, from a Fourier
    density ``evaluate(k (1, P, 3) cycles/px) -> complex (1, P)`` (a DFT of the training box / D).

    d_train, apix_train: side (px) and pixel size (Å) of the training images; d_out, apix_out: output
    side (px) and voxel size (Å).  Frequencies beyond ``radius`` x the training Nyquist are zero.  Voxel values keep the
    units of the training volume scaled by the voxel volume (the same mass per Å^3 at any sampling).
    """
    n = torch.arange(d_out, device=device) - d_out // 2
    kz, ky, kx = torch.meshgrid(n, n, n, indexing="ij")
    index = torch.stack([kx, ky, kz], -1).reshape(-1, 3)
    k = index.float() * (apix_train / (apix_out * d_out))
    keep = (k.norm(dim=-1) < 0.5 * radius) & (canonical_sign(k) >= 0)
    if d_out % 2 == 0:  # the -D/2 planes have no mirror partner in the grid
        keep &= (index > -(d_out // 2)).all(-1)
    idx = torch.nonzero(keep).reshape(-1)
    values = torch.zeros(d_out**3, dtype=torch.complex64, device=device)
    for start in range(0, len(idx), chunk):
        sel = idx[start : start + chunk]
        values[sel] = evaluate(k[sel].unsqueeze(0))[0].to(values.dtype)
    iz, iy, ix = idx // (d_out * d_out), idx // d_out % d_out, idx % d_out
    c = d_out // 2
    mirror = ((2 * c - iz) % d_out * d_out + (2 * c - iy) % d_out) * d_out + (2 * c - ix) % d_out
    nonzero = mirror != idx
    values[mirror[nonzero]] = values[idx[nonzero]].conj()
    return ifft3_center(values.reshape(d_out, d_out, d_out) * d_train).real
