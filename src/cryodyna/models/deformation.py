"""Encoder + decoder: images -> (latent z, deformed node coordinates)."""

from __future__ import annotations

import torch
from torch import nn

from cryodyna.models.decoder import BlockGraphDecoder
from cryodyna.models.encoder import Encoder


class DeformationModel(nn.Module):
    """``x_b = x_ref + decoder(encoder(y_b))``: a deterministic auto-encoder (no KL term).

    ``reference`` (N, 3) Å is a buffer; images enter flattened as (B, D*D).  ``latent_noise``: in
    training, the decoder sees ``z + latent_noise * s * eps`` (``s`` the per-dimension spread of the
    batch's latents, ``eps`` standard normal), so that nearby latents must decode to similar
    structures and single noisy images cannot be fitted by latent details (0 = off).
    """

    def __init__(self, encoder: Encoder, decoder: BlockGraphDecoder, reference: torch.Tensor,
                 latent_noise: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_noise = latent_noise
        self.register_buffer("reference", reference.float())

    def encode(self, images: torch.Tensor, context: bool = True) -> torch.Tensor:
        """Latents (B, z_dim)."""
        return self.encoder(images, context=context)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Deformed coordinates (B, N, 3) Å for latents (B, z_dim)."""
        return self.reference + self.decoder(z).float()

    def forward(self, images: torch.Tensor, context: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(images, context)
        if self.training and self.latent_noise > 0 and len(z) > 1:
            spread = z.detach().std(0, keepdim=True)
            return z, self.decode(z + self.latent_noise * spread * torch.randn_like(z))
        return z, self.decode(z)
