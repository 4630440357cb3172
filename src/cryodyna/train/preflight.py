"""Checks run before any training: model inside the box, enough particles, no duplicate images."""

from __future__ import annotations

import numpy as np

from cryodyna.errors import CryodynaError, InputError
from cryodyna.io.particles import ParticleTable


def check_unique_images(table: ParticleTable) -> None:
    """Two rows referencing the same image (e.g. a STAR file merged twice) is an error naming both."""
    key = np.char.add(np.char.add(table.image_file.astype(str), "@"), table.image_index.astype(str))
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = key[first[np.flatnonzero(counts > 1)[0]]]
        rows = np.flatnonzero(key == dup)
        raise InputError(table.source, f"{table.row_label[rows[0]]} and {table.row_label[rows[1]]} reference the same image "
                         f"({table.image_index[rows[0]] + 1}@{table.image_file[rows[0]]}); remove the duplicates "
                         f"({int((counts - 1).sum())} duplicate row(s))")


def check_model_in_box(coords: np.ndarray, box_angstrom: float, model_path) -> None:
    """Every node must lie inside the particle box (map frame with the origin at the box centre)."""
    half = box_angstrom / 2
    outside = np.flatnonzero(np.abs(coords).max(axis=1) > half)
    if outside.size:
        i = int(outside[0])
        raise InputError(
            model_path,
            f"{outside.size} node(s) lie outside the {box_angstrom:.1f} Å box, e.g. node {i + 1} at "
            f"({', '.join(f'{c:.1f}' for c in coords[i])}) Å; the model must be docked in the consensus map and "
            "expressed with the origin at the box centre; move the model and its map there with "
            "`cryodyna center-origin MODEL MAP -o DIR`",
        )


MIN_PARTICLES = 10


def check_particle_count(table: ParticleTable) -> None:
    """Fewer than :data:`MIN_PARTICLES` particles cannot describe a distribution of conformations
    (nor give a held-out set, principal components or clusters): an error saying so."""
    if len(table) < MIN_PARTICLES:
        raise InputError(table.source, f"has {len(table)} particle(s); training needs at least {MIN_PARTICLES} (a "
                         "distribution of conformations, a held-out set, principal components), in practice thousands")
