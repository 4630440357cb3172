"""Implicit volume network: a coordinate MLP giving the 3-D Fourier transform of the density at any
spatial frequency, conditioned on a latent code (cryoDRGN-style decoder).

Frequencies ``k`` are in cycles per pixel of the training images (Nyquist = 0.5), in the volume
(map) frame.  The network is only ever evaluated on the canonical half-space (first non-zero of
``(k_z, k_y, k_x)`` positive) and outputs the real and imaginary parts there; the other half follows
from ``F(-k) = conj F(k)``, so every volume it describes is exactly real.
"""

from __future__ import annotations

import torch
from torch import nn

from cryodyna.imaging.slicing import canonical_sign


class GaussianFourierFeatures(nn.Module):
    """Fixed random Fourier features ``[k, cos(B k), sin(B k)]`` with ``B`` (F, 3) drawn from
    N(0, (sigma D/2)^2) (cryoDRGN's ``gaussian`` encoding with ``feat_sigma = sigma``), saved with
    the model but never trained.  k (..., 3) cycles/px -> (..., 3 + 2F)."""

    def __init__(self, d: int, n_features: int, sigma: float, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(n_features, 3, generator=g) * sigma * d / 2)

    @property
    def out_dim(self) -> int:
        return 3 + 2 * self.frequencies.shape[0]

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        phase = k @ self.frequencies.T
        return torch.cat([k, torch.cos(phase), torch.sin(phase)], dim=-1)


class ResidualMLP(nn.Module):
    """Linear(in -> hidden) + GELU, ``layers`` residual blocks ``x + GELU(Linear(x))``, Linear(hidden -> out).
    Hidden weights N(0, 1/fan_in) as in the reference ``FCBlock``."""

    def __init__(self, in_dim: int, hidden: int, layers: int, out_dim: int):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, out_dim)
        for lin in [self.inp, *self.blocks]:
            nn.init.normal_(lin.weight, std=lin.in_features**-0.5)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.inp(x))
        for block in self.blocks:
            x = x + self.act(block(x))
        return self.out(x)


class VolumeDecoder(nn.Module):
    """Fourier coefficients of a (latent-conditioned) volume at arbitrary frequencies.

    d: side (px) of the training images (sets the feature bandwidth); z_dim: latent size (0 =
    homogeneous); z_mean, z_scale: the latents are fed as ``(z - z_mean) / z_scale`` (one scale for
    all dimensions, so the geometry of the latent space is kept).  The MLP may run under autocast;
    the features are computed in float32 and the output is returned in float32.
    """

    def __init__(self, d: int, z_dim: int, hidden: int = 1024, layers: int = 3, n_features: int | None = None,
                 sigma: float = 0.5, z_mean: torch.Tensor | None = None, z_scale: float = 1.0, seed: int = 0):
        super().__init__()
        self.d, self.z_dim = d, z_dim
        self.features = GaussianFourierFeatures(d, n_features or 3 * (d // 2), sigma, seed)
        self.mlp = ResidualMLP(self.features.out_dim + z_dim, hidden, layers, 2)
        self.register_buffer("z_mean", torch.zeros(z_dim) if z_mean is None else z_mean.float().reshape(z_dim))
        self.register_buffer("z_scale", torch.tensor(float(z_scale)))

    def forward(self, k: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """k (B, P, 3) cycles/px, z (B, z_dim) -> complex (B, P) Fourier coefficients (volume DFT / D)."""
        sign = canonical_sign(k)
        with torch.autocast(device_type=k.device.type, enabled=False):
            feats = self.features(k.float() * torch.where(sign == 0, 1.0, sign).unsqueeze(-1))
        if self.z_dim:
            if z is None:
                raise ValueError(f"this volume network needs latents of size {self.z_dim}")
            zn = ((z.float() - self.z_mean) / self.z_scale).to(feats.device)
            feats = torch.cat([feats, zn.unsqueeze(1).expand(-1, feats.shape[1], -1)], dim=-1)
        out = self.mlp(feats).float()
        return torch.complex(out[..., 0], out[..., 1] * sign)
