"""Residue-level task: the node graph of a model and its structural priors (bond continuity,
elastic network with variance-based release, clashes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cryodyna.config.schema import LossConfig
from cryodyna.io.structure import write_structure
from cryodyna.physics.restraints import ElasticRelease, clash_penalty, distance_deviation, elastic_energy, pair_distances
from cryodyna.structure.graph import NodeGraph


class ResidueTask:
    """What the deformation trainer needs to know about the nodes: reference graph, priors, writer."""

    name = "atom"

    def __init__(self, graph: NodeGraph, loss: LossConfig, device="cpu"):
        self.graph, self.cfg = graph, loss
        t = graph.tensors(device)
        self.coords = t["coords"]
        self.connect, self.elastic, self.clash = t["connect"], t["elastic"], t["clash"]
        self.elastic_release = ElasticRelease(t["elastic_group"], loss.elastic_keep_ratio)
        ref = self.coords.unsqueeze(0)
        self.connect_ref = pair_distances(ref, self.connect)[0]
        self.elastic_ref = pair_distances(ref, self.elastic)[0]

    def prepare(self, x: torch.Tensor, step: int) -> None:
        """Nothing to refresh between steps at residue level (all pair lists are fixed)."""

    def priors(self, x: torch.Tensor, gather=None) -> dict[str, tuple[float, torch.Tensor]]:
        """Weighted prior terms for coordinates (B, N, 3): name -> (weight, value).

        ``gather`` optionally collects the (B, P) elastic errors of all processes so the release
        statistics use the global batch.
        """
        x = x.float()
        c = self.cfg
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if len(self.connect):
            terms["connect"] = (c.connect_weight, distance_deviation(x, self.connect, self.connect_ref).mean())
        if len(self.elastic):
            terms["elastic"] = (c.elastic_weight, elastic_energy(x, self.elastic, self.elastic_ref, self.elastic_release, gather))
        if len(self.clash):
            terms["clash"] = (c.clash_weight, clash_penalty(x, self.clash, c.clash_distance))
        return terms

    def write_models(self, path: Path, coords: np.ndarray, bfactors: np.ndarray | None = None) -> None:
        """Write models (K, N, 3) as a multi-model PDB/mmCIF with one atom per node; optional
        per-node B-factors (N,)."""
        write_structure(path, self.graph.template, coords, bfactors)
