"""The one internal particle table every reader produces and every writer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np


@dataclass
class ParticleTable:
    """Poses, CTF and image references of ``N`` particles, one entry per particle.

    Attributes (all arrays have leading length N):
        image_file: absolute paths of the stacks (object array of str).
        image_index: 0-based index of the image inside its stack (int64).
        rotations: (N, 3, 3) RELION-convention pose matrices (``p = R x``), or None when the file has
            no poses.
        shifts: (N, 2) RELION origin (x, y) in Å: the particle centre sits at ``-shift`` in its image.
        defocus_u, defocus_v: Å, positive = under-focus.
        astig_angle: astigmatism angle in radians.
        voltage: kV.  cs: spherical aberration in mm.  amp_contrast: fraction.
        phase_shift: radians.
        pixel_size: Å/px of the stored images (NaN where unknown).
        box: image side in px (-1 where unknown).
        optics_group: integer group id (1-based as in RELION).
        source: the file the table was read from.
        row_label: human-readable origin of each entry for error messages (e.g. ``"row 12"``).
        random_subset: gold-standard half-set (1 or 2) of each particle (RELION ``rlnRandomSubset``,
            cryoSPARC ``alignments3D/split`` + 1), or None when the file has none.
    """

    image_file: np.ndarray
    image_index: np.ndarray
    rotations: np.ndarray | None
    shifts: np.ndarray
    defocus_u: np.ndarray
    defocus_v: np.ndarray
    astig_angle: np.ndarray
    voltage: np.ndarray
    cs: np.ndarray
    amp_contrast: np.ndarray
    phase_shift: np.ndarray
    pixel_size: np.ndarray
    box: np.ndarray
    optics_group: np.ndarray
    source: Path | None = None
    row_label: np.ndarray | None = field(default=None)
    random_subset: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.image_index)
        if self.row_label is None:
            self.row_label = np.array([f"row {i + 1}" for i in range(n)], dtype=object)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and len(value) != n:
                raise ValueError(f"ParticleTable.{f.name} has {len(value)} entries, expected {n}")

    def __len__(self) -> int:
        return len(self.image_index)

    @property
    def has_poses(self) -> bool:
        """True when the table carries rotations."""
        return self.rotations is not None

    def subset(self, indices: np.ndarray) -> "ParticleTable":
        """A new table with the particles ``indices`` (int array or boolean mask), in that order."""
        kept = {}
        for f in fields(self):
            value = getattr(self, f.name)
            kept[f.name] = value[indices] if isinstance(value, np.ndarray) else value
        return ParticleTable(**kept)

    def optics_summary(self) -> list[dict]:
        """One dict per optics group: group id, count, pixel size, box, voltage, Cs, amplitude contrast."""
        rows = []
        for g in np.unique(self.optics_group):
            sel = self.optics_group == g
            i = int(np.flatnonzero(sel)[0])
            rows.append(
                dict(
                    group=int(g),
                    particles=int(sel.sum()),
                    pixel_size=float(self.pixel_size[i]),
                    box=int(self.box[i]),
                    voltage=float(self.voltage[i]),
                    cs=float(self.cs[i]),
                    amp_contrast=float(self.amp_contrast[i]),
                )
            )
        return rows

