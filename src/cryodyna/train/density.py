"""The density generator (``cryodyna train-density``): an implicit Fourier-space volume network
conditioned on given per-particle latents, trained on the images through the central-slice
theorem, the CTF and the particle shifts."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch

from cryodyna import distributed
from cryodyna.assembly.volume import build_volume_model
from cryodyna.config.schema import OptimConfig, TrainDensityConfig
from cryodyna.data.particles import PreparedParticles
from cryodyna.errors import InputError
from cryodyna.imaging.batches import PoseBatch
from cryodyna.imaging.fft import fft2_center
from cryodyna.imaging.formation import FourierTransfer
from cryodyna.imaging.slicing import CentralSlice
from cryodyna.io.read import read_particles
from cryodyna.models.volume import VolumeDecoder
from cryodyna.runs.checkpoint import seed_everything
from cryodyna.runs.layout import evaluation_file
from cryodyna.runs.read import load_latents
from cryodyna.train.loop import TrainingLoop
from cryodyna.train.poses import PoseSpectra, fourier_halves
from cryodyna.train.preflight import check_particle_count, check_unique_images
from cryodyna.train.session import load_images, opened_run, write_run_files

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
                 run_dir: Path, fourier_radius: float = 1.0, table=None, hooks=()):
        super().__init__(model, particles, optim, run_dir, table=table, hooks=hooks)
        if optim.compile:
            self.net = torch.compile(self.net, backend=optim.compile_backend)
        self.fourier_radius = fourier_radius
        self.z = z
        self.z_device = None if z is None else torch.as_tensor(z, dtype=torch.float32, device=self.device)
        self.slice = CentralSlice(particles.d, fourier_radius).to(self.device)
        self.transfer = FourierTransfer(self.slice.frequencies.cpu(), particles.apix).to(self.device)

    def _errors(self, batch: dict, net: torch.nn.Module) -> torch.Tensor:
        """Per-particle mean squared Fourier error (B,) of ``net`` (the DDP wrapper in training, the
        bare model in rank-0 evaluations, which must not trigger collectives)."""
        z = None if self.z_device is None else self.z_device[batch["index"]]
        k = self.slice.rotate(batch["poses"].rotations)
        with self._autocast():
            half = net(k, z)
        d = self.data.d
        with torch.autocast(device_type=self.device.type, enabled=False):
            model = self.slice.assemble(half.to(torch.complex64)) * self.transfer(batch["poses"], batch["ctf"])
            observed = self.slice.gather(fft2_center(batch["images"].float())) / d
            return (observed - model).abs().square().mean(dim=1)

    @torch.no_grad()
    def pose_spectra(self, batch: dict) -> PoseSpectra:
        """The disc (B, P) of the images and of the volume's slices in a given pose (zero
        frequency excluded)."""
        z = None if self.z_device is None else self.z_device[batch["index"]]
        d = self.data.d

        def predict(poses: PoseBatch) -> torch.Tensor:
            with self._autocast():
                half = self.model(self.slice.rotate(poses.rotations), z)
            return self.slice.assemble(half.to(torch.complex64)) * self.transfer(poses, batch["ctf"])

        weights = (self.transfer.frequencies.abs().sum(0) > 0).float()
        return PoseSpectra(predict, self.slice.gather(fft2_center(batch["images"].float())) / d, weights,
                           fourier_halves(self.transfer.frequencies, d))

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
        """``z.npy`` (the training latents, when conditioned on any); returns the held-out and
        training Fourier errors."""
        if self.z is not None:
            np.save(evaluation_file(folder, "latents"), self.z)
        return {"holdout_fourier_mse": self.mean_error(self.holdout_idx),
                "train_fourier_mse": self.mean_error(self.train_idx[: max(len(self.holdout_idx), 256)])}


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
                  poses: Path | None = None, ctf: Path | None = None, hooks=()) -> Path | None:
    """Train (or resume) the density generator; returns the last evaluation folder.  Without
    ``z_path`` the reconstruction is homogeneous (z_dim = 0).  ``hooks``: evaluation outputs
    (:class:`~cryodyna.train.loop.EvaluationHook`)."""
    run_dir = Path(run_dir)
    distributed.setup()
    with contextlib.ExitStack() as hold:  # the run folder's lock, held until the command ends
        with opened_run(run_dir, cfg, "train-density", restart, hold) as changes:
            seed_everything(cfg.optim.seed)
            table = read_particles(particles, datadir=cfg.data.datadir, apix=cfg.data.apix, poses=poses, ctf=ctf)
            check_unique_images(table)
            check_particle_count(table)
            z = None if z_path is None else read_particle_latents(Path(z_path), len(table))
            data = load_images(table, cfg.data, run_dir, LARGEST_DEFAULT_BOX)
            write_run_files(run_dir, cfg, distributed.resolve_device(cfg.optim.device), {
                "task": "density", "particles": str(Path(particles).resolve()),
                "z": None if z_path is None else str(Path(z_path).resolve()), "z_dim": 0 if z is None else z.shape[1],
                "box": data.d, "apix": data.apix, "n_particles": len(data)}, changes)
            model = build_volume_model(cfg, data.d, 0 if z is None else z.shape[1], z)
            trainer = DensityTrainer(model, data, z, cfg.optim, run_dir, cfg.data.fourier_radius, table, hooks)
        trainer.resume_or_start(resume)
        return trainer.run(eval_only, time_limit_minutes)
