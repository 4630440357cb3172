"""Latent-space summaries: k-means centres and principal-component trajectories, each snapped to
the nearest real particle so that every decoded structure corresponds to an observed latent."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA


def nearest_rows(z: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the particle latent nearest to each point (K, z_dim) -> (K,)."""
    d = ((points[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    return np.argmin(d, axis=1)


def kmeans_centres(z: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means (k-means++, 10 restarts, up to 300 iterations, seeded) on z (N, z_dim).

    Returns (snapped centres (k, z_dim), their particle indices (k,), labels (N,)); centres are
    ordered along the first principal component so that neighbouring clusters are neighbours.
    """
    k = min(k, len(z))
    km = KMeans(n_clusters=k, n_init=10, max_iter=300, random_state=seed).fit(z)
    order = np.argsort(PCA(n_components=1).fit(z).transform(km.cluster_centers_)[:, 0]) if z.shape[1] > 1 and len(z) > 1 else np.arange(k)
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    idx = nearest_rows(z, km.cluster_centers_[order])
    return z[idx], idx, rank[km.labels_]


def pca_trajectories(z: np.ndarray, n_pcs: int, n_frames: int = 10, low: float = 5.0, high: float = 95.0):
    """Frames along each principal component between its ``low`` and ``high`` percentiles (other
    components at 0), mapped back to z and snapped to the nearest particle.

    Returns a list of (snapped z (n_frames, z_dim), particle indices (n_frames,)) per PC, and the
    fitted PCA (for plotting).  At most min(n_pcs, z_dim, N - 1) components.
    """
    n = max(1, min(n_pcs, z.shape[1], len(z) - 1))
    pca = PCA(n_components=n).fit(z)
    scores = pca.transform(z)
    out = []
    for k in range(n):
        values = np.linspace(np.percentile(scores[:, k], low), np.percentile(scores[:, k], high), n_frames)
        pts = np.zeros((n_frames, n))
        pts[:, k] = values
        idx = nearest_rows(z, pca.inverse_transform(pts))
        out.append((z[idx], idx))
    return out, pca


def umap_embedding(z: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """2-D UMAP embedding (N, 2) when umap-learn is installed and z has more than 2 dimensions."""
    if z.shape[1] <= 2:
        return None
    try:
        import umap
    except ImportError:
        return None
    return umap.UMAP(random_state=seed).fit_transform(z)
