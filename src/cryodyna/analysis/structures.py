"""Structures of chosen latents (``cryodyna sample-structures``): node models, or all-atom models
back-mapped from a bead-level run with their geometry report."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryodyna.analysis.backmap import GeometryReport, backmap, geometry_report, run_backmapping
from cryodyna.assembly.stage import load_run
from cryodyna.io.structure import write_structure
from cryodyna.models.sampling import decode_latents


@dataclass
class SampledStructures:
    """Coordinates (K, N, 3) Å of K models and how to write them; with ``allatom``, the back-mapping
    rate (models/s) and the bond/clash report."""

    coords: np.ndarray
    write: Callable[[Path, np.ndarray], None]
    geometry: GeometryReport | None = None
    models_per_s: float | None = None

    def save(self, out: Path | None = None, npy: Path | None = None) -> None:
        """A multi-model PDB/mmCIF ``out`` or the coordinates as ``npy`` (coordinates already on
        disk, see :func:`sample_structures`, are moved into place)."""
        if npy is None:
            self.write(out, self.coords)
        elif isinstance(self.coords, np.memmap):
            self.coords.flush()
            os.replace(self.coords.filename, npy)
        else:
            np.save(npy, self.coords)


def sample_structures(run: Path, z: np.ndarray, checkpoint: Path | None = None, device: str = "cpu",
                      allatom: bool = False, npy: Path | None = None) -> SampledStructures:
    """Decode latents ``z`` (K, z_dim) with the model of ``run``; ``allatom`` (train-cg runs):
    back-map every bead model onto the run's all-atom reference.  With ``npy`` (node models), the
    coordinates are decoded in chunks into a memory-mapped file beside it (``.npy.partial``, moved
    to ``npy`` by :meth:`SampledStructures.save`): memory stays small for any K."""
    reference, cg = run_backmapping(run) if allatom else (None, None)
    loaded = load_run(run, checkpoint, device)
    into = None
    if npy is not None and not allatom:
        into = np.lib.format.open_memmap(Path(f"{npy}.partial"), mode="w+", dtype=np.float32,
                                         shape=(len(z), len(loaded.model.reference), 3))
    coords = decode_latents(loaded.model, z, out=into)
    if not allatom:
        return SampledStructures(coords, loaded.write_models)
    start = time.perf_counter()
    atoms = backmap(reference, cg, coords)
    rate = len(atoms) / max(time.perf_counter() - start, 1e-9)
    return SampledStructures(atoms, lambda path, xyz: write_structure(path, reference, xyz), geometry_report(reference, atoms), rate)
