"""Small building blocks shared by the encoders and decoders."""

from __future__ import annotations

import torch
from torch import nn

from cryodyna.chunking import row_chunks

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
        """x (B, M, C); nbr (M, K) neighbour indices; edge_attr (M, K) -> (B, M, C).  Target nodes
        are processed in chunks (:func:`row_chunks`) of the (B, m, K, H, C) edge terms."""
        b, m, _ = x.shape
        h, c = self.heads, self.dim
        k = nbr.shape[1]
        xs = self.src(x).view(b * m, h * c)  # rows (image, node): gathers run over contiguous rows
        xi = self.dst(x).view(b, m, 1, h, c)
        e = self.edge(edge_attr.unsqueeze(-1)).view(1, m, k, h, c)
        image_rows = torch.arange(b, device=x.device).unsqueeze(1) * m
        out = []
        for rows in row_chunks(m, b * k * h * c * x.element_size()):
            n = rows.stop - rows.start
            xj = xs.index_select(0, (image_rows + nbr[rows].reshape(1, -1)).reshape(-1)).view(b, n, k, h, c)  # (B, n, K, H, C)
            logits = (nn.functional.leaky_relu(xj + xi[:, rows] + e[:, rows], 0.2) * self.att).sum(-1)  # (B, n, K, H)
            alpha = torch.softmax(logits, dim=2)
            # sum over neighbours and heads as one batched matmul on the contiguous (K H, C) rows of xj
            out.append(torch.bmm(alpha.reshape(b * n, 1, -1), xj.reshape(b * n, -1, c)).view(b, n, c))
        return torch.cat(out, 1) / h + self.bias
