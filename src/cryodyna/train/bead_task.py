"""Bead-level task: MARTINI beads as nodes, with the force-field energies (in kT at 300 K, mean per
tuple) and the bead elastic network (variance-based release) as priors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cryodyna.config.schema import BeadLossConfig
from cryodyna.io.structure import write_structure
from cryodyna.physics.energy import KT_300K
from cryodyna.physics.forcefield import MartiniForceField
from cryodyna.physics.restraints import ElasticRelease, elastic_energy, pair_distances
from cryodyna.physics.verlet import VerletList
from cryodyna.structure.graph import NodeGraph

TERM_WEIGHTS = {"bond": "bond_weight", "angle": "angle_weight", "proper": "dihedral_weight",
                "improper": "improper_weight", "nonbonded": "nonbonded_weight"}


class BeadTask:
    """What the deformation trainer needs to know about MARTINI beads: graph, priors, writer."""

    name = "cg"

    def __init__(self, graph: NodeGraph, forcefield: MartiniForceField, loss: BeadLossConfig, device="cpu"):
        self.graph, self.cfg = graph, loss
        self.forcefield = forcefield.to(device)
        t = graph.tensors(device)
        self.elastic = t["elastic"]
        self.elastic_release = ElasticRelease(t["elastic_group"], loss.elastic_keep_ratio)
        self.elastic_ref = pair_distances(t["coords"].unsqueeze(0), self.elastic)[0]
        self.protein_nucleic = t["protein_nucleic"]
        self.protein_nucleic_ref = pair_distances(t["coords"].unsqueeze(0), self.protein_nucleic)[0]
        one_group = torch.zeros(len(self.protein_nucleic), dtype=torch.long, device=self.protein_nucleic.device)
        self.protein_nucleic_release = ElasticRelease(one_group, loss.protein_nucleic_keep_ratio)
        # the non-bonded sum is divided by the reference's pair count, not by the length of the
        # batch's neighbour list, so that a structure's prior does not depend on its batch
        self.pair_norm = max(1, len(self.forcefield.neighbours(t["coords"].unsqueeze(0))))
        self.verlet = VerletList(graph.n_nodes, self.forcefield.cutoff, self.forcefield.excluded, loss.neighbour_skin,
                                 loss.neighbour_every)

    def prepare(self, x: torch.Tensor, step: int) -> None:
        """Before training step ``step``: rebuild the non-bonded neighbour list from recent structures
        ``x`` (B, N, 3) when it is due (on the host, outside the step; see :class:`VerletList`)."""
        if self.verlet.due(step):
            self.verlet.refresh(x, step)

    def priors(self, x: torch.Tensor, gather=None) -> dict[str, tuple[float, torch.Tensor]]:
        """Weighted prior terms for bead coordinates (B, N, 3): name -> (weight, value).  Energies
        are in kT per tuple: bonded terms averaged over their tuples, the non-bonded sum over the
        reference's neighbour-pair count (pairs from the neighbour list of :meth:`prepare`); the elastic
        and protein-nucleotide terms are in Å^2 as at residue level."""
        x = x.float()
        c = self.cfg
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if len(self.elastic):
            terms["elastic"] = (c.elastic_weight, elastic_energy(x, self.elastic, self.elastic_ref, self.elastic_release, gather))
        if len(self.protein_nucleic):
            terms["protein_nucleic"] = (c.protein_nucleic_weight, elastic_energy(
                x, self.protein_nucleic, self.protein_nucleic_ref, self.protein_nucleic_release, gather))
        for name, energy in self.forcefield.terms(x, self.verlet.pairs).items():
            if name == "nonbonded":
                terms[name] = (c.nonbonded_weight, (energy * self.verlet.weight).sum(1).mean() / (self.pair_norm * KT_300K))
            elif energy.numel():
                terms[name] = (getattr(c, TERM_WEIGHTS[name]), energy.mean() / KT_300K)
        return terms

    def write_models(self, path: Path, coords: np.ndarray, bfactors: np.ndarray | None = None) -> None:
        """Write bead models (K, N, 3) as a multi-model PDB/mmCIF with MARTINI bead names."""
        write_structure(path, self.graph.template, coords, bfactors)
