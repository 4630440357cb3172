"""Prior energies of the deformation loss: a :class:`Prior` protocol and the registry
:data:`PRIORS` that ``loss.priors`` names are looked up in.

A prior turns node coordinates (B, N, 3) Å into named, weighted 0-d terms.  Adding one: write a
class with ``prepare`` and ``terms`` and a factory decorated with ``@register("name")`` here (or
in any module imported before training), and give it a weight field in the loss section of
``config/schema.py``; then ``--set loss.priors=[...,name]`` switches it on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from cryodyna.config.schema import BeadLossConfig, LossConfig
from cryodyna.errors import CryodynaError
from cryodyna.physics.energy import KT_300K
from cryodyna.physics.forcefield import MartiniForceField
from cryodyna.physics.restraints import ElasticRelease, clash_penalty, distance_deviation, elastic_energy, pair_distances
from cryodyna.physics.verlet import VerletList
from cryodyna.structure.graph import NodeGraph

Terms = dict[str, tuple[float, torch.Tensor]]
Gather = Callable[[torch.Tensor], torch.Tensor] | None


class Prior(Protocol):
    """One prior energy (or a family of terms computed together)."""

    def prepare(self, coords: torch.Tensor, step: int) -> None:
        """Before training step ``step``, outside the compiled step: refresh host-side state (e.g.
        a neighbour list) from recent structures (B, N, 3)."""

    def terms(self, coords: torch.Tensor, gather: Gather) -> Terms:
        """name -> (weight, 0-d value) for coordinates (B, N, 3) Å; ``gather`` collects (B, P) rows
        of every process (DDP) for statistics over the global batch."""


@dataclass
class PriorContext:
    """What a prior factory may build on: the graph's tensors on the training device, the loss
    section of the config and, at bead level, the MARTINI force field."""

    graph: NodeGraph
    tensors: dict[str, torch.Tensor]
    loss: LossConfig | BeadLossConfig
    forcefield: MartiniForceField | None = None


PRIORS: dict[str, Callable[[PriorContext], Prior | None]] = {}


def register(name: str):
    """Decorator registering a factory ``PriorContext -> Prior | None`` (None: nothing to restrain
    in this graph) under ``name``."""
    def add(factory):
        PRIORS[name] = factory
        return factory
    return add


class PriorSet:
    """The priors named in the config, evaluated in that order."""

    def __init__(self, priors: list[Prior]):
        self.priors = priors

    def prepare(self, coords: torch.Tensor, step: int) -> None:
        for prior in self.priors:
            prior.prepare(coords, step)

    def __call__(self, coords: torch.Tensor, gather: Gather = None) -> Terms:
        coords = coords.float()
        terms: Terms = {}
        for prior in self.priors:
            terms.update(prior.terms(coords, gather))
        return terms


def build_priors(graph: NodeGraph, loss: LossConfig | BeadLossConfig, forcefield: MartiniForceField | None = None,
                 device="cpu") -> PriorSet:
    """The :class:`PriorSet` of ``loss.priors`` for ``graph`` on ``device``."""
    unknown = [name for name in loss.priors if name not in PRIORS]
    if unknown:
        raise CryodynaError(f"loss.priors: unknown prior {unknown[0]!r}; known: {', '.join(sorted(PRIORS))}")
    context = PriorContext(graph, graph.tensors(device), loss, None if forcefield is None else forcefield.to(device))
    built = [PRIORS[name](context) for name in loss.priors]
    return PriorSet([p for p in built if p is not None])


class _Static:
    """Priors on fixed pair lists: nothing to refresh."""

    def prepare(self, coords: torch.Tensor, step: int) -> None:
        pass


class ReferenceDistances(_Static):
    """Mean |d - d_ref| over fixed pairs (Å): chain continuity."""

    def __init__(self, name: str, weight: float, pairs: torch.Tensor, reference: torch.Tensor):
        self.name, self.weight, self.pairs = name, weight, pairs
        self.ref = pair_distances(reference.unsqueeze(0), pairs)[0]

    def terms(self, coords: torch.Tensor, gather: Gather) -> Terms:
        return {self.name: (self.weight, distance_deviation(coords, self.pairs, self.ref).mean())}


class ElasticNetwork(_Static):
    """Elastic network (Å^2) whose most variable pairs per group are released
    (:class:`ElasticRelease`, statistics over the global batch)."""

    def __init__(self, name: str, weight: float, pairs: torch.Tensor, groups: torch.Tensor, keep_ratio: float,
                 reference: torch.Tensor):
        self.name, self.weight, self.pairs = name, weight, pairs
        self.release = ElasticRelease(groups, keep_ratio)
        self.ref = pair_distances(reference.unsqueeze(0), pairs)[0]

    def terms(self, coords: torch.Tensor, gather: Gather) -> Terms:
        return {self.name: (self.weight, elastic_energy(coords, self.pairs, self.ref, self.release, gather))}


class Clash(_Static):
    """Penalty on node pairs closer than ``distance`` Å."""

    def __init__(self, weight: float, pairs: torch.Tensor, distance: float):
        self.weight, self.pairs, self.distance = weight, pairs, distance

    def terms(self, coords: torch.Tensor, gather: Gather) -> Terms:
        return {"clash": (self.weight, clash_penalty(coords, self.pairs, self.distance))}


MARTINI_WEIGHTS = {"bond": "bond_weight", "angle": "angle_weight", "proper": "dihedral_weight",
                   "improper": "improper_weight", "nonbonded": "nonbonded_weight"}


class Martini:
    """MARTINI bonded and non-bonded energies in kT at 300 K: bonded terms averaged over their
    tuples, the non-bonded sum over a Verlet neighbour list divided by the reference's
    neighbour-pair count (so a structure's prior does not depend on its batch)."""

    def __init__(self, forcefield: MartiniForceField, loss: BeadLossConfig, reference: torch.Tensor, n_nodes: int):
        self.forcefield, self.loss = forcefield, loss
        self.pair_norm = max(1, len(forcefield.neighbours(reference.unsqueeze(0))))
        self.verlet = VerletList(n_nodes, forcefield.cutoff, forcefield.excluded, loss.neighbour_skin, loss.neighbour_every)

    def prepare(self, coords: torch.Tensor, step: int) -> None:
        """Rebuild the neighbour list from ``coords`` (B, N, 3) when it is due (see :class:`VerletList`)."""
        if self.verlet.due(step):
            self.verlet.refresh(coords, step)

    def terms(self, coords: torch.Tensor, gather: Gather) -> Terms:
        out: Terms = {}
        for name, energy in self.forcefield.terms(coords, self.verlet.pairs).items():
            weight = getattr(self.loss, MARTINI_WEIGHTS[name])
            if name == "nonbonded":
                out[name] = (weight, (energy * self.verlet.weight).sum(1).mean() / (self.pair_norm * KT_300K))
            elif energy.numel():
                out[name] = (weight, energy.mean() / KT_300K)
        return out


def _pairs(c: PriorContext, name: str) -> torch.Tensor | None:
    """The graph's pair list ``name`` (P, 2), or None when it has none."""
    pairs = c.tensors.get(name)
    return pairs if pairs is not None and len(pairs) else None


@register("connect")
def _connect(c: PriorContext) -> Prior | None:
    pairs = _pairs(c, "connect")
    return None if pairs is None else ReferenceDistances("connect", c.loss.connect_weight, pairs, c.tensors["coords"])


@register("elastic")
def _elastic(c: PriorContext) -> Prior | None:
    pairs, t = _pairs(c, "elastic"), c.tensors
    if pairs is None:
        return None
    return ElasticNetwork("elastic", c.loss.elastic_weight, pairs, t["elastic_group"], c.loss.elastic_keep_ratio, t["coords"])


@register("clash")
def _clash(c: PriorContext) -> Prior | None:
    pairs = _pairs(c, "clash")
    return None if pairs is None else Clash(c.loss.clash_weight, pairs, c.loss.clash_distance)


@register("protein_nucleic")
def _protein_nucleic(c: PriorContext) -> Prior | None:
    pairs = _pairs(c, "protein_nucleic")
    if pairs is None:
        return None
    one_group = torch.zeros(len(pairs), dtype=torch.long, device=pairs.device)
    return ElasticNetwork("protein_nucleic", c.loss.protein_nucleic_weight, pairs, one_group,
                          c.loss.protein_nucleic_keep_ratio, c.tensors["coords"])


@register("martini")
def _martini(c: PriorContext) -> Prior | None:
    if c.forcefield is None:
        raise CryodynaError("loss.priors: 'martini' needs MARTINI beads (train-cg)")
    return Martini(c.forcefield, c.loss, c.tensors["coords"], c.graph.n_nodes)
