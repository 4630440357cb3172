"""Small building blocks shared by the encoders and decoders."""

from __future__ import annotations

import torch
from torch import nn


def mlp_block(dims: list[int]) -> nn.Sequential:
    """For consecutive widths (i -> o): Linear, SiLU, LayerNorm (the reference's ``MLPBlock``)."""
    layers: list[nn.Module] = []
    for i, o in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(i, o), nn.SiLU(), nn.LayerNorm(o)]
    return nn.Sequential(*layers)


def two_layer(in_dim: int, out_dim: int) -> nn.Sequential:
    """Linear, ELU, Linear."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ELU(), nn.Linear(out_dim, out_dim))


class DenseGATv2(nn.Module):
    """GATv2 attention over a fixed neighbour table (PyG ``GATv2Conv`` semantics, heads averaged,
    scalar edge attribute), on dense (B, M, C) node features.

    For target ``i`` and neighbour ``j``: ``e_ij = a_h . LeakyReLU(W_s x_j + W_t x_i + W_e d_ij)``,
    ``alpha = softmax_j(e)``, ``out_i = mean_h sum_j alpha_ij W_s x_j + b``.
    """

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.src = nn.Linear(dim, heads * dim)
        self.dst = nn.Linear(dim, heads * dim)
        self.edge = nn.Linear(1, heads * dim, bias=False)
        self.att = nn.Parameter(torch.empty(heads, dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.xavier_uniform_(self.att)

    def forward(self, x: torch.Tensor, nbr: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        """x (B, M, C); nbr (M, K) neighbour indices; edge_attr (M, K) -> (B, M, C)."""
        b, m, _ = x.shape
        h, c = self.heads, self.dim
        xs = self.src(x).view(b, m, h, c)
        xj = xs.index_select(1, nbr.reshape(-1)).view(b, m, -1, h, c)  # (B, M, K, H, C)
        xi = self.dst(x).view(b, m, 1, h, c)
        e = self.edge(edge_attr.unsqueeze(-1)).view(1, m, -1, h, c)
        logits = (nn.functional.leaky_relu(xj + xi + e, 0.2) * self.att).sum(-1)  # (B, M, K, H)
        alpha = torch.softmax(logits, dim=2)
        # sum over neighbours and heads as one batched matmul on the contiguous (K H, C) rows of xj
        out = torch.bmm(alpha.reshape(b * m, 1, -1), xj.reshape(b * m, -1, c)).view(b, m, c)
        return out / h + self.bias
