"""One entry point for every particle format."""

from __future__ import annotations

from pathlib import Path

from cryodyna.errors import InputError
from cryodyna.io.cryodrgn import read_cryodrgn
from cryodyna.io.cryosparc import read_cs
from cryodyna.io.particles import ParticleTable
from cryodyna.io.star import read_star

STACK_SUFFIXES = {".mrcs", ".mrc", ".st"}


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
        return read_star(path, datadir=datadir, apix=apix, box=box)
    if suffix == ".cs":
        return read_cs(path, datadir=datadir)
    if suffix in STACK_SUFFIXES:
        if ctf is None:
            raise InputError(path, "an image stack needs its CTF parameters: pass --ctf ctf.pkl (and --poses poses.pkl)")
        return read_cryodrgn(path, poses, ctf)
    raise InputError(path, f"unknown particle file type {suffix!r}; expected .star, .cs, or a .mrcs stack with --ctf/--poses pickles")
