"""Evaluation hooks (:class:`~cryodyna.train.loop.EvaluationHook`): what the training commands add
to every evaluation folder besides the latents and losses, and the run report after it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cryodyna.analysis.figures import image_grid, latent_plot
from cryodyna.analysis.latent import kmeans_centres, pca_trajectories, umap_embedding
from cryodyna.analysis.run_report import write_report
from cryodyna.assembly.model import write_node_models
from cryodyna.config.schema import AnalysisConfig
from cryodyna.io.mrc import write_volume
from cryodyna.io.structure import structure_suffix
from cryodyna.models.sampling import decode_latents, render_volume
from cryodyna.train.density import DensityTrainer
from cryodyna.train.trainer import DeformationTrainer


class StructureOutputs:
    """Structures at the k-means centres of the latents (``pred.pdb``; the centre particles and
    every particle's cluster in ``kmeans_particles.txt`` / ``kmeans_labels.txt``) and along the
    principal components (``pca-K.pdb``; ``.cif`` instead for models of more than 62 chains), the
    latent plot (and ``z_umap.npy``), image previews."""

    def __init__(self, analysis: AnalysisConfig):
        self.cfg = analysis

    def write(self, trainer: DeformationTrainer, folder: Path, z: np.ndarray) -> None:
        a = self.cfg
        centres, centre_idx, labels = kmeans_centres(z, a.kmeans, seed=trainer.cfg.seed)
        np.savetxt(folder / "kmeans_particles.txt", centre_idx, fmt="%d")
        np.savetxt(folder / "kmeans_labels.txt", labels, fmt="%d")
        suffix = structure_suffix(trainer.graph.template)
        write_node_models(trainer.graph, folder / f"pred{suffix}", decode_latents(trainer.model, centres))
        trajectories, pca = pca_trajectories(z, a.pcs, a.pc_frames)
        for k, (zk, _) in enumerate(trajectories, start=1):
            write_node_models(trainer.graph, folder / f"pca-{k}{suffix}", decode_latents(trainer.model, zk))
        embedding = umap_embedding(z) if a.umap else None
        if embedding is not None:
            np.save(folder / "z_umap.npy", embedding.astype(np.float32))
        latent_plot(folder / "z_distribution.png", z, centre_idx, pca, embedding)
        self._image_check(trainer, folder, z)

    @staticmethod
    @torch.no_grad()
    def _image_check(trainer: DeformationTrainer, folder: Path, z: np.ndarray) -> None:
        """``input_image.png`` / ``pred_image.png``: the first 25 particles and their predictions."""
        idx = torch.arange(min(25, len(trainer.data)))
        batch = trainer.batch(idx)
        coords = trainer.model.decode(torch.as_tensor(z[: len(idx)], device=trainer.device))
        im = trainer.image_model
        pred = im.predict(coords, batch["poses"], batch["ctf"]).cpu().numpy()
        mask = im.loss_mask.cpu().numpy()
        image_grid(folder / "input_image.png", im.target(batch["images"]).cpu().numpy(), mask, "low-passed particles")
        image_grid(folder / "pred_image.png", pred, mask, "predicted (CTF, low-pass, shift)")

    def after(self, trainer: DeformationTrainer, folder: Path) -> None:
        write_report(trainer.run_dir, trainer.model.reference.cpu().numpy())


class VolumeOutputs:
    """Volumes at the k-means centres and along the principal components of the latents, with the
    latents and particle indices used (or the single homogeneous volume ``vol.mrc``)."""

    def __init__(self, analysis: AnalysisConfig):
        self.cfg = analysis

    def write(self, trainer: DensityTrainer, folder: Path, inputs) -> None:
        def volume(name: str, z: np.ndarray | None) -> None:
            vol = render_volume(trainer.model, z, trainer.data.apix, radius=trainer.fourier_radius)
            write_volume(folder / name, vol, trainer.data.apix)

        z, a = trainer.z, self.cfg
        if z is None:
            volume("vol.mrc", None)
            return
        centres, centre_idx, _ = kmeans_centres(z, a.kmeans, seed=trainer.cfg.seed)
        np.savetxt(folder / "z_kmeans.txt", centres, fmt="%.5f")
        np.savetxt(folder / "z_kmeans_ind.txt", centre_idx, fmt="%d")
        for i, zc in enumerate(centres):
            volume(f"vol_kmeans_{i:03d}.mrc", zc)
        trajectories, _ = pca_trajectories(z, a.pcs, a.pc_frames)
        for pc, (zk, idx) in enumerate(trajectories, start=1):
            np.savetxt(folder / f"z_pca_{pc}.txt", zk, fmt="%.5f")
            np.savetxt(folder / f"z_pca_ind_{pc}.txt", idx, fmt="%d")
            for i, zi in enumerate(zk):
                volume(f"vol_pca_{pc}_{i:03d}.mrc", zi)

    def after(self, trainer: DensityTrainer, folder: Path) -> None:
        write_report(trainer.run_dir, None)
