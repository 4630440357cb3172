"""Trainer of the deformation stages (residue and bead level).

The stage supplies the node graph and its priors; :class:`TrainingLoop` supplies the optimisation
loop.  This module adds the image loss of the deformed model, the reference-initialisation stage,
encoding (and refining) the latents of all particles and the held-out image loss; structures and
figures come from evaluation hooks.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from cryodyna.assembly.priors import PriorSet
from cryodyna.config.schema import DeformationOptimConfig
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.runs.layout import evaluation_file
from cryodyna.structure.graph import NodeGraph
from cryodyna.models.deformation import DeformationModel
from cryodyna import distributed
from cryodyna.imaging.image_model import ImageModel, to_box
from cryodyna.train.loop import TrainingLoop, adamw
from cryodyna.train.poses import PoseSpectra, image_model_spectra
from cryodyna.data.particles import PreparedParticles
from cryodyna.train.latent_posterior import draw_candidates, posterior_latents

log = logging.getLogger("cryodyna")


class DeformationTrainer(TrainingLoop):
    """Train a :class:`DeformationModel` on prepared particles (see :class:`TrainingLoop`); evaluation
    latents are gathered across processes in particle order."""

    def __init__(self, priors: PriorSet, graph: NodeGraph, model: DeformationModel, image_model: ImageModel,
                 particles: PreparedParticles, optim: DeformationOptimConfig, run_dir: Path, image_weight: float = 1.0,
                 context_dropout: float = 0.5, table=None, subset: np.ndarray | None = None, hooks=(),
                 encoder_input: str = "image"):
        unused = context_dropout > 0 and model.encoder.uses_context  # context parameters idle without context
        super().__init__(model, particles, optim, run_dir, find_unused_parameters=unused, table=table, subset=subset,
                         hooks=hooks)
        self.priors, self.graph, self.image_model = priors, graph, image_model.to(self.device)
        self.last_coords: torch.Tensor | None = None
        self.encoder_latents: np.ndarray | None = None  # of the last evaluation, when posterior means replaced them
        self.loss_function = self._loss_terms
        if optim.compile:
            self.loss_function = torch.compile(self._loss_terms, fullgraph=True, dynamic=False, backend=optim.compile_backend)
        self.image_weight, self.context_dropout, self.encoder_input = image_weight, context_dropout, encoder_input
        self.gradient_model = self.image_model.band_limited() if encoder_input == "gradient" else None  # smallest box

    def losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted image loss plus the priors.  With probability ``context_dropout`` the
        images are encoded without cross-view attention (drawn here, outside the loss function, from
        the CPU generator: the same draw on all ranks, no device synchronisation).  The priors'
        neighbour lists are refreshed here when due, from the previous step's structures."""
        context = bool(torch.rand(()) >= self.context_dropout)
        self.priors.prepare(self.model.reference.unsqueeze(0) if self.last_coords is None else self.last_coords, self.step)
        self._coarse_to_fine()
        view = self.encoder_view(batch["images"], batch["poses"], batch["ctf"])  # not compiled: it may take a gradient
        total, values, self.last_coords = self.loss_function(view, batch["images"], batch["poses"], batch["ctf"], context)
        return total, values

    def _coarse_to_fine(self) -> None:
        """With ``optim.lowpass_start_factor``, the image model's low-pass at this step: from that
        multiple of the model's own resolution to it, linearly in spatial frequency over
        ``optim.lowpass_ramp_epochs``; after the ramp the filter is left as its last step set it (a
        run resumed beyond it starts with the model's own)."""
        factor, final = self.cfg.lowpass_start_factor, self.image_model.lowpass
        ramp = self.cfg.lowpass_ramp_epochs * self.steps_per_epoch
        if factor is None or final is None or self.step > math.ceil(ramp):
            return
        t = min(1.0, self.step / ramp)
        self.image_model.set_filter_resolution(1.0 / ((1 - t) / (factor * final) + t / final))

    def _loss_terms(self, view: torch.Tensor, images: torch.Tensor, poses: PoseBatch, ctf: CTFParams,
                    context: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(total, detached terms, detached coordinates (B, N, 3)) of one batch of images (B, D, D),
        encoded from their :meth:`encoder_view` ``view``.  Static shapes and no host synchronisation (networks, image model,
        priors and release), so ``optim.compile`` compiles it whole (``fullgraph=True``)."""
        with self._autocast():
            _, coords = self.net(view, context=context)
        pred = self.image_model.predict(coords, poses, ctf)
        image_loss = self.image_model.loss(pred, self.image_model.target(images))
        total = self.image_weight * image_loss
        values = {"image": image_loss.detach()}
        gather = distributed.gather_rows if self.world > 1 else None
        for name, (weight, value) in self.priors(coords, gather).items():
            total = total + weight * value
            values[name] = value.detach()
        values["total"] = total.detach()
        return total, values, coords.detach()

    @torch.no_grad()
    def pose_spectra(self, batch: dict) -> PoseSpectra:
        """The images' and this step's decoded structures' spectra (:func:`image_model_spectra`)."""
        return image_model_spectra(self.image_model, self.last_coords, batch["images"], batch["ctf"])

    @torch.no_grad()
    def encoder_view(self, images: torch.Tensor, poses: PoseBatch, ctf: CTFParams) -> torch.Tensor:
        """What the encoder sees of images (B, D, D): the images themselves; with
        ``model.encoder_input=residual`` the images minus the reference model's prediction in
        their pose and CTF (least-squares scaled per image): what the reference does not explain;
        with ``gradient`` the direction (B, 3N) in which each image pulls the reference's nodes
        (minus the gradient of its image loss at the reference, map frame, scaled to unit RMS per
        image): a feature of the molecule's frame, whatever the particle's pose."""
        if self.encoder_input == "image":
            return images
        reference = self.model.reference.expand(len(images), -1, -1)
        if self.encoder_input == "gradient":
            small, box = self.gradient_model
            pull = small.pull(reference, *to_box(images, poses, box), ctf).flatten(1)
            return pull / pull.square().mean(1, keepdim=True).sqrt().clamp_min(1e-20)
        ref = self.image_model.predict(reference, poses, ctf)
        scale = (images * ref).sum((-2, -1)) / ref.square().sum((-2, -1)).clamp_min(1e-12)
        return images - scale[:, None, None] * ref

    def reference_init(self, max_epochs: int = 3, tolerance: float = 1e-4) -> int:
        """The reference method's init stage: train encoder + decoder so that the displacements of
        real images vanish (loss = mean squared displacement, Å^2), at most ``max_epochs`` epochs,
        stopping when the mean of the last 20 losses is below ``tolerance``.  Returns the steps run."""
        self.model.train()
        recent: list[float] = []
        steps = 0
        optimizer = adamw(self.model.parameters(), self.cfg, self.device)
        for epoch in range(max_epochs):
            order = self._epoch_order(-1 - epoch)
            for b in range(self.steps_per_epoch):
                batch = self.data.batch(self._batch_indices(order, b), self.device)
                with self._autocast():
                    delta = (self.net(self.encoder_view(batch["images"], batch["poses"], batch["ctf"]))[1] - self.model.reference).float()
                loss = delta.square().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                recent = (recent + [float(loss.detach())])[-20:]
                if np.mean(recent) <= tolerance:
                    log.info("reference init converged after %d steps (mean squared displacement %.2e)", steps, np.mean(recent))
                    return steps
        log.info("reference init stopped after %d steps (mean squared displacement %.2e)", steps, np.mean(recent))
        return steps

    # ----------------------------------------------------------------- evaluation
    def _shard(self) -> tuple[int, int, int]:
        """(lo, hi, shard size) of this process's contiguous share of the particles."""
        n = len(self.data)
        shard = -(-n // self.world)
        return min(self.rank * shard, n), min((self.rank + 1) * shard, n), shard

    def _gather_shards(self, mine: torch.Tensor) -> np.ndarray:
        """Rows of every process's shard, in particle order (N_particles, C)."""
        padded = torch.zeros(self._shard()[2], mine.shape[1], device=self.device)
        padded[: len(mine)] = mine
        return distributed.gather_rows(padded)[: len(self.data)].cpu().numpy()

    @torch.no_grad()
    def encode_all(self) -> np.ndarray:
        """Latents (N_particles, z_dim) in particle order.  Each image is encoded alone (eval mode,
        no cross-view attention), so a particle's latent does not depend on the batch size, the
        order or the number of processes; each rank encodes a contiguous shard."""
        self.model.eval()
        lo, hi, _ = self._shard()
        out = [torch.zeros(0, self.model.encoder.z_dim, device=self.device)]
        for start in range(lo, hi, self.batch_size):
            idx = torch.arange(start, min(start + self.batch_size, hi))
            batch = self.data.batch(idx, self.device)
            with self._autocast():
                out.append(self.model.encode(self.encoder_view(batch["images"], batch["poses"], batch["ctf"]), context=False).float())
        return self._gather_shards(torch.cat(out))

    def posterior_all(self, z: np.ndarray) -> np.ndarray:
        """Posterior-mean latents (:func:`posterior_latents`) over each particle's own latent and
        ``optim.posterior_candidates`` latents drawn from the particles of the training pool (all, or
        the subset trained on); each rank does its shard."""
        lo, hi, _ = self._shard()
        zt = torch.as_tensor(z, device=self.device)
        pool = torch.as_tensor(np.sort(np.concatenate([self.train_idx, self.holdout_idx])), device=self.device)
        candidates = draw_candidates(zt[pool], self.cfg.posterior_candidates, self.cfg.seed)
        mean, effective = posterior_latents(self.model, self.image_model, zt[lo:hi], candidates,
                                            lambda rows: self.batch(rows + lo))
        self.model.train()
        log.info("posterior-mean latents over %d candidates: median effective number of candidates %.1f",
                 len(candidates) + 1, float(np.median(self._gather_shards(effective[:, None].float())[:, 0])))
        return self._gather_shards(mean.float())

    @torch.no_grad()
    def image_losses(self, idx: np.ndarray, z: np.ndarray) -> float:
        """Mean image loss of particles ``idx`` with their latents ``z`` (full rows)."""
        losses = []
        for start in range(0, len(idx), 256):
            sel = torch.as_tensor(idx[start : start + 256])
            batch = self.batch(sel)
            coords = self.model.decode(torch.as_tensor(z[sel.numpy()], device=self.device))
            pred = self.image_model.predict(coords, batch["poses"], batch["ctf"])
            losses.append(self.image_model.loss(pred, self.image_model.target(batch["images"]), reduce=False).cpu())
        return float(torch.cat(losses).mean()) if losses else float("nan")

    def evaluation_inputs(self, final: bool) -> np.ndarray:
        """All latents; at the final evaluation their posterior means when ``optim.posterior_candidates`` > 0
        (the encoder's are then kept for :meth:`write_evaluation`)."""
        z = self.encode_all()
        self.encoder_latents = z if final and self.cfg.posterior_candidates > 0 else None
        return z if self.encoder_latents is None else self.posterior_all(z)

    def write_evaluation(self, folder: Path, z: np.ndarray) -> dict[str, float]:
        """``z.npy`` (one latent per particle, in particle order) and, where they differ, the encoder's
        ``z_encoder.npy``; returns the held-out and training image losses."""
        np.save(evaluation_file(folder, "latents"), z.astype(np.float32))
        if self.encoder_latents is not None:
            np.save(evaluation_file(folder, "encoder_latents"), self.encoder_latents.astype(np.float32))
        return {"holdout_image_loss": self.image_losses(self.holdout_idx, z),
                "train_image_loss": self.image_losses(self.train_idx[: max(len(self.holdout_idx), 256)], z)}
