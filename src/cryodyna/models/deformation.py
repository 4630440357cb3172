"""Encoder + decoder: images -> (latent z, deformed node coordinates)."""

from __future__ import annotations

import torch
from torch import nn

from cryodyna.models.decoder import BlockGraphDecoder
from cryodyna.models.encoder import ImageEncoder


class DeformationModel(nn.Module):
    """``x_b = x_ref + decoder(encoder(y_b))``: a deterministic auto-encoder (no KL term).

    ``reference`` (N, 3) Å is a buffer; images enter flattened as (B, D*D).
    """

    def __init__(self, encoder: ImageEncoder, decoder: BlockGraphDecoder, reference: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.register_buffer("reference", reference.float())

    def encode(self, images: torch.Tensor, context: bool = True) -> torch.Tensor:
        """Latents (B, z_dim)."""
        return self.encoder(images, context=context)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Deformed coordinates (B, N, 3) Å for latents (B, z_dim)."""
        return self.reference + self.decoder(z).float()

    def forward(self, images: torch.Tensor, context: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(images, context)
        return z, self.decode(z)
