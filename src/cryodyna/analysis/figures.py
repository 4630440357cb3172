"""Figures written at each evaluation (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cryodyna.train.metrics import NOT_LOSSES  # noqa: E402


def image_grid(path: Path, images: np.ndarray, mask: np.ndarray | None = None, title: str = "") -> None:
    """Up to 25 images (K, D, D) in a 5 x 5 grid, each min-max normalised; the loss mask edge
    drawn in blue."""
    k = min(25, len(images))
    fig, axes = plt.subplots(5, 5, figsize=(7.5, 7.5))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            ax.imshow(images[i], cmap="gray")
            if mask is not None:
                ax.contour(mask, levels=[0.5], colors="tab:blue", linewidths=0.5)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latent_plot(path: Path, z: np.ndarray, centres_idx: np.ndarray, pca, umap_xy: np.ndarray | None = None) -> None:
    """PCA scatter (PC1 vs PC2, or a PC1 histogram for 1-D latents) with the k-means centres, and a
    UMAP scatter when an embedding is given."""
    scores = pca.transform(z)
    panels = 2 if umap_xy is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 5), squeeze=False)
    ax = axes[0, 0]
    ratio = pca.explained_variance_ratio_
    if scores.shape[1] >= 2:
        _density_with_centres(fig, ax, scores[:, :2], centres_idx)
        ax.set_ylabel(f"PC2 score ({100 * ratio[1]:.0f} % variance)")
    else:
        ax.hist(scores[:, 0], bins=50, color="0.5")
        ax.set_ylabel("particles")
        for i, x in enumerate(scores[centres_idx, 0]):
            ax.axvline(x, color="tab:red", lw=0.8)
            ax.annotate(str(i), (x, ax.get_ylim()[1]), color="tab:red", fontsize=8, ha="center", va="bottom")
    ax.set_xlabel(f"PC1 score ({100 * ratio[0]:.0f} % variance)")
    ax.set_title("latents, principal components (numbers: k-means centres)")
    if umap_xy is not None:
        ax = axes[0, 1]
        _density_with_centres(fig, ax, umap_xy, centres_idx)
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        ax.set_title("latents, UMAP")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _density_with_centres(fig, ax, xy: np.ndarray, centres_idx: np.ndarray) -> None:
    """Hexbin of points (N, 2) with a colour bar (particles per bin) and the numbered centres."""
    cells = ax.hexbin(xy[:, 0], xy[:, 1], gridsize=40, cmap="Greys", mincnt=1)
    fig.colorbar(cells, ax=ax, label="particles per bin")
    ax.scatter(xy[centres_idx, 0], xy[centres_idx, 1], c="tab:red", s=25)
    for i, (x, y) in enumerate(xy[centres_idx]):
        ax.annotate(str(i), (x, y), xytext=(3, 3), textcoords="offset points", color="tab:red", fontsize=8)


def pc_histograms(path: Path, scores: np.ndarray) -> None:
    """One histogram per principal component score (N, n_pcs)."""
    n = scores.shape[1]
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), squeeze=False)
    for k in range(n):
        axes[0, k].hist(scores[:, k], bins=60, color="0.4")
        axes[0, k].set_xlabel(f"PC{k + 1} score (latent units)")
        axes[0, k].set_ylabel("particles")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loss_curves(path: Path, metrics) -> None:
    """Training losses and evaluation metrics against the step, from a long-form metrics table."""
    train = metrics[(metrics.phase == "train") & ~metrics.name.isin(NOT_LOSSES)]
    evals = metrics[metrics.phase == "eval"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, group in train.groupby("name"):
        values = group.value.where(group.value > 1e-9)  # a term that is exactly 0 (no clash) is not drawn on the log axis
        if values.notna().any():
            axes[0].plot(group.step, values, label=name)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("loss term (image: 1 - correlation; priors: Å² or kT)")
    axes[0].set_title("training losses")
    axes[0].legend(fontsize=8)
    for name, group in evals.groupby("name"):
        axes[1].plot(group.step, group.value, "o-", label=name)
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("loss of the evaluation latents")
    axes[1].set_title("evaluation (held-out and training particles)")
    if len(evals):
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fsc_plot(path: Path, result, title: str = "") -> None:
    """FSC curve against spatial frequency with the 0.5 and 0.143 thresholds and their resolutions."""
    fsc_curves_plot(path, {"": result}, title)


def fsc_curves_plot(path: Path, curves: dict, title: str = "") -> None:
    """Several FSC curves ({label: FSCResult}) against spatial frequency, with the 0.5 and 0.143
    thresholds; each label shows its resolutions and FSC-AUC."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k, (label, result) in enumerate(curves.items()):
        ax.plot(result.frequency, result.fsc, color=f"C{k}",
                label=f"{label + ': ' if label else ''}0.5 at {result.resolution(0.5):.2f} Å, 0.143 at "
                      f"{result.resolution(0.143):.2f} Å, AUC {result.auc:.3f}")
    for threshold in (0.5, 0.143):
        ax.axhline(threshold, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.05, 1.05)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def trajectory_figure(path: Path, frames: np.ndarray, title: str = "") -> None:
    """Node traces (K, N, 3) Å of a trajectory in 3-D: first frame blue, last red, others grey;
    consecutive nodes further than 8 Å apart (chain breaks; consecutive CA atoms are 3.8 Å apart,
    nucleotide C1' atoms up to about 7 Å) are not joined.  One line per frame (gaps as NaN), so
    the cost does not grow with the number of chains or breaks."""
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="3d")
    colours = ["#bbbbbb"] * len(frames)
    colours[0], colours[-1] = "C0", "C3"
    for k in [*range(1, len(frames) - 1), 0, len(frames) - 1]:
        x = frames[k].astype(float)
        breaks = np.flatnonzero(np.linalg.norm(np.diff(x, axis=0), axis=1) > 8.0) + 1
        x = np.insert(x, breaks, np.nan, axis=0)
        ax.plot(x[:, 0], x[:, 1], x[:, 2], color=colours[k], lw=1.6 if k in (0, len(frames) - 1) else 0.6)
    ax.set_box_aspect(np.ptp(frames.reshape(-1, 3), axis=0))
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_zlabel("z (Å)")
    ax.set_title(title or "first (blue) to last (red) frame", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
