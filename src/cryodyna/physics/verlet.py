"""A Verlet neighbour list for training steps: non-bonded pairs found on the host every few steps
with a margin (skin), held on the device as a fixed-capacity padded table between refreshes, so that
the step itself has static shapes and never waits for the host.

The list is built from the structures of a recent step with the cut-off widened by ``skin``; it is
exact for any structure whose beads are each within ``skin / 2`` of one such structure.  At every
refresh the structures of the latest step are checked against the list that step used: if pairs
within the cut-off were missing, the refresh interval is halved (down to every step) and a warning
says how many.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from cryodyna.physics.nonbonded import neighbour_pairs

log = logging.getLogger("cryodyna")


class VerletList:
    """Padded non-bonded pair table of ``n`` beads for cut-off ``cutoff`` Å.

    Attributes after :meth:`refresh`: ``pairs`` (C, 2) long and ``weight`` (C,) 1.0 for listed pairs,
    0.0 for padding (a copy of a listed pair, so that padded energies are finite); the capacity C
    grows in powers of two, so the shapes change only when the list outgrows it.
    """

    def __init__(self, n: int, cutoff: float, excluded: np.ndarray, skin: float = 3.0, interval: int = 10):
        self.n, self.cutoff, self.excluded, self.skin, self.interval = n, cutoff, excluded, skin, interval
        self.pairs: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        self.listed = np.zeros(0, dtype=np.int64)  # sorted keys i * n + j of the listed pairs
        self.last_refresh: int | None = None
        self.missed_total = 0

    def due(self, step: int) -> bool:
        """Whether the list must be rebuilt before ``step``."""
        return self.last_refresh is None or step - self.last_refresh >= self.interval

    def missing(self, x: torch.Tensor) -> int:
        """Pairs within the cut-off in any structure of ``x`` (B, N, 3) that the current list lacks."""
        exact = neighbour_pairs(x.detach().float().cpu().numpy(), self.cutoff, self.excluded)
        return int((~np.isin(exact[:, 0] * self.n + exact[:, 1], self.listed, assume_unique=True)).sum())

    def refresh(self, x: torch.Tensor, step: int) -> None:
        """Check the list against the structures ``x`` (B, N, 3) of the latest step, then rebuild it from
        them with the cut-off widened by the skin, on ``x``'s device."""
        if self.pairs is not None:
            missed = self.missing(x)
            self.missed_total += missed
            if missed:
                self.interval = max(1, self.interval // 2)
                log.warning("neighbour list: %d pair(s) within %.1f Å were missing %d step(s) after the last "
                            "refresh; refreshing every %d step(s) from now", missed, self.cutoff, step - self.last_refresh, self.interval)
        found = neighbour_pairs(x.detach().float().cpu().numpy(), self.cutoff + self.skin, self.excluded)
        self.listed = found[:, 0] * self.n + found[:, 1]
        capacity = max(64, 1 << int(np.ceil(np.log2(max(len(found), 1)))))
        if len(found) == 0:  # nothing near: pad with one (far) pair, weight 0
            found = np.array([[0, self.n - 1]], dtype=np.int64)
            count = 0
        else:
            count = len(found)
        padded = np.concatenate([found, np.repeat(found[:1], capacity - len(found), axis=0)])
        weight = np.zeros(capacity, dtype=np.float32)
        weight[:count] = 1.0
        self.pairs = torch.as_tensor(padded, device=x.device)
        self.weight = torch.as_tensor(weight, device=x.device)
        self.last_refresh = step
