"""Conformational landscapes for the simulator: one conformation per particle.

A landscape is a *base* over a set of states plus optional *normal-mode* motions:

* base ``interpolate``: a path coordinate ``u`` in [0, 1] along the piecewise-linear path through the
  states (a trajectory of many frames gives a curved path); occupancy along the path is the
  piecewise-linear interpolation of per-state ``weights`` (uniform when none are given);
* base ``discrete``: one of the states, drawn with ``weights``;
* modes: ``K`` elastic-network (ANM) normal modes of the first state, each scaled to 1 Å RMS
  displacement per node; every atom moves with its residue's node.  Amplitudes are drawn
  independently and uniformly in [-A, A] (``mode_path="independent"``: a K-dimensional landscape,
  e.g. two independent motions) or on a half circle ``A (cos t, sin t)`` of the first two modes
  (``mode_path="arc"``: a curved one-dimensional motion).

A particle's conformation is described by its row of ``params``: column 0 is ``u`` (interpolate) or
the state index (discrete), columns 1..K the mode amplitudes in Å.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

Base = Literal["interpolate", "discrete"]
ModePath = Literal["independent", "arc"]


def anm_modes(coords: np.ndarray, n_modes: int, cutoff: float = 15.0) -> np.ndarray:
    """Lowest ``n_modes`` non-trivial anisotropic-network-model modes of nodes ``coords`` (N, 3) Å.

    Springs of equal stiffness join nodes closer than ``cutoff`` Å.  Returns (K, N, 3), each mode
    scaled to an RMS node displacement of 1 Å, with the sign fixed so that its largest component is
    positive (deterministic).
    """
    n = len(coords)
    if n_modes < 1:
        return np.zeros((0, n, 3))
    if 3 * n - 6 < n_modes:
        raise ValueError(f"{n} nodes have only {max(3 * n - 6, 0)} non-trivial normal modes, {n_modes} requested")
    pairs = np.asarray(sorted(cKDTree(coords).query_pairs(cutoff)), dtype=np.int64).reshape(-1, 2)
    d = coords[pairs[:, 1]] - coords[pairs[:, 0]]
    block = -d[:, :, None] * d[:, None, :] / (d**2).sum(1)[:, None, None]  # (P, 3, 3) off-diagonal super-elements
    hess = np.zeros((n, 3, n, 3))
    i, j = pairs[:, 0], pairs[:, 1]
    np.add.at(hess, (i, slice(None), j), block)
    np.add.at(hess, (j, slice(None), i), block)
    np.add.at(hess, (i, slice(None), i), -block)
    np.add.at(hess, (j, slice(None), j), -block)
    values, vectors = np.linalg.eigh(hess.reshape(3 * n, 3 * n))
    nontrivial = np.flatnonzero(values > 1e-6 * max(values[-1], 1e-12))[:n_modes]
    if len(nontrivial) < n_modes:
        raise ValueError(f"the elastic network of {n} nodes (cut-off {cutoff} Å) is disconnected: fewer than {n_modes} modes")
    modes = vectors[:, nontrivial].T.reshape(n_modes, n, 3) * np.sqrt(n)
    flat = modes.reshape(n_modes, -1)
    signs = np.sign(flat[np.arange(n_modes), np.abs(flat).argmax(1)])
    return modes * signs[:, None, None]


@dataclass
class Landscape:
    """Per-particle conformations of rendered points (atoms, or nodes for residue density).

    state_coords: (S, P, 3) Å points of each state; point_node: (P,) node of each point;
    node_of_state: (S, N, 3) Å node coordinates of each state; weights: (S,) occupancy (sums to 1);
    modes: (K, N, 3) node displacement per Å of amplitude; amplitude: A [Å]; mode_path: see module.
    """

    state_coords: np.ndarray
    point_node: np.ndarray
    node_of_state: np.ndarray
    base: Base
    weights: np.ndarray
    modes: np.ndarray
    amplitude: float = 0.0
    mode_path: ModePath = "independent"

    def __post_init__(self) -> None:
        s, k = len(self.state_coords), len(self.modes)
        if self.base == "interpolate" and s < 2 and k == 0:
            raise ValueError("a continuous landscape needs two or more states or at least one normal mode")
        if self.mode_path == "arc" and k < 2:
            raise ValueError("mode_path 'arc' needs at least two normal modes")
        if len(self.weights) != s or np.any(self.weights < 0) or not np.sum(self.weights) > 0:
            raise ValueError(f"need {s} non-negative state weights with a positive sum, got {list(self.weights)}")
        self.weights = np.asarray(self.weights, np.float64) / np.sum(self.weights)

    @property
    def n_modes(self) -> int:
        return len(self.modes)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Conformation parameters (n, 1 + K) drawn from the landscape."""
        s = len(self.state_coords)
        if self.base == "discrete" or s == 1:
            first = rng.choice(s, size=n, p=self.weights).astype(np.float64)
        elif np.allclose(self.weights, self.weights[0]):
            first = rng.uniform(0.0, 1.0, n)
        else:  # inverse CDF of the piecewise-linear occupancy through the states
            grid = np.linspace(0.0, 1.0, 4097)
            density = np.interp(grid, np.linspace(0.0, 1.0, s), self.weights)
            cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
            first = np.interp(rng.uniform(0.0, 1.0, n) * cdf[-1], cdf, grid)
        if self.n_modes == 0:
            return first[:, None]
        if self.mode_path == "arc":
            t = rng.uniform(0.0, np.pi, n)
            amps = np.zeros((n, self.n_modes))
            amps[:, 0], amps[:, 1] = self.amplitude * np.cos(t), self.amplitude * np.sin(t)
        else:
            amps = rng.uniform(-self.amplitude, self.amplitude, (n, self.n_modes))
        return np.column_stack([first, amps])

    def _base(self, coords: np.ndarray, params: np.ndarray) -> np.ndarray:
        first = params[:, 0]
        s = len(coords)
        if self.base == "discrete" or s == 1:
            return coords[np.rint(first).astype(np.int64)]
        pos = first * (s - 1)
        seg = np.clip(np.floor(pos).astype(np.int64), 0, s - 2)
        frac = (pos - seg)[:, None, None]
        return coords[seg] * (1 - frac) + coords[seg + 1] * frac

    def _motion(self, params: np.ndarray) -> np.ndarray:
        """Node displacements (n, N, 3) of the mode amplitudes (zeros without modes)."""
        return np.einsum("nk,kjc->njc", params[:, 1:], self.modes)

    def points(self, params: np.ndarray) -> np.ndarray:
        """Rendered points (n, P, 3) Å of conformations ``params``."""
        return self._base(self.state_coords, params) + self._motion(params)[:, self.point_node]

    def nodes(self, params: np.ndarray) -> np.ndarray:
        """Node coordinates (n, N, 3) Å of conformations ``params``."""
        return self._base(self.node_of_state, params) + self._motion(params)

    def path_coordinate(self, params: np.ndarray) -> np.ndarray:
        """One scalar per particle ordering the dominant motion, in [0, 1]: ``u`` (interpolate),
        state / (S - 1) (discrete; 0 for a single state), else the arc angle / pi or the first amplitude rescaled."""
        s = len(self.state_coords)
        if s > 1 or self.n_modes == 0:  # one state and no motion: 0 for every particle
            return params[:, 0] if self.base == "interpolate" else params[:, 0] / max(s - 1, 1)
        if self.mode_path == "arc":
            return np.arctan2(params[:, 2], params[:, 1]) / np.pi
        return (params[:, 1] + self.amplitude) / (2 * self.amplitude)

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the landscape (stored in ``ground_truth.npz``)."""
        return {"landscape_state_coords": self.state_coords.astype(np.float32), "landscape_point_node": self.point_node,
                "landscape_weights": self.weights, "landscape_modes": self.modes.astype(np.float32),
                "landscape_base": np.array(self.base), "landscape_amplitude": np.float64(self.amplitude),
                "landscape_mode_path": np.array(self.mode_path), "state_node_coords": self.node_of_state.astype(np.float32)}

    @classmethod
    def from_arrays(cls, gt) -> "Landscape":
        """Rebuild from the arrays of :meth:`arrays` (e.g. an opened ``ground_truth.npz``)."""
        return cls(state_coords=gt["landscape_state_coords"].astype(np.float64), point_node=gt["landscape_point_node"],
                   node_of_state=gt["state_node_coords"].astype(np.float64), base=str(gt["landscape_base"]),
                   weights=gt["landscape_weights"], modes=gt["landscape_modes"].astype(np.float64),
                   amplitude=float(gt["landscape_amplitude"]), mode_path=str(gt["landscape_mode_path"]))
