"""The node graph a deformation model works on: nodes with their Gaussians, the block hierarchy,
and the prior pair sets.  Built once from the reference; the residue level makes one node per
residue (the bead level plugs in its own nodes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryodyna.io.structure import Structure
from cryodyna.structure.blocks import assign_blocks, block_centroids, knn_graph, residue_block_links
from cryodyna.structure.martini import CGModel
from cryodyna.structure.nodes import residue_nodes
from cryodyna.structure.pairs import clash_pairs, connect_pairs, elastic_pairs
from cryodyna.structure.secondary import secondary_structure


@dataclass
class NodeGraph:
    """Everything fixed about the nodes, as numpy arrays.

    coords (N, 3) Å reference positions; amplitudes (N,); sigmas (N,) Å; chain (N,) chain index;
    ss (N,) secondary-structure letter; block (N,) block id; centroids (M, 3) Å;
    block_nbr / block_dist (M, K) block kNN graph (self included) and centroid distances (Å);
    link_idx / link_mask (N, L) other blocks that inform each node;
    connect, elastic, clash (P, 2) node pairs; elastic_group (P,) chain index of intra-chain
    elastic pairs, -1 for pairs between chains; template: structure of one atom per node, for
    writing models.
    """

    coords: np.ndarray
    amplitudes: np.ndarray
    sigmas: np.ndarray
    chain: np.ndarray
    ss: np.ndarray
    block: np.ndarray
    centroids: np.ndarray
    block_nbr: np.ndarray
    block_dist: np.ndarray
    link_idx: np.ndarray
    link_mask: np.ndarray
    connect: np.ndarray
    elastic: np.ndarray
    elastic_group: np.ndarray
    clash: np.ndarray
    template: Structure

    @property
    def n_nodes(self) -> int:
        return len(self.coords)

    @property
    def n_blocks(self) -> int:
        return len(self.centroids)

    def tensors(self, device=None) -> dict[str, torch.Tensor]:
        """The numeric arrays as torch tensors (float32 / int64 / bool)."""
        out = {}
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.dtype != object:
                t = torch.as_tensor(value)
                out[name] = (t.float() if t.is_floating_point() else t).to(device)
        return out


def build_residue_graph(
    structure: Structure,
    sigma: float = 2.0,
    knn: int = 16,
    min_block_length: int = 3,
    intra_chain_cutoff: float = 12.0,
    inter_chain_cutoff: float = 0.0,
    nucleic_cutoff: float = 15.0,
    clash_distance: float = 4.0,
    clash_search: float = 15.0,
    source=None,
) -> NodeGraph:
    """Residue-level graph: one node per residue (CA / C1'), amplitudes = residue electrons."""
    nodes = residue_nodes(structure, source)
    coords = nodes.coords
    chain_index = {c: i for i, c in enumerate(structure.chains)}
    chain = np.array([chain_index[c] for c in structure.chain_id], dtype=np.int64)
    ss = secondary_structure(structure)
    block = assign_blocks(ss, structure.chain_id, min_block_length)
    centroids = block_centroids(coords, block)
    nbr, dist = knn_graph(centroids, knn)
    link_idx, link_mask = residue_block_links(coords, block, structure.chain_id, centroids)
    connect = connect_pairs(structure.chain_id, structure.res_seq)
    nucleic = structure.res_kind == "nucleic"
    elastic = elastic_pairs(coords, structure.chain_id, nucleic, intra_chain_cutoff, inter_chain_cutoff, nucleic_cutoff, connect)
    same = chain[elastic[:, 0]] == chain[elastic[:, 1]]
    return NodeGraph(
        coords=coords, amplitudes=nodes.electrons, sigmas=np.full(len(coords), sigma), chain=chain, ss=ss,
        block=block, centroids=centroids, block_nbr=nbr, block_dist=dist, link_idx=link_idx, link_mask=link_mask,
        connect=connect, elastic=elastic, elastic_group=np.where(same, chain[elastic[:, 0]], -1),
        clash=clash_pairs(coords, clash_distance, clash_search, connect), template=nodes.template,
    )


def build_bead_graph(
    structure: Structure,
    cg: CGModel,
    knn: int = 16,
    min_block_length: int = 3,
    intra_chain_cutoff: float = 12.0,
    inter_chain_cutoff: float = 0.0,
    nucleic_cutoff: float = 15.0,
) -> NodeGraph:
    """Bead-level graph: one node per MARTINI bead at ``cg.coords``, amplitudes = the bead's
    heavy-atom electrons, widths = half its Lennard-Jones size; blocks from the residues' secondary
    structure (each bead in its residue's block); elastic pairs between beads minus the bonded
    (1-2) pairs.  Bonds and non-bonded repulsion come from the force field, so there are no
    connect or clash pairs."""
    coords = cg.coords
    chain_index = {c: i for i, c in enumerate(structure.chains)}
    res_chain = structure.chain_id
    chain = np.array([chain_index[c] for c in res_chain[cg.residue]], dtype=np.int64)
    res_block = assign_blocks(secondary_structure(structure), res_chain, min_block_length)
    block = np.unique(res_block[cg.residue], return_inverse=True)[1].reshape(-1)
    centroids = block_centroids(coords, block)
    nbr, dist = knn_graph(centroids, knn)
    link_idx, link_mask = residue_block_links(coords, block, res_chain[cg.residue], centroids)
    nucleic = structure.res_kind[cg.residue] == "nucleic"
    elastic = elastic_pairs(coords, res_chain[cg.residue], nucleic, intra_chain_cutoff, inter_chain_cutoff, nucleic_cutoff,
                            cg.topology.bonded_pairs())
    same = chain[elastic[:, 0]] == chain[elastic[:, 1]]
    none = np.zeros((0, 2), dtype=np.int64)
    return NodeGraph(
        coords=coords, amplitudes=cg.electrons, sigmas=cg.sizes / 2, chain=chain,
        ss=np.array([cg.ss[r] for r in cg.residue], dtype=object), block=block, centroids=centroids, block_nbr=nbr,
        block_dist=dist, link_idx=link_idx, link_mask=link_mask, connect=none, elastic=elastic,
        elastic_group=np.where(same, chain[elastic[:, 0]], -1), clash=none, template=cg.template(structure),
    )
