"""Node graphs and deformation models built from a structure and a config.  Encoders are looked
up by ``model.encoder`` in :data:`ENCODERS`: adding one is a class implementing
:class:`~cryodyna.models.encoder.Encoder` plus one entry here (and its name in the config's
``encoder`` choices)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cryodyna.config.schema import BeadModelConfig, DeformationModelConfig, TrainAtomConfig, TrainCGConfig
from cryodyna.imaging.image_model import ImageModel
from cryodyna.io.structure import write_structure
from cryodyna.models.decoder import BlockGraphDecoder
from cryodyna.models.deformation import DeformationModel
from cryodyna.models.encoder import ImageEncoder
from cryodyna.structure.graph import NodeGraph, build_bead_graph, build_residue_graph

ENCODERS: dict[str, Callable[[int, DeformationModelConfig], nn.Module]] = {
    "mlp": lambda n_pixels, m: ImageEncoder(n_pixels, m.encoder_hidden, m.z_dim, 0, m.attention_heads),
    "cross-attention": lambda n_pixels, m: ImageEncoder(n_pixels, m.encoder_hidden, m.z_dim, m.attention_layers,
                                                        m.attention_heads),
}


def residue_graph(structure, cfg: TrainAtomConfig, source=None, ss: np.ndarray | None = None) -> NodeGraph:
    """The residue graph of ``structure`` with the configured parameters (``ss``: its secondary
    structure, computed when not given)."""
    m, loss = cfg.model, cfg.loss
    return build_residue_graph(
        structure, sigma=m.gaussian_sigma, knn=m.knn, min_block_length=m.min_block_length,
        intra_chain_cutoff=loss.intra_chain_cutoff, inter_chain_cutoff=loss.inter_chain_cutoff,
        nucleic_cutoff=loss.nucleic_cutoff, clash_distance=loss.clash_distance, source=source, ss=ss,
    )


def bead_graph(structure, cg, cfg: TrainCGConfig) -> NodeGraph:
    """The bead graph of a CG model with the configured parameters."""
    m, loss = cfg.model, cfg.loss
    return build_bead_graph(structure, cg, knn=m.knn, min_block_length=m.min_block_length,
                            intra_chain_cutoff=loss.intra_chain_cutoff, inter_chain_cutoff=loss.inter_chain_cutoff,
                            nucleic_cutoff=loss.nucleic_cutoff, elastic_scope=loss.elastic_scope,
                            protein_nucleic_cutoff=loss.protein_nucleic_cutoff, sigma=m.gaussian_sigma)


def build_model(graph: NodeGraph, cfg: TrainAtomConfig | TrainCGConfig, d: int) -> DeformationModel:
    """Encoder (``ENCODERS[model.encoder]``) + block-graph decoder for ``graph`` and images of side ``d``."""
    m = cfg.model
    encoder = ENCODERS[m.encoder](3 * len(graph.coords) if m.encoder_input == "gradient" else d * d, m)
    t = graph.tensors()
    decoder = BlockGraphDecoder(t, m.z_dim, m.latent_dim, bead_features=m.bead_features if isinstance(m, BeadModelConfig) else 0,
                                displacement_scale=m.displacement_scale)
    if m.reference_init:  # a random output layer, to be trained towards zero by the init stage
        decoder.head[-1].reset_parameters()
    return DeformationModel(encoder, decoder, t["coords"], m.latent_noise)


def build_image_model(graph: NodeGraph, cfg: TrainAtomConfig | TrainCGConfig, d: int, apix: float, lowpass: float) -> ImageModel:
    """The training image model of ``graph``'s nodes for images of ``d`` px at ``apix`` Å/px,
    low-passed at ``lowpass`` Å (the data and loss settings of ``cfg``)."""
    return ImageModel(d, apix, torch.as_tensor(graph.amplitudes), torch.as_tensor(graph.sigmas), lowpass,
                      cfg.data.lowpass_soft_width, cfg.data.loss_mask_radius, cfg.loss.legacy_correlation)


def write_node_models(graph: NodeGraph, path, coords: np.ndarray, bfactors: np.ndarray | None = None) -> None:
    """Write models (K, N, 3) of the graph's nodes as a multi-model PDB/mmCIF, one atom per node
    (residue CA/C1' or MARTINI bead), with optional per-node B-factors (N,)."""
    write_structure(path, graph.template, coords, bfactors)
