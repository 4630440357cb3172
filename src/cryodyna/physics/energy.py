"""MARTINI force-field energies in torch, with GROMACS's functional forms (the 1/2 factors included).

All functions take coordinates ``x`` (B, N, 3) in Å and return the energy of every tuple (B, P) in
kJ/mol; parameters are per tuple (P,) in Å, rad and kJ/mol (see :class:`cryodyna.io.itp.Topology`).
They are differentiable and work in float32 or float64 (gradients are checked with ``gradcheck``).
"""

from __future__ import annotations

import math

import torch

from cryodyna.physics.indexing import gather_nodes

KT_300K = 2.494339  # kJ/mol: k_B T at 300 K, the unit of the training priors
EPS = 1e-12


def _distances(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    d = gather_nodes(x, pairs[:, 1]) - gather_nodes(x, pairs[:, 0])
    return torch.sqrt((d * d).sum(-1) + EPS).t()  # (B, P)


def bond_energy(x: torch.Tensor, pairs: torch.Tensor, b0: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Harmonic bond (GROMACS type 1): ``k/2 (r - b0)^2``."""
    return 0.5 * k * (_distances(x, pairs) - b0) ** 2


def cos_angle(x: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
    """Cosine of the angle at the middle bead, (B, A), kept inside (-1, 1)."""
    a = gather_nodes(x, triples[:, 0]) - gather_nodes(x, triples[:, 1])
    b = gather_nodes(x, triples[:, 2]) - gather_nodes(x, triples[:, 1])
    cos = ((a * b).sum(-1) / torch.sqrt((a * a).sum(-1) * (b * b).sum(-1) + EPS)).t()  # (B, A)
    return cos.clamp(-1 + 1e-6, 1 - 1e-6)


def angle_energy(x: torch.Tensor, triples: torch.Tensor, func: torch.Tensor, theta0: torch.Tensor,
                 k: torch.Tensor) -> torch.Tensor:
    """Angles: type 1 ``k/2 (theta - theta0)^2``; type 2 (cosine-harmonic) ``k/2 (cos theta - cos theta0)^2``;
    type 10 (restricted bending) ``k/2 (cos theta - cos theta0)^2 / sin^2 theta``."""
    cos = cos_angle(x, triples)
    dcos2 = (cos - torch.cos(theta0)) ** 2
    harmonic = (torch.acos(cos) - theta0) ** 2
    restricted = dcos2 / (1 - cos * cos)
    return 0.5 * k * torch.where(func == 1, harmonic, torch.where(func == 10, restricted, dcos2))


def dihedral_angle(x: torch.Tensor, quads: torch.Tensor) -> torch.Tensor:
    """Dihedral angle (B, D) in (-pi, pi] of beads i-j-k-l (IUPAC sign convention, as GROMACS)."""
    b1 = gather_nodes(x, quads[:, 1]) - gather_nodes(x, quads[:, 0])
    b2 = gather_nodes(x, quads[:, 2]) - gather_nodes(x, quads[:, 1])
    b3 = gather_nodes(x, quads[:, 3]) - gather_nodes(x, quads[:, 2])
    n1 = torch.cross(b1, b2, dim=-1)
    n2 = torch.cross(b2, b3, dim=-1)
    y = torch.sqrt((b2 * b2).sum(-1) + EPS) * (b1 * n2).sum(-1)
    return torch.atan2(y, (n1 * n2).sum(-1)).t()  # (B, D)


def proper_energy(x: torch.Tensor, quads: torch.Tensor, phi0: torch.Tensor, k: torch.Tensor,
                  multiplicity: torch.Tensor) -> torch.Tensor:
    """Proper dihedral (types 1 and 9, one row per term): ``k (1 + cos(n phi - phi0))``."""
    return k * (1 + torch.cos(multiplicity * dihedral_angle(x, quads) - phi0))


def improper_energy(x: torch.Tensor, quads: torch.Tensor, xi0: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Harmonic improper (type 2): ``k/2 (xi - xi0)^2`` with the difference wrapped to (-pi, pi]."""
    d = dihedral_angle(x, quads) - xi0
    d = torch.remainder(d + math.pi, 2 * math.pi) - math.pi
    return 0.5 * k * d * d


def _lj_or_morse(r: torch.Tensor, sigma: torch.Tensor, epsilon: torch.Tensor, form: str, morse_a: float) -> torch.Tensor:
    """Unshifted ``lj`` or ``morse`` energy at distances ``r`` (broadcast with sigma, epsilon)."""
    if form == "morse":
        return epsilon * ((1 - torch.exp(-morse_a * (r - 2 ** (1 / 6) * sigma))) ** 2 - 1)
    s6 = (sigma / r) ** 6
    return 4 * epsilon * (s6 * s6 - s6)


def pair_energy(x: torch.Tensor, pairs: torch.Tensor, sigma: torch.Tensor, epsilon: torch.Tensor,
                form: str = "wca", morse_a: float = 1.0, cutoff: float | None = None) -> torch.Tensor:
    """Non-bonded pair energy.

    ``lj``: ``4 eps ((s/r)^12 - (s/r)^6)``; ``wca``: the repulsive part, LJ + eps for
    ``r < 2^(1/6) s`` and 0 beyond; ``morse``: ``eps ((1 - exp(-a (r - r0)))^2 - 1)`` with
    ``r0 = 2^(1/6) s`` (same minimum as LJ), ``a`` in 1/Å.  With a ``cutoff`` (Å), ``lj`` and
    ``morse`` are cut there with GROMACS's potential shift (``E(r) - E(cutoff)`` inside, 0
    beyond), so a pair's energy does not depend on which other pairs are listed.  Distances below
    0.3 s are clamped so that overlapping beads give a large but finite energy.
    """
    if form not in ("lj", "wca", "morse"):
        raise ValueError(f"unknown non-bonded form {form!r}; expected 'lj', 'wca' or 'morse'")
    r = torch.maximum(_distances(x, pairs), 0.3 * sigma)
    if form == "wca":
        lj = _lj_or_morse(r, sigma, epsilon, "lj", morse_a)
        return torch.where(r < 2 ** (1 / 6) * sigma, lj + epsilon, torch.zeros_like(lj))
    energy = _lj_or_morse(r, sigma, epsilon, form, morse_a)
    if cutoff is None:
        return energy
    shift = _lj_or_morse(r.new_tensor(cutoff), sigma, epsilon, form, morse_a)
    return torch.where(r < cutoff, energy - shift, torch.zeros_like(energy))
