"""The density generator (``cryodyna train-density``): an implicit Fourier-space volume network
conditioned on given per-particle latents, trained on the images through the central-slice
theorem, the CTF and the particle shifts; and reloading a trained network (``sample-volumes``)."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import torch

from cryodyna.analysis.latent import kmeans_centres, pca_trajectories
from cryodyna.analysis.sampling import render_volume
from cryodyna.config.schema import AnalysisConfig, OptimConfig, TrainDensityConfig
from cryodyna.errors import InputError
from cryodyna.imaging.ctf import CTFParams, compute_ctf
from cryodyna.imaging.fft import fft2_center
from cryodyna.imaging.shift import phase_ramp
from cryodyna.imaging.slicing import CentralSlice
from cryodyna.io.mrc import write_volume
from cryodyna.io.read import read_particles
from cryodyna.models.volume import VolumeDecoder
from cryodyna.train import distributed
from cryodyna.train.checkpoint import seed_everything
from cryodyna.train.loop import TrainingLoop, resolve_device
from cryodyna.train.particles import PreparedParticles
from cryodyna.train.preflight import check_particle_count, check_unique_images
from cryodyna.train.run import load_latents
from cryodyna.train.session import load_images, load_weights, opened_run, read_run, write_run_files

log = logging.getLogger("cryodyna")

LARGEST_DEFAULT_BOX = 256


class DensityTrainer(TrainingLoop):
    """Fit a :class:`VolumeDecoder` to particle images with fixed latents ``z`` (N, z_dim) (None
    for a homogeneous reconstruction).

    Loss: mean over the batch and the Fourier disc ``|k| < fourier_radius`` x Nyquist of
    ``|F_obs - CTF * shift * slice(z, R)|^2``, with ``F_obs`` the centred DFT of the normalised image
    divided by D (so white noise of unit variance has unit power per frequency).
    """

    def __init__(self, model: VolumeDecoder, particles: PreparedParticles, z: np.ndarray | None, optim: OptimConfig,
                 analysis: AnalysisConfig, run_dir: Path, fourier_radius: float = 1.0, table=None):
        super().__init__(model, particles, optim, run_dir, table=table)
        if optim.compile:
            self.net = torch.compile(self.net, backend=optim.compile_backend)
        self.analysis, self.fourier_radius = analysis, fourier_radius
        self.z = z
        self.z_device = None if z is None else torch.as_tensor(z, dtype=torch.float32, device=self.device)
        self.slice = CentralSlice(particles.d, fourier_radius).to(self.device)

    def _errors(self, batch: dict, net: torch.nn.Module) -> torch.Tensor:
        """Per-particle mean squared Fourier error (B,) of ``net`` (the DDP wrapper in training, the
        bare model in rank-0 evaluations, which must not trigger collectives)."""
        z = None if self.z_device is None else self.z_device[batch["index"]]
        k = self.slice.rotate(batch["rotations"])
        with self._autocast():
            half = net(k, z)
        d = self.data.d
        with torch.autocast(device_type=self.device.type, enabled=False):
            ctf = compute_ctf(CTFParams(*batch["ctf"].double().T), d, self.data.apix)
            model = self.slice.assemble(half.to(torch.complex64)) * self.slice.gather(ctf * phase_ramp(-batch["shifts"], d))
            observed = self.slice.gather(fft2_center(batch["images"].float())) / d
            return (observed - model).abs().square().mean(dim=1)

    def losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self._errors(batch, self.net).mean()
        return loss, {"fourier_mse": loss.detach(), "total": loss.detach()}

    @torch.no_grad()
    def mean_error(self, idx: np.ndarray) -> float:
        """Mean Fourier error of particles ``idx`` (eval mode)."""
        self.model.eval()
        errors = [self._errors(self.batch(torch.as_tensor(idx[i : i + 256])), self.model).cpu()
                  for i in range(0, len(idx), 256)]
        return float(torch.cat(errors).mean()) if errors else float("nan")

    def write_evaluation(self, folder: Path, inputs) -> dict[str, float]:
        """Volumes at the k-means centres and along the principal components of z (or the single
        homogeneous volume ``vol.mrc``), with the latents and particle indices used."""
        volume = partial(self._write_volume, folder)
        if self.z is None:
            volume("vol.mrc", None)
        else:
            a = self.analysis
            np.save(folder / "z.npy", self.z)
            centres, centre_idx, _ = kmeans_centres(self.z, a.kmeans, seed=self.cfg.seed)
            np.savetxt(folder / "z_kmeans.txt", centres, fmt="%.5f")
            np.savetxt(folder / "z_kmeans_ind.txt", centre_idx, fmt="%d")
            for i, zc in enumerate(centres):
                volume(f"vol_kmeans_{i:03d}.mrc", zc)
            trajectories, _ = pca_trajectories(self.z, a.pcs, a.pc_frames)
            for pc, (zk, idx) in enumerate(trajectories, start=1):
                np.savetxt(folder / f"z_pca_{pc}.txt", zk, fmt="%.5f")
                np.savetxt(folder / f"z_pca_ind_{pc}.txt", idx, fmt="%d")
                for i, zi in enumerate(zk):
                    volume(f"vol_pca_{pc}_{i:03d}.mrc", zi)
        return {"holdout_fourier_mse": self.mean_error(self.holdout_idx),
                "train_fourier_mse": self.mean_error(self.train_idx[: max(len(self.holdout_idx), 256)])}

    def _write_volume(self, folder: Path, name: str, z: np.ndarray | None) -> None:
        write_volume(folder / name, render_volume(self.model, z, self.data.apix, radius=self.fourier_radius), self.data.apix)


def build_volume_model(cfg: TrainDensityConfig, d: int, z_dim: int, z: np.ndarray | None = None) -> VolumeDecoder:
    """A volume network for images of side ``d`` and latents of size ``z_dim``; training latents
    ``z`` (N, z_dim) set the input normalisation (centred, divided by their overall RMS), which a
    checkpoint otherwise restores."""
    m = cfg.model
    mean, scale = None, 1.0
    if z is not None:
        mean = torch.as_tensor(z.mean(0))
        scale = float(np.sqrt(((z - z.mean(0)) ** 2).sum(1).mean())) or 1.0
    return VolumeDecoder(d, z_dim, m.hidden, m.layers, m.pe_features, m.pe_sigma, mean, scale, seed=cfg.optim.seed)


def read_particle_latents(path: Path, n_particles: int) -> np.ndarray:
    """Per-particle latents (N, z_dim) from ``path`` (.npy or text), checked against the particle count."""
    z = load_latents(path)
    if len(z) != n_particles:
        raise InputError(path, f"has {len(z)} latent rows but the particle file has {n_particles} particles; "
                         "give the z.npy written by train-atom/train-cg on the same particle file")
    if not np.isfinite(z).all():
        raise InputError(path, f"row {int(np.flatnonzero(~np.isfinite(z).all(1))[0]) + 1} contains NaN or infinite values")
    return z


def train_density(particles: Path, z_path: Path | None, run_dir: Path, cfg: TrainDensityConfig, eval_only: bool = False,
                  resume: Path | None = None, restart: bool = False, time_limit_minutes: float | None = None,
                  poses: Path | None = None, ctf: Path | None = None) -> Path | None:
    """Train (or resume) the density generator; returns the last evaluation folder.  Without
    ``z_path`` the reconstruction is homogeneous (z_dim = 0)."""
    run_dir = Path(run_dir)
    distributed.setup()
    with opened_run(run_dir, cfg, "train-density", restart) as changes:
        seed_everything(cfg.optim.seed)
        table = read_particles(particles, datadir=cfg.data.datadir, apix=cfg.data.apix, poses=poses, ctf=ctf)
        check_unique_images(table)
        check_particle_count(table)
        z = None if z_path is None else read_particle_latents(Path(z_path), len(table))
        data = load_images(table, cfg.data, run_dir, LARGEST_DEFAULT_BOX)
        write_run_files(run_dir, cfg, resolve_device(cfg.optim.device), {
            "task": "density", "particles": str(Path(particles).resolve()),
            "z": None if z_path is None else str(Path(z_path).resolve()), "z_dim": 0 if z is None else z.shape[1],
            "box": data.d, "apix": data.apix, "n_particles": len(data)}, changes)
        model = build_volume_model(cfg, data.d, 0 if z is None else z.shape[1], z)
        trainer = DensityTrainer(model, data, z, cfg.optim, cfg.analysis, run_dir, cfg.data.fourier_radius, table)
    trainer.resume_or_start(resume)
    return trainer.run(eval_only, time_limit_minutes)


def load_density_run(run_dir: Path, checkpoint: Path | None = None, device: str = "cpu") -> tuple[VolumeDecoder, dict]:
    """The trained volume network of a ``train-density`` run and its ``run.json`` (box, apix, z_dim)."""
    info, cfg = read_run(run_dir, ("density",))
    model = build_volume_model(cfg, int(info["box"]), int(info["z_dim"]))
    load_weights(model, run_dir, checkpoint)
    info["fourier_radius"] = cfg.data.fourier_radius
    return model.to(resolve_device(device)).eval(), info


def sample_volumes(run_dir: Path, z: np.ndarray | None, out_dir: Path, box: int | None = None, apix: float | None = None,
                   checkpoint: Path | None = None, device: str = "cpu") -> list[Path]:
    """Write ``vol_000.mrc``... (one per latent row, or one homogeneous volume) and ``z_values.txt``."""
    model, info = load_density_run(run_dir, checkpoint, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [None] if z is None else list(z)
    apix_out = apix or info["apix"] * info["box"] / (box or info["box"])
    paths = []
    for i, zi in enumerate(rows):
        vol = render_volume(model, zi, info["apix"], box or info["box"], apix_out, info["fourier_radius"])
        paths.append(out_dir / f"vol_{i:03d}.mrc")
        write_volume(paths[-1], vol, apix_out)
    if z is not None:
        np.savetxt(out_dir / "z_values.txt", z, fmt="%.5f")
    return paths
