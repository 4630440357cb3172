"""Hierarchical block-graph decoder: latent z -> per-node displacements (B, N, 3) in Å.

Per round: node features plus the offset to their block centroid are mixed (MLP), pooled into
secondary-structure blocks (mean), exchanged between blocks by GATv2 attention on the block kNN
graph, and fused back into the nodes through a sigmoid gate on the own block and gated messages
from linked blocks.  Geometric inputs are divided by ``length_scale`` (10 Å) so they are O(1).  The
output layer is zero-initialised: an untrained decoder returns the reference exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from cryodyna.chunking import row_chunks
from cryodyna.models.layers import DenseGATv2, two_layer


class FusionRound(nn.Module):
    """One node -> block -> node round on dense (B, N, C) features."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.node = two_layer(dim + 3, dim)
        self.gat = DenseGATv2(dim, heads)
        self.gate = two_layer(2 * dim + 3, dim)
        # message MLP on [u_i, m_t, v_ti]: its first (linear) layer is applied to each part before
        # the gather, so the (B, N, L, 2C+3) concatenation is never formed
        self.msg_node = nn.Linear(dim, dim)
        self.msg_block = nn.Linear(dim, dim, bias=False)
        self.msg_vec = nn.Linear(3, dim, bias=False)
        self.msg_out = nn.Sequential(nn.ELU(), nn.Linear(dim, dim))
        self.out = two_layer(dim, dim)

    def forward(self, h: torch.Tensor, g: dict[str, torch.Tensor]) -> torch.Tensor:
        """h (N, B, C) node-major features -> (N, B, C).  Gathers and scatters run over the leading
        (node / block / pair) axis, where each row is one contiguous (B, C) slab."""
        offset = g["offset"].transpose(0, 1).expand(-1, h.shape[1], -1)
        u = self.node(torch.cat([h, offset], -1))
        m = torch.zeros(g["counts"].shape[0], *u.shape[1:], dtype=u.dtype, device=u.device)
        m = m.index_add_(0, g["block"], u) / g["counts"].to(u.dtype)[:, None, None]
        m = self.gat(m.transpose(0, 1), g["block_nbr"], g["block_dist"]).transpose(0, 1).contiguous()  # (M, B, C)
        own = m.index_select(0, g["block"])
        gate = torch.sigmoid(self.gate(torch.cat([u, own, -offset], -1)))
        # messages on the P valid (node, linked block) pairs only, summed per node by index and
        # divided by the node's link count (the mean over its links)
        # (pair chunks: see row_chunks)
        node, block = g["pair_node"], g["pair_block"]
        mb, un, vec = self.msg_block(m), self.msg_node(u), self.msg_vec(g["pair_vec"]).unsqueeze(1)
        agg = torch.zeros_like(u)
        for rows in row_chunks(len(node), u.shape[1] * u.shape[2] * u.element_size()):
            pre = mb.index_select(0, block[rows]) + un.index_select(0, node[rows])
            msg = torch.sigmoid(self.msg_out(pre.add_(vec[rows])))  # (p, B, C)
            agg = agg.index_add_(0, node[rows], (msg * m.index_select(0, block[rows])).to(u.dtype))
        return self.out(u + gate * own + agg / g["link_count"][:, None, None])


class BlockGraphDecoder(nn.Module):
    """z (B, z_dim) -> displacements (B, N, 3) Å over a fixed :class:`NodeGraph`.

    With a ``group`` mapping (bead level) the rounds run on the groups (residues) and each node
    (bead) is decoded from its group's features, its offset from the group position and a learned
    embedding of its own (``bead_features`` values per bead), so that every bead, side chains
    included, can move in its own way with the latent instead of rigidly with its residue.
    ``displacement_scale`` (Å): the displacement of one unit of the output layer."""

    def __init__(self, graph_tensors: dict[str, torch.Tensor], z_dim: int, dim: int = 32, rounds: int = 2,
                 heads: int = 4, length_scale: float = 10.0, bead_features: int = 8, displacement_scale: float = 1.0):
        super().__init__()
        block, centroids = graph_tensors["block"], graph_tensors["centroids"]
        grouped = "group" in graph_tensors
        coords = graph_tensors["group_coords"] if grouped else graph_tensors["coords"]
        n, m = coords.shape[0], centroids.shape[0]
        self.n_nodes, self.dim, self.displacement_scale = n, dim, displacement_scale
        self.register_buffer("block", block)
        self.register_buffer("counts", torch.bincount(block, minlength=m).float())
        self.register_buffer("offset", ((centroids[block] - coords) / length_scale).unsqueeze(0))
        self.register_buffer("block_nbr", graph_tensors["block_nbr"])
        self.register_buffer("block_dist", graph_tensors["block_dist"] / length_scale)
        self.register_buffer("link_idx", graph_tensors["link_idx"])
        self.register_buffer("link_mask", graph_tensors["link_mask"])
        self.register_buffer("link_vec", (coords.unsqueeze(1) - centroids[graph_tensors["link_idx"]]) / length_scale)
        node, slot = graph_tensors["link_mask"].nonzero(as_tuple=True)  # valid links, grouped by node
        self.register_buffer("pair_node", node, persistent=False)
        self.register_buffer("pair_block", graph_tensors["link_idx"][node, slot], persistent=False)
        self.register_buffer("pair_vec", self.link_vec[node, slot], persistent=False)
        self.register_buffer("link_count", graph_tensors["link_mask"].sum(1).clamp(min=1).float(), persistent=False)
        self.expand = nn.Linear(z_dim, n * dim)
        self.rounds = nn.ModuleList(FusionRound(dim, heads) for _ in range(rounds))
        if grouped:
            self.register_buffer("group", graph_tensors["group"])
            self.register_buffer("group_offset", ((graph_tensors["coords"] - coords[graph_tensors["group"]]) / length_scale).unsqueeze(0))
            self.bead_embedding = nn.Parameter(0.1 * torch.randn(1, len(graph_tensors["group"]), bead_features))  # (1, N, F)
        width = dim + 3 + bead_features if grouped else dim
        self.head = nn.Sequential(nn.Linear(width, dim), nn.ELU(),
                                  *[layer for _ in range(2) for layer in (nn.Linear(dim, dim), nn.ELU())], nn.Linear(dim, 3))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        g = {name: getattr(self, name) for name in ("block", "counts", "offset", "block_nbr", "block_dist", "pair_node", "pair_block",
                                                    "pair_vec", "link_count")}
        b = z.shape[0]
        h = self.expand(z).view(b, self.n_nodes, self.dim).transpose(0, 1).contiguous()  # (N, B, C)
        for layer in self.rounds:
            h = layer(h, g)
        if hasattr(self, "group"):
            h = torch.cat([h.index_select(0, self.group), self.group_offset.transpose(0, 1).expand(-1, b, -1).to(h.dtype),
                           self.bead_embedding.transpose(0, 1).expand(-1, b, -1).to(h.dtype)], -1)
        return self.head(h).transpose(0, 1) * self.displacement_scale
