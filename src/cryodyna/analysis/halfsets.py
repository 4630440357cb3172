"""Half-set validation of a learned motion: two models trained on disjoint halves of the particles
predict a structure for every particle; where they agree the motion is supported by the data, where
they disagree by as much as the motion itself it is not.

Per node: ``disagreement`` = RMS over particles of ``|x_A - x_B|`` and ``motion`` = RMS over
particles of the distance from the mean structure (the mean of the two models' values), both in Å;
per particle: the RMSD over nodes between the two predictions.  The motion counts as reproducible
when the RMS disagreement over all nodes is below :data:`REPRODUCIBLE_RATIO` of the RMS motion.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryodyna.runs.layout import RunFolder

REPRODUCIBLE_RATIO = 0.5


@dataclass
class HalfsetAgreement:
    """disagreement, motion (N,) Å per node; particle_rmsd (P,) Å per particle."""

    disagreement: np.ndarray
    motion: np.ndarray
    particle_rmsd: np.ndarray

    @property
    def ratio(self) -> float:
        """RMS disagreement / RMS motion over all nodes (0 = identical predictions)."""
        return float(np.sqrt((self.disagreement**2).mean() / max((self.motion**2).mean(), 1e-12)))

    def warning(self) -> str | None:
        """A sentence when the motion is not reproducible between the halves, else None."""
        if self.ratio <= REPRODUCIBLE_RATIO:
            return None
        disagreement, motion = np.sqrt((self.disagreement**2).mean()), np.sqrt((self.motion**2).mean())
        if motion < 0.01:
            return (f"the half-set models describe no motion (RMS {motion:.3f} Å over the particles) and disagree by "
                    f"{disagreement:.2f} Å RMS: nothing reproducible was learned; train longer or check the data")
        return (f"the two half-set models disagree by {100 * self.ratio:.0f} % of the motion they describe (RMS "
                f"{disagreement:.2f} Å vs {motion:.2f} Å): the motion is not reproducible between independent halves of "
                "the data; more particles, fewer epochs or a smaller model.z_dim may help")


def halfset_agreement(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> HalfsetAgreement:
    """Agreement from batches of paired predictions ``(x_A, x_B)``, each (B, N, 3) Å for the same
    particles (streamed: memory is O(N), not O(particles x N))."""
    sq_diff = first = second = None
    rmsd, count = [], 0
    for xa, xb in pairs:
        xa, xb = np.asarray(xa, np.float64), np.asarray(xb, np.float64)
        diff = ((xa - xb) ** 2).sum(-1)  # (B, N)
        rmsd.append(np.sqrt(diff.mean(1)))
        mean = 0.5 * (xa + xb)
        if sq_diff is None:
            sq_diff, first, second = np.zeros(xa.shape[1]), np.zeros(xa.shape[1:]), np.zeros(xa.shape[1])
        sq_diff += diff.sum(0)
        first += mean.sum(0)
        second += (mean**2).sum((0, 2))
        count += len(xa)
    if not count:
        raise ValueError("no particles to compare")
    motion = np.sqrt(np.maximum(second / count - ((first / count) ** 2).sum(-1), 0.0))
    return HalfsetAgreement(np.sqrt(sq_diff / count), motion, np.concatenate(rmsd))


def write_agreement(folder: Path, agreement: HalfsetAgreement, labels: dict[str, np.ndarray], halves: np.ndarray) -> None:
    """``halfset_agreement.csv`` (per node: chain, residue, res_name, atom, disagreement_a,
    motion_a, ratio) and ``halfset_particles.csv`` (per particle: index, half, rmsd_a)."""
    folder = Path(folder)
    per_node = pd.DataFrame({**labels, "disagreement_a": agreement.disagreement, "motion_a": agreement.motion,
                             "ratio": agreement.disagreement / np.maximum(agreement.motion, 1e-6)})
    per_node.to_csv(RunFolder(folder).halfset_agreement, index=False, float_format="%.4f")
    pd.DataFrame({"index": np.arange(len(halves)), "half": halves, "rmsd_a": agreement.particle_rmsd}).to_csv(
        RunFolder(folder).halfset_particles, index=False, float_format="%.4f")
