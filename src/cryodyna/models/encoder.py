"""Image encoders: an MLP, optionally followed by cross-view attention over the images of a batch."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from cryodyna.models.layers import mlp_block


class Encoder(Protocol):
    """What the deformation model and the trainer need from an image encoder (an ``nn.Module``):
    ``encoder(images (B, D, D), context=bool) -> z (B, z_dim)``; ``z_dim``; ``uses_context``: its
    output depends on the other images of the batch when ``context`` is true (its context
    parameters then sit idle in context-free steps)."""

    z_dim: int
    uses_context: bool

    def __call__(self, images: torch.Tensor, context: bool = True) -> torch.Tensor: ...


class CrossViewAttention(nn.Module):
    """Multi-head attention across the images of a mini-batch (a complete graph with self-loops),
    heads averaged, with a skip projection and LayerNorm (the reference's TransformerConv layer,
    registered and trained here).

    ``context=False`` lets each image attend only to itself, so a particle can be encoded alone.
    """

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.q = nn.Linear(dim, heads * dim)
        self.k = nn.Linear(dim, heads * dim)
        self.v = nn.Linear(dim, heads * dim)
        self.skip = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: bool = True) -> torch.Tensor:
        """x (B, C) -> (B, C)."""
        b = x.shape[0]
        v = self.v(x).view(b, self.heads, self.dim)
        if context and b > 1:
            q = self.q(x).view(b, self.heads, self.dim).transpose(0, 1)  # (H, B, C)
            k = self.k(x).view(b, self.heads, self.dim).transpose(0, 1)
            att = torch.softmax(q @ k.transpose(1, 2) / self.dim**0.5, dim=-1)  # (H, B, B)
            mixed = (self.drop(att) @ v.transpose(0, 1)).mean(0)
        else:
            mixed = v.mean(1)
        return self.norm(self.skip(x) + mixed)


class ImageEncoder(nn.Module):
    """Flattened image (B, D*D) -> latent z (B, z_dim).

    MLP blocks (Linear/SiLU/LayerNorm) through ``hidden`` widths, ``attention_layers`` cross-view
    attention layers, then a linear map to ``z_dim``.  No variational sampling.
    """

    def __init__(self, n_pixels: int, hidden: list[int], z_dim: int, attention_layers: int = 0, heads: int = 4):
        super().__init__()
        self.mlp = mlp_block([n_pixels, *hidden])
        self.attention = nn.ModuleList(CrossViewAttention(hidden[-1], heads) for _ in range(attention_layers))
        self.out = nn.Linear(hidden[-1], z_dim)
        self.z_dim, self.uses_context = z_dim, attention_layers > 0

    def forward(self, images: torch.Tensor, context: bool = True) -> torch.Tensor:
        h = self.mlp(images.flatten(1))
        for layer in self.attention:
            h = layer(h, context=context)
        return self.out(h)
