"""The optimisation loop shared by every training stage.

A stage subclasses :class:`TrainingLoop` and supplies ``losses(batch)`` (the loss of one batch) and
``write_evaluation(folder, inputs)`` (its per-evaluation outputs); evaluation hooks given by the
caller (:class:`EvaluationHook`: structures, figures, the run report) add theirs.  This module does the rest: data
order, held-out particles, AdamW with warm-up/cosine, clipping, autocast, non-finite-step handling,
metrics, ``progress.json``, atomic checkpoints with resume, and atomic evaluation folders.  Under
torchrun every process takes ``batch_size`` particles of each global batch and DDP averages the
gradients; only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cryodyna import distributed
from cryodyna.config.schema import OptimConfig
from cryodyna.data.batches import iterate_batches
from cryodyna.data.particles import PreparedParticles
from cryodyna.errors import TrainingError, TrainingInterrupted
from cryodyna.io.particles import ParticleTable
from cryodyna.runs.checkpoint import link_atomic, load_model_state, read_checkpoint, rng_state, save_atomic, set_rng_state
from cryodyna.runs.layout import RunFolder, evaluation_file
from cryodyna.train.metrics import MetricsWriter
from cryodyna.train.poses import PoseCorrections, PoseSpectra
from cryodyna.train.runtime import configure_cpu
from cryodyna.train.signals import interrupt_signals
from cryodyna.train.spikes import SpikeGuard
from cryodyna.train.status import RunStatus, duration, resume_hint, signal_name
from cryodyna.threads import ThreadGovernor, choose_threads

log = logging.getLogger("cryodyna")

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class EvaluationHook(Protocol):
    """Outputs added to every evaluation by the command that runs the training (rank 0 only)."""

    def write(self, trainer: "TrainingLoop", folder: Path, inputs) -> dict[str, float] | None:
        """Write into the evaluation ``folder`` (not yet in place) from the stage's evaluation
        ``inputs``; return extra metrics or None."""

    def after(self, trainer: "TrainingLoop", folder: Path) -> None:
        """Called once the evaluation ``folder`` is in place."""


def holdout_split(n: int, fraction: float, seed: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of particle indices (all ``n``, or only those of ``subset``) into (train,
    holdout), both sorted."""
    pool = np.arange(n) if subset is None else np.asarray(subset, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(pool)
    k = int(round(len(pool) * fraction)) if len(pool) > 1 else 0
    return np.sort(perm[k:]), np.sort(perm[:k])


def adamw(params, optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the configured rate and decay; the fused kernel (one pass over all parameters
    instead of a dozen per-tensor passes) where torch has it (CPU and CUDA)."""
    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=device.type in ("cpu", "cuda"))


class TrainingLoop:
    """Train ``model`` on prepared particles, writing to ``run_dir`` (``checkpoints/last.pt``,
    ``metrics.csv``, ``progress.json``, evaluation folders ``epoch-NNNN_step-NNNNNNN/``).

    find_unused_parameters: passed to DDP (parameters that some steps leave idle); table: the
    particle file's rows (written back with refined poses when ``optim.refine_poses``); subset:
    the particles to train on (and hold out from), e.g. one half-set; None = all.  Evaluations
    still cover every particle.
    """

    def __init__(self, model: torch.nn.Module, particles: PreparedParticles, optim: OptimConfig, run_dir: Path,
                 find_unused_parameters: bool = False, table: ParticleTable | None = None, subset: np.ndarray | None = None,
                 hooks: Sequence[EvaluationHook] = ()):
        self.model, self.data, self.table, self.hooks = model, particles, table, list(hooks)
        self.cfg, self.run_dir, self.folder = optim, Path(run_dir), RunFolder(run_dir)
        configure_cpu()
        self.device = distributed.resolve_device(optim.device)
        self.model.to(self.device)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.threads = choose_threads(optim.threads)
        self.governor = ThreadGovernor(self.threads.threads, self.threads.limit,
                                       enabled=not optim.threads and self.device.type == "cpu" and self.world == 1)
        self.main = self.rank == 0
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters)
        if self.device.type == "cuda" and optim.images_on_device is not False:
            free = torch.cuda.mem_get_info(self.device)[0]
            if optim.images_on_device or particles.image_bytes < 0.3 * free:
                particles.images_to(self.device)
        self.train_idx, self.holdout_idx = holdout_split(len(particles), optim.holdout_fraction, optim.seed, subset)
        self.batch_size = max(1, min(optim.batch_size, len(self.train_idx) // self.world))
        self.steps_per_epoch = max(1, len(self.train_idx) // (self.batch_size * self.world))
        self.total_steps = self.steps_per_epoch * optim.epochs
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = adamw(params, optim, self.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=optim.precision == "fp16")
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.skipped_steps, self.bad_steps = 0, 0
        self.spikes = SpikeGuard(optim.spike_factor)
        self.metrics = MetricsWriter(self.folder.metrics) if self.main else None
        if self.main:
            for stale in self.folder.unfinished_evaluations():  # an evaluation interrupted by a crash
                shutil.rmtree(stale, ignore_errors=True)
        self.ckpt_path = self.folder.last_checkpoint
        self.poses = PoseCorrections(len(particles), optim, particles.apix, self.device) if optim.refine_poses else None
        self.status = RunStatus(self.folder.progress, self.main)  # progress.json; filled by fit()

    # ----------------------------------------------------------------- what a stage supplies
    def losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss to minimise, detached named values for the metrics) of one batch."""
        raise NotImplementedError

    def pose_spectra(self, batch: dict) -> PoseSpectra:
        """The model and observed spectra of ``batch`` (corrected poses) for the pose refinement,
        from this step's networks (``optim.refine_poses``)."""
        raise NotImplementedError

    def evaluation_inputs(self, final: bool):
        """Run on every rank before an evaluation (e.g. encode all particles); the result is passed
        to :meth:`write_evaluation` on rank 0.  ``final``: the last evaluation of the run."""
        return None

    def write_evaluation(self, folder: Path, inputs) -> dict[str, float]:
        """Write the evaluation outputs into ``folder`` (rank 0); return metrics to log."""
        raise NotImplementedError

    def _lr_factor(self, step: int) -> float:
        c = self.cfg
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        if c.lr_drop_epochs and step >= self.total_steps - c.lr_drop_epochs * self.steps_per_epoch:
            warm *= c.lr_drop_factor
        if not c.cosine_schedule:
            return warm
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, self.total_steps))))
        return warm * (c.lr_final_fraction + (1 - c.lr_final_fraction) * cosine)

    # ----------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "skipped_steps": self.skipped_steps, "holdout": self.holdout_idx, "rng": rng_state(),
            "image_scale": self.data.scale, "spikes": self.spikes.state_dict(),
            **({"poses": self.poses.state_dict()} if self.poses is not None else {}),
        }

    def save(self) -> None:
        if self.main:
            save_atomic(self.state(), self.ckpt_path)

    def load(self, path: Path) -> None:
        """Resume from a checkpoint written by :meth:`save` (model, optimiser, schedule, counters, RNG)."""
        state = read_checkpoint(path, self.device)
        load_model_state(self.model, state["model"], path)
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            self.skipped_steps = state["skipped_steps"]
            if "spikes" in state:
                self.spikes.load_state_dict(state["spikes"])
            set_rng_state(state["rng"])
        if self.poses is not None and "poses" in state:
            self.poses.load_state_dict(state["poses"])
        log.info("resuming at step %d, epoch %s (%s)", self.step, self._epoch_label(), path)

    # ----------------------------------------------------------------- training
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch)
        return torch.as_tensor(self.train_idx)[torch.randperm(len(self.train_idx), generator=g)]

    def _batch_indices(self, order: torch.Tensor, b: int) -> torch.Tensor:
        """This process's share of global batch ``b`` of an epoch order (same order on all ranks)."""
        start = (b * self.world + self.rank) * self.batch_size
        return order[start : start + self.batch_size]

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Particles ``idx`` on the device, with the refined poses when ``optim.refine_poses``."""
        batch = self.data.batch(idx, self.device)
        return batch if self.poses is None else self.poses.apply(batch)

    def _autocast(self):
        dtype = AUTOCAST[self.cfg.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the (detached) loss values.

        A step whose loss or gradient is not finite is skipped (parameters untouched) and counted;
        after ``max_bad_steps`` consecutive bad steps a :class:`TrainingError` stops the run.  A
        gradient far above the recent ones is scaled down (:class:`SpikeGuard`, ``optim.spike_factor``).
        """
        self.model.train()
        given = batch
        if self.poses is not None:
            batch = self.poses.apply(batch)
        total, values = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        spike_limit = self.spikes.limit()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), min(self.cfg.grad_clip or math.inf, spike_limit))
        finite = bool(torch.isfinite(total)) and (self.scaler.is_enabled() or bool(torch.isfinite(norm)))
        finite = not distributed.any_rank(not finite, self.device)
        if self.poses is not None and self.epoch >= self.cfg.pose_warmup_epochs:
            self.poses.update(given, self.pose_spectra(batch))
        if finite:
            self.scaler.step(self.optimizer)
            self.spikes.record(float(norm), spike_limit)
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
        epochs, within epochs every ``eval_every_minutes`` / ``eval_every_steps`` (when set) and at
        the end; stops early after ``time_limit_minutes``.  SIGINT/SIGTERM stop it at the next step
        with a checkpoint and raise :class:`TrainingInterrupted`.  ``progress.json`` says ``running``, ``evaluating``, ``interrupted``, ``failed``, ``stopped`` (time limit) or
        ``finished``.  Returns the last evaluation folder."""
        self.status.start(step=self.step, total_steps=self.total_steps, epoch=self.epoch, epochs=self.cfg.epochs)
        used = len(self.train_idx) + len(self.holdout_idx)
        log.info("training %s particles (%d held out) of %d px at %.3g Å/px on %s%s (%d CPU threads: %s): epochs %d-%d "
                 "of %d, %d steps of %d particles; output %s", used if used == len(self.data) else f"{used} of {len(self.data)}",
                 len(self.holdout_idx), self.data.d, self.data.apix, self.device,
                 f" x {self.world} processes" if self.world > 1 else "", self.threads.threads, self.threads.reason,
                 self.epoch + 1, self.cfg.epochs,
                 self.cfg.epochs, self.total_steps - self.step, self.batch_size * self.world, self.run_dir)
        with interrupt_signals() as received:
            try:
                folder = self._train(time_limit_minutes, received)
            except TrainingInterrupted:
                self.status.set("interrupted", step=self.step, epoch=self.epoch)
                raise
            except BaseException:
                self.status.set("failed", step=self.step, epoch=self.epoch)
                raise
        self.status.set("finished" if self.epoch >= self.cfg.epochs else "stopped", step=self.step, epoch=self.epoch)
        return folder

    def _train(self, time_limit_minutes: float | None, received: list[int]) -> Path | None:
        start = evaluated = time.perf_counter()
        last_eval = None
        running: dict[str, float] = {}
        n_run = 0
        seen = 0
        stop = False
        plain_every = max(20, self.total_steps // 50 // 20 * 20)  # progress lines in logs of batch jobs (no terminal)
        with Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      disable=not self.main) as progress:
            bar = progress.add_task("train", total=self.total_steps, completed=self.step, epoch=self._epoch_label(), losses="")
            while self.epoch < self.cfg.epochs and not stop:
                order = self._epoch_order(self.epoch)
                remaining = [self._batch_indices(order, b) for b in range(self.batch_in_epoch, self.steps_per_epoch)]
                for batch in iterate_batches(self.data, remaining, self.device, self.cfg.loader_workers):
                    began = time.perf_counter()
                    values = self.train_step(batch)
                    self.governor.step_done(time.perf_counter() - began)
                    self.batch_in_epoch += 1
                    seen += len(batch["index"]) * self.world
                    for k, v in values.items():
                        running[k] = running.get(k, 0.0) + v  # tensors: no device sync per step
                    n_run += 1
                    if self.main and (self.step % 20 == 0 or self.batch_in_epoch == self.steps_per_epoch):
                        means = {k: float(v) / n_run for k, v in running.items()}
                        means["skipped_steps"] = float(self.skipped_steps)
                        means["capped_steps"] = float(self.spikes.capped_steps)
                        means["lr"] = self.scheduler.get_last_lr()[0]
                        means["images_per_s"] = seen / (time.perf_counter() - start)
                        self.metrics.write(self.step, self.epoch, "train", means)
                        self.status.progress(self.step, self.total_steps, self.epoch, self.cfg.epochs, means,
                                             seen / (time.perf_counter() - start) / self.batch_size)
                        losses = " ".join(f"{k} {v:.4f}" for k, v in means.items() if k in ("total", "image", "fourier_mse"))
                        progress.update(bar, completed=self.step, epoch=self._epoch_label(), losses=losses)
                        if not progress.console.is_terminal and self.step % plain_every < 20:
                            log.info("epoch %s, step %d/%d: %s, %.0f images/s, %s left", self._epoch_label(), self.step,
                                     self.total_steps, losses, means["images_per_s"],
                                     duration(self.status.fields.get("eta_s", 0)))
                        running, n_run = {}, 0
                    if self.step % self.cfg.checkpoint_every == 0:
                        self.save()
                    now = time.perf_counter()
                    late = time_limit_minutes is not None and now - start > 60 * time_limit_minutes
                    every = self.cfg.eval_every_steps
                    due = ((0 < 60 * self.cfg.eval_every_minutes < now - evaluated or (every > 0 and self.step % every == 0))
                           and self.batch_in_epoch < self.steps_per_epoch)
                    reason = distributed.max_rank(2.0 if received else 1.0 if late else 0.5 if due else 0.0, self.device)
                    if reason == 0.5:  # a scheduled evaluation within the epoch
                        self.save()
                        last_eval, evaluated = self.evaluate(), time.perf_counter()
                    if reason == 2.0:
                        self.save()
                        raise TrainingInterrupted(self._interrupted_message(received))
                    if reason == 1.0:
                        stop = True
                        break
                if not stop:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                final = stop or self.epoch == self.cfg.epochs
                if final or self.epoch % self.cfg.eval_every == 0:
                    self.save()
                    last_eval, evaluated = self.evaluate(final), time.perf_counter()
        return last_eval

    def _epoch_label(self) -> str:
        """The epoch being trained, numbered like the evaluation folders (the first is 1)."""
        return f"{min(self.epoch + 1, self.cfg.epochs)}/{self.cfg.epochs}"

    def _interrupted_message(self, received: list[int]) -> str:
        return (f"interrupted by {signal_name(received)} at epoch {self._epoch_label()}, step {self.step}; checkpoint "
                f"saved to {self.ckpt_path}. resume with: {resume_hint(self.folder.history, self.run_dir)}")

    def resume_or_start(self, resume: Path | None) -> bool:
        """Load ``resume``, else ``checkpoints/last.pt`` when it exists; True when something was loaded."""
        start_from = resume or (self.ckpt_path if self.ckpt_path.exists() else None)
        if start_from is not None:
            self.load(Path(start_from))
        return start_from is not None

    def run(self, eval_only: bool = False, time_limit_minutes: float | None = None) -> Path | None:
        """One evaluation (``eval_only``) or :meth:`fit`; returns the last evaluation folder.  A run
        that had already reached ``optim.epochs`` returns its final evaluation, written now when it
        is missing (the run was stopped while writing it)."""
        if eval_only:
            return self.evaluate(final=True)
        folder = self.fit(time_limit_minutes)
        if folder is None:
            folder = self.run_dir / self.folder.evaluation_name(self.epoch, self.step)
            if folder.is_dir():
                log.info("nothing to train: the run already reached %d epochs", self.cfg.epochs)
            else:
                log.info("the run reached %d epochs but its final evaluation is missing (stopped while writing it): "
                         "evaluating now", self.cfg.epochs)
                folder = self.evaluate(final=True)
        return folder

    def _prune_checkpoints(self) -> None:
        """Delete ``ckpt.pt`` from evaluation folders other than the newest ``optim.keep_checkpoints``
        and the one with the lowest held-out loss (``evaluation.json``); ``all`` keeps every one."""
        keep = self.cfg.keep_checkpoints
        if keep == "all":
            return
        ckpts = self.folder.evaluation_checkpoints()

        def holdout(ckpt: Path) -> float:
            record = evaluation_file(ckpt.parent, "metrics")
            values = json.loads(record.read_text()) if record.is_file() else {}
            losses = [v for k, v in values.items() if k.startswith("holdout") and math.isfinite(v)]
            return losses[0] if losses else math.inf

        best = min(ckpts, key=holdout, default=None)
        for ckpt in ckpts[: max(0, len(ckpts) - keep)]:
            if ckpt != best or holdout(best) == math.inf:
                ckpt.unlink()

    def evaluate(self, final: bool = False) -> Path:
        """Write one evaluation folder atomically (built under a temporary name, then renamed), with
        the stage's outputs and ``ckpt.pt``; ``final`` marks the run's last evaluation."""
        epoch = self.epoch + (self.batch_in_epoch > 0)  # a time-limit stop is named after the epoch it interrupted
        name = self.folder.evaluation_name(epoch, self.step)
        if self.main:
            log.info("evaluating epoch %d (latents of all %d particles, structures, plots)", epoch, len(self.data))
        status = self.status.status
        if status is not None:
            self.status.set("evaluating")
        began = time.perf_counter()
        inputs = self.evaluation_inputs(final)
        latents_s = time.perf_counter() - began
        folder = self.run_dir / name
        if not self.main:
            distributed.barrier()
            return folder
        tmp = self.folder.evaluation_tmp(epoch, self.step)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        metrics = self.write_evaluation(tmp, inputs)
        for hook in self.hooks:
            metrics.update(hook.write(self, tmp, inputs) or {})
        if self.poses is not None:
            metrics.update(self.poses.write_evaluation(tmp, self.table, self.data.apix))
        self.metrics.write(self.step, self.epoch, "eval", metrics)
        save_atomic(self.state(), evaluation_file(tmp, "checkpoint"))
        evaluation_file(tmp, "metrics").write_text(json.dumps(metrics, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        link_atomic(self.folder.latest, folder.name)
        log.info("evaluation written to %s in %.1f s (latents of all particles %.1f s) (%s)", folder, time.perf_counter() - began,
                 latents_s, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        self._prune_checkpoints()
        if status is not None:
            self.status.set(status)
        for hook in self.hooks:
            hook.after(self, folder)
        distributed.barrier()
        return folder
