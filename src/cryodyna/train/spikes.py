"""A cap on gradient norms far above the recent ones.

One batch can carry a gradient thousands of times the usual (two MARTINI beads pushed into each
other, whose Lennard-Jones repulsion grows as r^-12): a step along it throws the networks far from
where they were, and training that has learnt a motion loses it for good.  :class:`SpikeGuard`
scales such a gradient down to ``factor`` times the median norm of the last ``window`` steps; steps
below that limit are untouched, so runs without spikes train exactly as without the guard.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class SpikeGuard:
    """Gradient-norm limit from the recent steps' norms.

    factor: the limit in medians of the recent norms (0 = no limit); window: steps the median is
    taken over; warmup: steps recorded before any limit applies.
    """

    def __init__(self, factor: float, window: int = 200, warmup: int = 50):
        self.factor, self.warmup = factor, warmup
        self.norms: deque[float] = deque(maxlen=window)
        self.capped_steps = 0

    def limit(self) -> float:
        """The largest gradient norm the next step may take (``inf`` while warming up or off)."""
        if self.factor <= 0 or len(self.norms) < self.warmup:
            return math.inf
        return self.factor * float(np.median(self.norms))

    def record(self, norm: float, limit: float) -> None:
        """Remember a finite step's gradient norm (before capping) and count it when it was capped."""
        if math.isfinite(norm):
            self.norms.append(norm)
            self.capped_steps += norm > limit

    def state_dict(self) -> dict:
        return {"norms": list(self.norms), "capped_steps": self.capped_steps}

    def load_state_dict(self, state: dict) -> None:
        self.norms.clear()
        self.norms.extend(state["norms"])
        self.capped_steps = state["capped_steps"]
