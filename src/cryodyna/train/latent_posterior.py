"""Posterior-mean latents: each particle's latent replaced by its posterior mean over the latents of
the dataset, with the decoder fixed (closing the encoder's amortisation gap without fitting noise).

For particle ``i`` the candidates are its own encoder latent and ``K`` latents of other particles,
drawn once from all particles' encoder latents: samples of the dataset's own distribution of
conformations, i.e. of the prior.  Each candidate is decoded once, rendered in the particle's pose
and CTF and compared with its image over the Fourier coefficients of the image model's low-pass
(weights :meth:`~cryodyna.imaging.image_model.ImageModel.spectrum_weights`; on the smallest box that
holds them, :meth:`~cryodyna.imaging.image_model.ImageModel.band_limited`): ``RSS_ic``, the
weighted squared residual after the least-squares amplitude.  White noise of variance ``s_i^2`` per
coefficient gives the likelihood ``exp(-RSS_ic / s_i^2)``; ``s_i^2`` is the best candidate's residual
per coefficient (what the model cannot describe counts as noise).  The new latent is
``sum_c w_ic z_c`` with ``w_ic = softmax_c(-RSS_ic / s_i^2)``.

A per-particle optimum of the image loss fits the noise (``benchmarks/accuracy.py``: gradient
refinement of each latent made the structures worse); the posterior mean averages over the
conformations the image cannot tell apart.  A particle's result depends on its image and the
candidates only, not on the batch or the number of processes.
"""

from __future__ import annotations

from typing import Callable

import torch

from cryodyna.imaging.image_model import ImageModel, to_box
from cryodyna.imaging.loss import scaled_residual
from cryodyna.models.deformation import DeformationModel


def draw_candidates(z: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """``k`` rows of all particles' latents ``z`` (N, z_dim), drawn without replacement with a fixed
    seed (the same on every process) -> (min(k, N), z_dim)."""
    g = torch.Generator().manual_seed(seed)
    return z[torch.randperm(len(z), generator=g)[: min(k, len(z))].to(z.device)]


@torch.no_grad()
def posterior_latents(model: DeformationModel, image_model: ImageModel, z: torch.Tensor, candidates: torch.Tensor,
                      batch_fn: Callable[[torch.Tensor], dict], chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior-mean latents of the particles whose encoder latents are ``z`` (P, z_dim).

    candidates: (K, z_dim) latents of the dataset; batch_fn(rows) -> batch dict with ``images``
    (b, D, D), ``poses``, ``ctf`` of rows ``rows`` (indices into ``z``); chunk: particles rendered
    together (b x (K+1) images).  Returns (latents (P, z_dim), effective number of candidates (P,):
    ``1 / sum_c w_ic^2``, from 1 for a sharp posterior to K+1 for a flat one).
    """
    model.eval()
    image_model, box = image_model.band_limited()
    weights = image_model.spectrum_weights().flatten()
    structures = model.decode(candidates)  # (K, N, 3), shared by all particles
    out, effective = [], []
    for start in range(0, len(z), chunk):
        rows = torch.arange(start, min(start + chunk, len(z)))
        batch = batch_fn(rows)
        images, poses = to_box(batch["images"], batch["poses"], box)
        b, k = len(rows), len(candidates) + 1
        options = torch.cat([z[rows, None], candidates.expand(b, -1, -1)], 1)  # (b, K+1, z_dim)
        coords = torch.cat([model.decode(z[rows])[:, None], structures.expand(b, -1, -1, -1)], 1)
        each = torch.arange(b).repeat_interleave(k)
        predicted = image_model.predict_spectrum(coords.flatten(0, 1), poses[each], batch["ctf"][each])
        predicted = predicted.flatten(1).view(b, k, -1)  # (b, K+1, G)
        observed = image_model.formation.spectrum(images).flatten(1)[:, None]  # (b, 1, G)
        rss = (weights * scaled_residual(predicted, observed, weights)[1].abs().square()).sum(-1).double()  # (b, K+1)
        noise = (rss.min(1, keepdim=True).values / weights.sum()).clamp_min(1e-30)
        w = torch.softmax(-(rss - rss.min(1, keepdim=True).values) / noise, 1).to(z.dtype)
        out.append((w[..., None] * options).sum(1))
        effective.append(1 / w.square().sum(1))
    return torch.cat(out), torch.cat(effective)
