"""The MARTINI energy of a coarse-grained model: bonded terms from its topology and non-bonded pairs
from a neighbour list refreshed from the structure being scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cryodyna.io.itp import Topology
from cryodyna.physics.energy import angle_energy, bond_energy, improper_energy, pair_energy, proper_energy
from cryodyna.physics.nonbonded import PairParameters, neighbour_pairs

CONSTRAINT_K = 1000.0  # kJ mol^-1 Å^-2 (1e5 kJ mol^-1 nm^-2): constraints as stiff harmonic bonds
LJ_CUTOFF = 11.0  # Å, the MARTINI cut-off


class MartiniForceField(nn.Module):
    """Energies of bead coordinates (B, N, 3) Å under a topology.

    nonbonded: ``wca`` (repulsive only; default for training), ``lj`` or ``morse`` (potential-shifted
    at ``LJ_CUTOFF``); the neighbour list covers ``2^(1/6) sigma_max`` for WCA and ``LJ_CUTOFF``
    otherwise, minus the 1-2 and ``[ exclusions ]`` pairs (:meth:`neighbours`: KD-tree, O(N); or a
    :class:`~cryodyna.physics.verlet.VerletList` in training).  ``lj_table``: the MARTINI file with the pair parameters (see
    :class:`~cryodyna.physics.nonbonded.PairParameters`; None = size-based).  Pairs beyond the cut-off score 0, so the energy of a structure
    does not depend on the batch it is scored in.
    """

    def __init__(self, topology: Topology, sizes: np.ndarray, nonbonded: str = "wca", lj_table: Path | None = None):
        super().__init__()
        self.nonbonded_form = nonbonded
        t = topology

        def buf(name, value, dtype=torch.float32):
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype))

        buf("bonds", np.concatenate([t.bonds, t.constraints]), torch.int64)
        buf("bond_b0", np.concatenate([t.bond_b0, t.constraint_b0]))
        buf("bond_k", np.concatenate([t.bond_k, np.full(len(t.constraints), CONSTRAINT_K)]))
        buf("angles", t.angles, torch.int64)
        buf("angle_func", t.angle_func, torch.int64)
        buf("angle_theta0", t.angle_theta0)
        buf("angle_k", t.angle_k)
        buf("propers", t.propers, torch.int64)
        buf("proper_phi0", t.proper_phi0)
        buf("proper_k", t.proper_k)
        buf("proper_mult", t.proper_mult)
        buf("impropers", t.impropers, torch.int64)
        buf("improper_xi0", t.improper_xi0)
        buf("improper_k", t.improper_k)
        self.excluded = t.excluded_pairs()
        self.pair_parameters = PairParameters(t.types, sizes, lj_table)
        sigma_max = float(self.pair_parameters.sigma.max())
        self.cutoff = 2 ** (1 / 6) * sigma_max if nonbonded == "wca" else LJ_CUTOFF

    def neighbours(self, x: torch.Tensor) -> torch.Tensor:
        """Non-excluded bead pairs (P, 2) within the cut-off in any structure of ``x`` (B, N, 3).

        One list from the batch mean with the cut-off widened by twice the largest deviation of a
        structure from the mean (a Verlet-style skin: exact for every structure), or one list per
        structure when the batch is too spread for that to pay off."""
        frames = x.detach().float()
        mean = frames.mean(0)
        spread = float((frames - mean).norm(dim=-1).max())
        if spread < self.cutoff:
            pairs = neighbour_pairs(mean.cpu().numpy(), self.cutoff + 2 * spread, self.excluded)
        else:
            pairs = neighbour_pairs(frames.cpu().numpy(), self.cutoff, self.excluded)
        return torch.as_tensor(pairs, device=x.device)

    def terms(self, x: torch.Tensor, pairs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Energy of every tuple per term, kJ/mol: bond (bonds and constraints), angle, proper,
        improper, nonbonded; each (B, P_term).  ``pairs`` (P, 2): the non-bonded pairs to score (a
        :class:`~cryodyna.physics.verlet.VerletList`'s, or :meth:`neighbours` of ``x``); pairs beyond
        the cut-off score 0."""
        dtype = x.dtype
        out = {
            "bond": bond_energy(x, self.bonds, self.bond_b0.to(dtype), self.bond_k.to(dtype)),
            "angle": angle_energy(x, self.angles, self.angle_func, self.angle_theta0.to(dtype), self.angle_k.to(dtype)),
            "proper": proper_energy(x, self.propers, self.proper_phi0.to(dtype), self.proper_k.to(dtype), self.proper_mult.to(dtype)),
            "improper": improper_energy(x, self.impropers, self.improper_xi0.to(dtype), self.improper_k.to(dtype)),
        }
        sigma, eps = self.pair_parameters(pairs)
        out["nonbonded"] = pair_energy(x, pairs, sigma.to(dtype), eps.to(dtype), self.nonbonded_form, cutoff=self.cutoff)
        return out

    def totals(self, x: torch.Tensor) -> dict[str, float]:
        """Total energy per term (kJ/mol) of one structure (N, 3), plus ``total``."""
        with torch.no_grad():
            frames = x.unsqueeze(0)
            values = {k: float(v.sum()) for k, v in self.terms(frames, self.neighbours(frames)).items()}
        values["total"] = sum(values.values())
        return values
