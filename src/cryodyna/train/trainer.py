"""One trainer for the deformation stages (residue and bead level).

A task object supplies the node graph, the priors and the structure writer; this module does the
rest: data order, held-out particles, optimisation (AdamW, warm-up/cosine, clipping, autocast),
metrics, atomic checkpoints with resume, and the per-evaluation outputs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cryodyna.analysis.figures import image_grid, latent_plot
from cryodyna.analysis.latent import kmeans_centres, pca_trajectories, umap_embedding
from cryodyna.analysis.sampling import decode_latents
from cryodyna.config.schema import AnalysisConfig, OptimConfig
from cryodyna.errors import TrainingError
from cryodyna.models.deformation import DeformationModel
from cryodyna.train import distributed
from cryodyna.train.checkpoint import rng_state, save_atomic, set_rng_state
from cryodyna.train.image_model import ImageModel
from cryodyna.train.metrics import MetricsWriter
from cryodyna.train.particles import PreparedParticles

log = logging.getLogger("cryodyna")

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available (this process's GPU under torchrun), else cpu."""
    if name == "auto":
        return torch.device(f"cuda:{distributed.local_rank()}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of particle indices into (train, holdout), both sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(n * fraction)) if n > 1 else 0
    return np.sort(perm[k:]), np.sort(perm[:k])


class DeformationTrainer:
    """Train a :class:`DeformationModel` on prepared particles.

    run_dir: output folder (``checkpoints/last.pt``, ``metrics.csv``, evaluation folders).
    Under torchrun every process takes ``batch_size`` particles of each global batch (DDP averages
    the gradients); only rank 0 writes files; evaluation latents are gathered in particle order.
    """

    def __init__(self, task, model: DeformationModel, image_model: ImageModel, particles: PreparedParticles,
                 optim: OptimConfig, analysis: AnalysisConfig, run_dir: Path, image_weight: float = 1.0,
                 context_dropout: float = 0.5):
        self.task, self.model, self.image_model, self.data = task, model, image_model, particles
        self.image_weight = image_weight
        self.cfg, self.analysis, self.run_dir = optim, analysis, Path(run_dir)
        self.context_dropout = context_dropout
        self.device = resolve_device(optim.device)
        self.model.to(self.device)
        self.image_model.to(self.device)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0
        self.net = self.model
        if self.world > 1:
            unused = context_dropout > 0 and len(self.model.encoder.attention) > 0  # q/k idle without context
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=unused)
        self.train_idx, self.holdout_idx = holdout_split(len(particles), optim.holdout_fraction, optim.seed)
        self.batch_size = max(1, min(optim.batch_size, len(self.train_idx) // self.world))
        self.steps_per_epoch = max(1, len(self.train_idx) // (self.batch_size * self.world))
        self.total_steps = self.steps_per_epoch * optim.epochs
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=optim.precision == "fp16")
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.skipped_steps, self.bad_steps = 0, 0
        self.metrics = MetricsWriter(self.run_dir / "metrics.csv") if self.main else None
        if self.main:
            for stale in self.run_dir.glob(".epoch-*.tmp"):  # an evaluation interrupted by a crash
                shutil.rmtree(stale, ignore_errors=True)
        self.ckpt_path = self.run_dir / "checkpoints" / "last.pt"

    def _lr_factor(self, step: int) -> float:
        c = self.cfg
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        if not c.cosine_schedule:
            return warm
        return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, self.total_steps))))

    # ----------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "skipped_steps": self.skipped_steps, "holdout": self.holdout_idx, "rng": rng_state(),
            "image_scale": self.data.scale,
        }

    def save(self) -> None:
        if self.main:
            save_atomic(self.state(), self.ckpt_path)

    def load(self, path: Path) -> None:
        """Resume from a checkpoint written by :meth:`save` (model, optimiser, schedule, counters, RNG)."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            self.skipped_steps = state["skipped_steps"]
            set_rng_state(state["rng"])
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    # ----------------------------------------------------------------- training
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch)
        return torch.as_tensor(self.train_idx)[torch.randperm(len(self.train_idx), generator=g)]

    def _batch_indices(self, order: torch.Tensor, b: int) -> torch.Tensor:
        """This process's share of global batch ``b`` of an epoch order (same order on all ranks)."""
        start = (b * self.world + self.rank) * self.batch_size
        return order[start : start + self.batch_size]

    def _autocast(self):
        dtype = AUTOCAST[self.cfg.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _losses(self, batch: dict, context: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with self._autocast():
            _, coords = self.net(batch["images"], context=context)
        pred = self.image_model.predict(coords, batch["rotations"], batch["shifts"], batch["ctf"])
        image_loss = self.image_model.loss(pred, self.image_model.target(batch["images"]))
        total = self.image_weight * image_loss
        values = {"image": image_loss.detach()}
        gather = distributed.gather_rows if self.world > 1 else None
        for name, (weight, value) in self.task.priors(coords, gather).items():
            total = total + weight * value
            values[name] = value.detach()
        values["total"] = total.detach()
        return total, values

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the (detached) loss values.

        A step whose loss or gradient is not finite is skipped (parameters untouched) and counted;
        after ``max_bad_steps`` consecutive bad steps a :class:`TrainingError` stops the run.
        """
        self.model.train()
        context = bool(torch.rand(()) >= self.context_dropout)  # same on all ranks: same RNG stream
        total, values = self._losses(batch, context)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip or float("inf"))
        finite = bool(torch.isfinite(total)) and (self.scaler.is_enabled() or bool(torch.isfinite(norm)))
        finite = not distributed.any_rank(not finite, self.device)
        if finite:
            self.scaler.step(self.optimizer)
            self.bad_steps = 0
        else:
            self.skipped_steps += 1
            self.bad_steps += 1
            log.warning("step %d: non-finite loss or gradient, step skipped (%d in a row)", self.step, self.bad_steps)
            if self.bad_steps >= self.cfg.max_bad_steps:
                raise TrainingError(
                    f"{self.bad_steps} consecutive steps had a non-finite loss or gradient (last losses: "
                    + ", ".join(f"{k} {float(v):.4g}" for k, v in values.items())
                    + f"); stopped at step {self.step}. The last good checkpoint is {self.ckpt_path}; "
                    "try a lower optim.lr, optim.grad_clip, or check the images for artefacts"
                )
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return values

    def fit(self, time_limit_minutes: float | None = None) -> Path | None:
        """Train to ``optim.epochs`` (continuing a resumed run), evaluating every ``eval_every``
        epochs and at the end; stops early after ``time_limit_minutes``.  Returns the last
        evaluation folder."""
        start = time.perf_counter()
        last_eval = None
        running: dict[str, float] = {}
        n_run = 0
        seen = 0
        stop = False
        with Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      disable=not self.main) as progress:
            bar = progress.add_task("train", total=self.total_steps, completed=self.step, epoch=self.epoch, losses="")
            while self.epoch < self.cfg.epochs and not stop:
                order = self._epoch_order(self.epoch)
                while self.batch_in_epoch < self.steps_per_epoch:
                    idx = self._batch_indices(order, self.batch_in_epoch)
                    values = self.train_step(self.data.batch(idx, self.device))
                    self.batch_in_epoch += 1
                    seen += len(idx) * self.world
                    for k, v in values.items():
                        running[k] = running.get(k, 0.0) + v  # tensors: no device sync per step
                    n_run += 1
                    if self.main and (self.step % 20 == 0 or self.batch_in_epoch == self.steps_per_epoch):
                        means = {k: float(v) / n_run for k, v in running.items()}
                        means["skipped_steps"] = float(self.skipped_steps)
                        means["lr"] = self.scheduler.get_last_lr()[0]
                        means["images_per_s"] = seen / (time.perf_counter() - start)
                        self.metrics.write(self.step, self.epoch, "train", means)
                        self._write_progress(means, seen / (time.perf_counter() - start) / self.batch_size)
                        progress.update(bar, completed=self.step, epoch=self.epoch,
                                        losses=" ".join(f"{k} {v:.4f}" for k, v in means.items() if k in ("total", "image")))
                        running, n_run = {}, 0
                    if self.step % self.cfg.checkpoint_every == 0:
                        self.save()
                    late = time_limit_minutes is not None and time.perf_counter() - start > 60 * time_limit_minutes
                    if distributed.any_rank(late, self.device):
                        stop = True
                        break
                if not stop:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                if stop or self.epoch % self.cfg.eval_every == 0 or self.epoch == self.cfg.epochs:
                    self.save()
                    last_eval = self.evaluate()
        return last_eval

    def _write_progress(self, means: dict[str, float], steps_per_s: float) -> None:
        """``progress.json``: where training stands, rewritten atomically so a job monitor can poll it."""
        remaining = self.total_steps - self.step
        state = {"step": self.step, "total_steps": self.total_steps, "epoch": self.epoch, "epochs": self.cfg.epochs,
                 "images_per_s": round(means["images_per_s"], 2), "eta_s": round(remaining / max(steps_per_s, 1e-9)),
                 "losses": {k: means[k] for k in means if k not in ("lr", "images_per_s")},
                 "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = self.run_dir / ".progress.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.run_dir / "progress.json")

    def reference_init(self, max_epochs: int = 3, tolerance: float = 1e-4) -> int:
        """The reference method's init stage: train encoder + decoder so that the displacements of
        real images vanish (loss = mean squared displacement, Å^2), at most ``max_epochs`` epochs,
        stopping when the mean of the last 20 losses is below ``tolerance``.  Returns the steps run."""
        self.model.train()
        recent: list[float] = []
        steps = 0
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        for epoch in range(max_epochs):
            order = self._epoch_order(-1 - epoch)
            for b in range(self.steps_per_epoch):
                images = self.data.batch(self._batch_indices(order, b), self.device)["images"]
                with self._autocast():
                    delta = (self.net(images)[1] - self.model.reference).float()
                loss = delta.square().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                recent = (recent + [float(loss)])[-20:]
                if np.mean(recent) <= tolerance:
                    log.info("reference init converged after %d steps (mean squared displacement %.2e)", steps, np.mean(recent))
                    return steps
        log.info("reference init stopped after %d steps (mean squared displacement %.2e)", steps, np.mean(recent))
        return steps

    # ----------------------------------------------------------------- evaluation
    @torch.no_grad()
    def encode_all(self) -> np.ndarray:
        """Latents (N_particles, z_dim) in particle order, deterministic (eval mode, batches of the
        training batch size in particle order); under torchrun each rank encodes a contiguous shard
        and the shards are gathered."""
        self.model.eval()
        n = len(self.data)
        shard = -(-n // self.world)
        lo, hi = min(self.rank * shard, n), min((self.rank + 1) * shard, n)
        out = [torch.zeros(0, self.model.encoder.out.out_features, device=self.device)]
        for start in range(lo, hi, self.batch_size):
            idx = torch.arange(start, min(start + self.batch_size, hi))
            with self._autocast():
                out.append(self.model.encode(self.data.batch(idx, self.device)["images"]).float())
        mine = torch.cat(out)
        padded = torch.zeros(shard, mine.shape[1], device=self.device)
        padded[: len(mine)] = mine
        return distributed.gather_rows(padded)[:n].cpu().numpy()

    @torch.no_grad()
    def image_losses(self, idx: np.ndarray, z: np.ndarray) -> float:
        """Mean image loss of particles ``idx`` with their latents ``z`` (full rows)."""
        losses = []
        for start in range(0, len(idx), 256):
            sel = torch.as_tensor(idx[start : start + 256])
            batch = self.data.batch(sel, self.device)
            coords = self.model.decode(torch.as_tensor(z[sel.numpy()], device=self.device))
            pred = self.image_model.predict(coords, batch["rotations"], batch["shifts"], batch["ctf"])
            losses.append(self.image_model.loss(pred, self.image_model.target(batch["images"]), reduce=False).cpu())
        return float(torch.cat(losses).mean()) if losses else float("nan")

    def evaluate(self) -> Path:
        """Write one evaluation folder atomically (built under a temporary name, then renamed).
        Every rank encodes its shard; rank 0 writes."""
        name = f"epoch-{self.epoch:04d}_step-{self.step:07d}"
        final = self.run_dir / name
        z = self.encode_all()
        if not self.main:
            distributed.barrier()
            return final
        tmp = self.run_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.save(tmp / "z.npy", z.astype(np.float32))
        a = self.analysis
        centres, centre_idx, _ = kmeans_centres(z, a.kmeans, seed=self.cfg.seed)
        self.task.write_models(tmp / "pred.pdb", decode_latents(self.model, centres))
        trajectories, pca = pca_trajectories(z, a.pcs, a.pc_frames)
        for k, (zk, _) in enumerate(trajectories, start=1):
            self.task.write_models(tmp / f"pca-{k}.pdb", decode_latents(self.model, zk))
        latent_plot(tmp / "z_distribution.png", z, centre_idx, pca, umap_embedding(z) if a.umap else None)
        self._image_check(tmp, z)
        metrics = {"holdout_image_loss": self.image_losses(self.holdout_idx, z),
                   "train_image_loss": self.image_losses(self.train_idx[: max(len(self.holdout_idx), 256)], z)}
        self.metrics.write(self.step, self.epoch, "eval", metrics)
        save_atomic(self.state(), tmp / "ckpt.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        log.info("evaluation written to %s (holdout image loss %.4f)", final, metrics["holdout_image_loss"])
        distributed.barrier()
        return final

    @torch.no_grad()
    def _image_check(self, folder: Path, z: np.ndarray) -> None:
        idx = torch.arange(min(25, len(self.data)))
        batch = self.data.batch(idx, self.device)
        coords = self.model.decode(torch.as_tensor(z[: len(idx)], device=self.device))
        pred = self.image_model.predict(coords, batch["rotations"], batch["shifts"], batch["ctf"]).cpu().numpy()
        mask = self.image_model.loss_mask.cpu().numpy()
        image_grid(folder / "input_image.png", self.image_model.target(batch["images"]).cpu().numpy(), mask, "low-passed particles")
        image_grid(folder / "pred_image.png", pred, mask, "predicted (CTF, low-pass, shift)")
