"""Residue-level structural priors: bond continuity, elastic network with variance-based release,
and clashes.  Each returns a mean per pair (so its weight does not depend on the system size)."""

from __future__ import annotations

import torch

from cryodyna.physics.indexing import gather_nodes


def pair_distances(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Distances (B, P) in Å between node pairs (P, 2) of coordinates (B, N, 3)."""
    return torch.linalg.vector_norm(gather_nodes(x, pairs[:, 0]) - gather_nodes(x, pairs[:, 1]), dim=-1).t()


def distance_deviation(x: torch.Tensor, pairs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Squared deviation (B, P) of pair distances from their reference values (P,), Å^2."""
    return (pair_distances(x, pairs) - reference) ** 2


class ElasticRelease:
    """Variance filter of CryoSTAR/CryoDyna: within each group (chain), keep the ``keep_ratio``
    fraction of pairs whose error varies least across the batch; group -1 is always kept.

    The group structure is fixed at construction (group (P,) long), so a step has static shapes and
    no host synchronisation: a stable sort by variance then by group, ranks by scatter, and a (P,)
    0/1 weight; the number of kept pairs :attr:`n_kept` is known in advance.
    """

    def __init__(self, group: torch.Tensor, keep_ratio: float):
        p = len(group)
        self.keep_all = keep_ratio >= 1 or p == 0
        self.always = group < 0
        g = torch.where(self.always, int(group.max()) + 1 if p else 0, group)  # inter-chain pairs: own group
        counts = torch.bincount(g, minlength=int(g.max()) + 1 if p else 0)
        self.group, self.starts = g, torch.cumsum(counts, 0) - counts
        self.quota = torch.where(self.always, counts[g], torch.ceil(keep_ratio * counts[g].float()).long())
        self.n_kept = int(self.weights(torch.zeros(1, p, device=group.device)).sum())  # the same for every batch

    def weights(self, sq_err: torch.Tensor) -> torch.Tensor:
        """(P,) 1.0 for kept pairs and 0.0 for released ones, from squared errors (B, P) (the batch may
        be gathered from all processes); no gradient."""
        with torch.no_grad():
            if self.keep_all:
                return torch.ones(sq_err.shape[1], dtype=sq_err.dtype, device=sq_err.device)
            var = sq_err.float().var(dim=0, unbiased=False) if sq_err.shape[0] > 1 else torch.zeros_like(sq_err[0], dtype=torch.float32)
            order = torch.argsort(var, stable=True)
            order = order[torch.argsort(self.group[order], stable=True)]  # sorted by group, then variance
            rank = torch.empty_like(order).scatter_(0, order, torch.arange(len(order), device=order.device) - self.starts[self.group[order]])
            return (rank < self.quota).to(sq_err.dtype)


def clash_penalty(x: torch.Tensor, pairs: torch.Tensor, min_distance: float) -> torch.Tensor:
    """Mean of (min_distance - d)^2 over the (batch, pair) entries closer than ``min_distance``
    (0 when none), Å^2."""
    d = pair_distances(x, pairs)
    violation = torch.relu(min_distance - d)
    n = (violation > 0).sum()
    return (violation**2).sum() / n.clamp(min=1)


def elastic_energy(x: torch.Tensor, pairs: torch.Tensor, reference: torch.Tensor, release: ElasticRelease,
                   gather=None) -> torch.Tensor:
    """Mean squared distance deviation (Å^2) over the (batch, pair) entries kept by ``release``;
    ``gather`` optionally collects the (B, P) errors of all processes for the release statistics."""
    err = distance_deviation(x, pairs, reference)
    keep = release.weights(err if gather is None else gather(err.detach()))
    return (err * keep).sum() / (err.shape[0] * max(release.n_kept, 1))
