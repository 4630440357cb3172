"""One entry point for every particle format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryodyna.errors import InputError
from cryodyna.io.cryodrgn import read_cryodrgn
from cryodyna.io.cryosparc import read_cs
from cryodyna.io.particles import ParticleTable
from cryodyna.io.star import read_star

STACK_SUFFIXES = {".mrcs", ".mrc", ".st"}
MODEL_SUFFIXES = {".pdb", ".cif", ".mmcif", ".ent"}


def read_particles(
    path: str | Path,
    datadir: str | Path | None = None,
    apix: float | None = None,
    box: int | None = None,
    poses: str | Path | None = None,
    ctf: str | Path | None = None,
) -> ParticleTable:
    """Read a particle table from a RELION ``.star``, a cryoSPARC ``.cs``, or an image stack
    described by cryoDRGN ``poses``/``ctf`` pickles.

    datadir: folder holding the stacks when the paths in the file do not resolve.
    apix, box: pixel size (Å) and box (px) for files that do not record them.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".star":
        table = read_star(path, datadir=datadir, apix=apix, box=box)
    elif suffix == ".cs":
        table = read_cs(path, datadir=datadir)
    elif suffix in STACK_SUFFIXES:
        if ctf is None:
            beside = sorted(path.parent.glob("*.star")) if path.parent.is_dir() else []
            hint = f"; or did you mean the STAR file beside it ({beside[0]})?" if beside else ""
            raise InputError(path, "an image stack needs its CTF parameters: pass --ctf ctf.pkl (and --poses poses.pkl)" + hint)
        table = read_cryodrgn(path, poses, ctf)
    elif suffix in MODEL_SUFFIXES:
        raise InputError(path, "is an atomic model, not a particle file: the order is PARTICLES MODEL")
    else:
        raise InputError(path, f"unknown particle file type {suffix!r}; expected .star, .cs, or a .mrcs stack with --ctf/--poses pickles")
    check_optics(table)
    return table


def check_optics(table: ParticleTable) -> None:
    """Physically impossible optics or CTF values are an error naming the file, the particle row,
    the field and the expected range (NaN pixel sizes, i.e. unknown ones, are allowed)."""
    checks = [
        ("pixel size (Å/px)", table.pixel_size, lambda v: np.isnan(v) | (v > 0), "> 0"),
        ("voltage (kV)", table.voltage, lambda v: (v > 0) & (v <= 1000), "in (0, 1000]"),
        ("spherical aberration Cs (mm)", table.cs, lambda v: (v >= 0) & (v < 100), "in [0, 100)"),
        ("amplitude contrast", table.amp_contrast, lambda v: (v >= 0) & (v <= 1), "in [0, 1]"),
        ("defocus U (Å)", table.defocus_u, np.isfinite, "finite"),
        ("defocus V (Å)", table.defocus_v, np.isfinite, "finite"),
    ]
    for name, values, ok, expected in checks:
        bad = np.flatnonzero(~ok(np.asarray(values, dtype=np.float64)))
        if bad.size:
            i = int(bad[0])
            raise InputError(table.source, f"{table.row_label[i]}: {name} is {values[i]:g}, expected {expected} "
                             f"({bad.size} particle(s) affected)")
