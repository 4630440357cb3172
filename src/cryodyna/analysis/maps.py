"""Map helpers: re-centring a map and its model, densities of models, splitting ensembles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cryodyna.imaging.density import gaussian_density
from cryodyna.io.mrc import read_volume, write_volume
from cryodyna.io.structure import Structure, read_models, read_structure, structure_suffix, write_structure
from cryodyna.structure.nodes import residue_nodes


def center_origin(model_path: Path, map_path: Path, out_dir: Path) -> tuple[Path, Path, np.ndarray]:
    """Write ``<map>_centered.mrc`` with header origin ``-(n//2) * voxel`` and ``<model>_centered.pdb``
    translated by the same vector, so both sit in the frame cryodyna expects (0 Å at the box centre).
    A non-zero input origin is taken into account.  Returns both paths and the translation (Å)."""
    volume, voxel, origin = read_volume(map_path)
    nz, ny, nx = volume.shape
    new_origin = np.array([-(nx // 2), -(ny // 2), -(nz // 2)], dtype=np.float64) * voxel
    shift = new_origin - np.asarray(origin)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_map = out_dir / f"{Path(map_path).stem}_centered.mrc"
    out_model = out_dir / f"{Path(model_path).stem}_centered{Path(model_path).suffix}"
    write_volume(out_map, volume, voxel, tuple(new_origin))
    structure = read_structure(model_path)
    write_structure(out_model, structure.with_coords(structure.coords + shift))
    return out_model, out_map, shift


def model_density(structure: Structure, box: int, apix: float, sigma: float = 2.0, atoms: bool = False) -> np.ndarray:
    """Gaussian density (box^3, z/y/x) of a model: one Gaussian per residue (CA/C1', electrons) or,
    with ``atoms``, one per atom (atomic number)."""
    if atoms:
        coords, amps = structure.coords, structure.atomic_number.astype(np.float64)
    else:
        nodes = residue_nodes(structure)
        coords, amps = nodes.coords, nodes.electrons
    return gaussian_density(torch.as_tensor(coords), torch.as_tensor(amps), sigma, box, apix).numpy()


def split_models(path: Path, out_dir: Path) -> list[Path]:
    """One PDB per model of a multi-model file, ``<out_dir>/<k>.pdb`` (1-based; ``.cif`` for models
    of more than 62 chains)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, model in enumerate(read_models(path), start=1):
        p = out_dir / f"{k}{structure_suffix(model)}"
        write_structure(p, model)
        paths.append(p)
    return paths
