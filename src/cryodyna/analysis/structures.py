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
from cryodyna.models.sampling import decode_latents, decoded_chunks


@dataclass
class SampledStructures:
    """Coordinates (K, N, 3) Å of K models and how to write them; with ``allatom``, the back-mapping
    rate (models/s) and the bond/clash report."""

    coords: np.ndarray
    write: Callable[[Path, np.ndarray], None]
    geometry: GeometryReport | None = None
    models_per_s: float | None = None

    def save(self, out: Path | None = None, npy: Path | None = None) -> None:
        """A multi-model PDB/mmCIF ``out`` or the coordinates as ``npy``."""
        if npy is not None:
            np.save(npy, self.coords)
        else:
            self.write(out, self.coords)


def write_structures_npy(run: Path, z: np.ndarray, npy: Path, checkpoint: Path | None = None, device: str = "cpu") -> tuple[int, ...]:
    """Node coordinates (K, N, 3) Å of latents ``z`` (K, z_dim) written to ``npy`` chunk by chunk
    (a ``.partial`` file renamed when complete): memory stays small for any K.  Returns the shape."""
    loaded = load_run(run, checkpoint, device)
    shape = (len(z), len(loaded.model.reference), 3)
    partial = Path(f"{npy}.partial")
    with partial.open("wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                 "fortran_order": False, "shape": shape})
        for chunk in decoded_chunks(loaded.model, z):
            f.write(np.ascontiguousarray(chunk, dtype=np.float32).tobytes())
    os.replace(partial, npy)
    return shape


def sample_structures(run: Path, z: np.ndarray, checkpoint: Path | None = None, device: str = "cpu",
                      allatom: bool = False) -> SampledStructures:
    """Decode latents ``z`` (K, z_dim) with the model of ``run``; ``allatom`` (train-cg runs):
    back-map every bead model onto the run's all-atom reference."""
    reference, cg = run_backmapping(run) if allatom else (None, None)
    loaded = load_run(run, checkpoint, device)
    coords = decode_latents(loaded.model, z)
    if not allatom:
        return SampledStructures(coords, loaded.write_models)
    start = time.perf_counter()
    atoms = backmap(reference, cg, coords)
    rate = len(atoms) / max(time.perf_counter() - start, 1e-9)
    return SampledStructures(atoms, lambda path, xyz: write_structure(path, reference, xyz), geometry_report(reference, atoms), rate)
