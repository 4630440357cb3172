"""Latent paths that stay in populated regions: shortest paths on a nearest-neighbour graph of the
particles' latents (``cryodyna traverse``), resampled evenly by arc length."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from sklearn.neighbors import NearestNeighbors

from cryodyna.errors import CryodynaError


def latent_path(z: np.ndarray, start: np.ndarray, end: np.ndarray, frames: int = 10, neighbours: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Path from latent ``start`` to ``end`` (each (z_dim,)) through the particles' latents ``z``
    (N, z_dim): the shortest path on the symmetric ``neighbours``-nearest-neighbour graph (edge
    length = Euclidean distance), from the particle nearest ``start`` to the one nearest ``end``,
    with the end points themselves prepended/appended, resampled to ``frames`` latents evenly spaced
    along it.  Returns (latents (frames, z_dim), indices of the particles the path visits)."""
    n = len(z)
    if frames < 2:
        raise CryodynaError("a path needs at least 2 frames")
    k = min(neighbours + 1, n)
    dist, idx = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z)
    rows = np.repeat(np.arange(n), k)
    graph = coo_matrix((dist.ravel() + 1e-12, (rows, idx.ravel())), shape=(n, n)).tocsr()
    graph = graph.maximum(graph.T)
    a, b = (int(np.argmin(((z - p) ** 2).sum(1))) for p in (start, end))
    lengths, previous = dijkstra(graph, indices=a, return_predecessors=True)
    if not np.isfinite(lengths[b]):
        raise CryodynaError(f"the two end points lie in parts of the latent space that {neighbours} nearest neighbours do not "
                            "connect; increase --neighbours")
    visited = [b]
    while visited[-1] != a:
        visited.append(int(previous[visited[-1]]))
    visited = np.array(visited[::-1])
    points = np.vstack([start[None], z[visited], end[None]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    targets = np.linspace(0.0, arc[-1], frames)
    out = np.stack([np.interp(targets, arc, points[:, d]) for d in range(z.shape[1])], 1)
    return out.astype(np.float32), visited


def parse_end_point(text: str, z: np.ndarray, option: str) -> np.ndarray:
    """A path end point: a particle index (``123``) or a comma-separated latent (``0.1,-2,...``)."""
    try:
        if "," not in text:
            i = int(text)
            if not 0 <= i < len(z):
                raise CryodynaError(f"{option} {i}: particle index outside 0..{len(z) - 1}")
            return z[i]
        values = np.array([float(v) for v in text.split(",")], dtype=np.float32)
    except ValueError:
        raise CryodynaError(f"{option} {text!r}: expected a particle index or {z.shape[1]} comma-separated numbers") from None
    if len(values) != z.shape[1]:
        raise CryodynaError(f"{option}: a latent needs {z.shape[1]} values, got {len(values)}")
    return values
