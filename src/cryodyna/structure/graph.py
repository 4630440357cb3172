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
from cryodyna.structure.pairs import clash_pairs, connect_pairs, elastic_pairs, exclude_pairs, protein_nucleic_pairs
from cryodyna.structure.secondary import secondary_structure, three_state


@dataclass
class NodeGraph:
    """Everything fixed about the nodes, as numpy arrays.

    coords (N, 3) Å reference positions; amplitudes (N,); sigmas (N,) Å; chain (N,) chain index;
    ss (N,) secondary-structure letter; block (N,) block id; centroids (M, 3) Å;
    block_nbr / block_dist (M, K) block kNN graph (self included) and centroid distances (Å);
    link_idx / link_mask (N, L) other blocks that inform each node;
    connect, elastic, clash (P, 2) node pairs; elastic_group (P,) chain index of intra-chain
    elastic pairs, -1 for pairs between chains; template: structure of one atom per node, for
    writing models; protein_nucleic (P, 2) protein-nucleotide pairs of the bead level's distance
    restraint (empty without both kinds).

    Bead level: the decoder works on residues and each node (bead) reads the features of its residue:
    group (N,) residue index of each node, group_coords (R, 3) Å residue positions (backbone bead);
    block, link_idx and link_mask are then per residue.  None at residue level (nodes = residues).
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
    group: np.ndarray | None = None
    group_coords: np.ndarray | None = None
    protein_nucleic: np.ndarray | None = None

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
            if isinstance(value, np.ndarray) and value.dtype != object:  # None fields are skipped
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
    ss: np.ndarray | None = None,
) -> NodeGraph:
    """Residue-level graph: one node per residue (CA / C1'), amplitudes = residue electrons; ``ss``:
    the three-state secondary structure per residue (default: :func:`secondary_structure`)."""
    nodes = residue_nodes(structure, source)
    coords = nodes.coords
    chain_index = {c: i for i, c in enumerate(structure.chains)}
    chain = np.array([chain_index[c] for c in structure.chain_id], dtype=np.int64)
    ss = secondary_structure(structure) if ss is None else np.asarray(ss, dtype=object)
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
    elastic_scope: str = "backbone",
    protein_nucleic_cutoff: float = 12.0,
    sigma: float = 1.75,
) -> NodeGraph:
    """Bead-level graph: one node per MARTINI bead at ``cg.coords``, amplitudes = the bead's
    heavy-atom electrons, widths = ``sigma`` Å.  The decoder hierarchy is
    blocks -> residues (at their backbone bead) -> beads; elastic pairs join backbone beads
    (``elastic_scope="backbone"``; side chains are held by the MARTINI bonded terms) or all beads
    (``"all"``), minus the bonded (1-2) pairs; protein-nucleotide bead pairs within
    ``protein_nucleic_cutoff`` Å form their own restraint.  Bonds and non-bonded repulsion come from
    the force field, so there are no connect or clash pairs."""
    coords = cg.coords
    chain_index = {c: i for i, c in enumerate(structure.chains)}
    res_chain = structure.chain_id
    chain = np.array([chain_index[c] for c in res_chain[cg.residue]], dtype=np.int64)
    residues, first_bead = cg.backbone_beads()
    group = np.searchsorted(residues, cg.residue)
    group_coords = coords[first_bead]  # the backbone bead of each residue
    ss = three_state(cg.ss)[residues]  # the DSSP classes the topology was built with
    block = assign_blocks(ss, res_chain[residues], min_block_length)
    centroids = block_centroids(group_coords, block)
    nbr, dist = knn_graph(centroids, knn)
    link_idx, link_mask = residue_block_links(group_coords, block, res_chain[residues], centroids)
    nucleic = structure.res_kind[cg.residue] == "nucleic"
    scope = np.arange(len(coords)) if elastic_scope == "all" else first_bead
    elastic = scope[elastic_pairs(coords[scope], res_chain[cg.residue][scope], nucleic[scope], intra_chain_cutoff,
                                  inter_chain_cutoff, nucleic_cutoff, np.zeros((0, 2), np.int64))]
    elastic = exclude_pairs(elastic, cg.topology.bonded_pairs(), len(coords))
    same = chain[elastic[:, 0]] == chain[elastic[:, 1]]
    none = np.zeros((0, 2), dtype=np.int64)
    return NodeGraph(
        coords=coords, amplitudes=cg.electrons, sigmas=np.full(len(coords), sigma), chain=chain, ss=ss[group.reshape(-1)],
        block=block, centroids=centroids, block_nbr=nbr, block_dist=dist, link_idx=link_idx, link_mask=link_mask,
        connect=none, elastic=elastic, elastic_group=np.where(same, chain[elastic[:, 0]], -1), clash=none,
        template=cg.template(structure), group=group.reshape(-1), group_coords=group_coords,
        protein_nucleic=protein_nucleic_pairs(coords, nucleic, protein_nucleic_cutoff, cg.topology.bonded_pairs()),
    )
