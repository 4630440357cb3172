"""Residue-level structural priors: bond continuity, elastic network with variance-based release,
and clashes.  Each returns a mean per pair (so its weight does not depend on the system size)."""

from __future__ import annotations

import torch


def pair_distances(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Distances (B, P) in Å between node pairs (P, 2) of coordinates (B, N, 3)."""
    return torch.linalg.vector_norm(x.index_select(1, pairs[:, 0]) - x.index_select(1, pairs[:, 1]), dim=-1)


def distance_deviation(x: torch.Tensor, pairs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Squared deviation (B, P) of pair distances from their reference values (P,), Å^2."""
    return (pair_distances(x, pairs) - reference) ** 2


def release_mask(sq_err: torch.Tensor, group: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """Variance filter of CryoSTAR/CryoDyna: within each group (chain), keep the ``keep_ratio``
    fraction of pairs whose error varies least across the batch; group -1 is always kept.

    sq_err: (B, P) squared errors (the batch may be gathered from all processes); group: (P,).
    Returns a boolean (P,) mask, computed without gradient and without Python loops over groups.
    """
    with torch.no_grad():
        p = sq_err.shape[1]
        if keep_ratio >= 1 or p == 0:
            return torch.ones(p, dtype=torch.bool, device=sq_err.device)
        var = sq_err.float().var(dim=0, unbiased=False) if sq_err.shape[0] > 1 else torch.zeros(p, device=sq_err.device)
        g = torch.where(group < 0, int(group.max().item()) + 1, group)  # inter-chain pairs: own group
        order = torch.argsort(var, stable=True)
        order = order[torch.argsort(g[order], stable=True)]  # sorted by group, then variance
        counts = torch.bincount(g, minlength=int(g.max().item()) + 1)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty(p, dtype=torch.long, device=sq_err.device)
        rank[order] = torch.arange(p, device=sq_err.device) - starts[g[order]]
        keep = rank < torch.ceil(keep_ratio * counts[g].float()).long()
        return keep | (group < 0)


def clash_penalty(x: torch.Tensor, pairs: torch.Tensor, min_distance: float) -> torch.Tensor:
    """Mean of (min_distance - d)^2 over the (batch, pair) entries closer than ``min_distance``
    (0 when none), Å^2."""
    d = pair_distances(x, pairs)
    violation = torch.relu(min_distance - d)
    n = (violation > 0).sum()
    return (violation**2).sum() / n.clamp(min=1)


def elastic_energy(x: torch.Tensor, pairs: torch.Tensor, reference: torch.Tensor, group: torch.Tensor,
                   keep_ratio: float, gather=None) -> torch.Tensor:
    """Mean squared distance deviation (Å^2) over the elastic pairs kept by :func:`release_mask`;
    ``gather`` optionally collects the (B, P) errors of all processes for the release statistics."""
    err = distance_deviation(x, pairs, reference)
    keep = release_mask(err if gather is None else gather(err.detach()), group, keep_ratio)
    return err[:, keep].mean()
