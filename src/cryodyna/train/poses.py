"""Local pose refinement: per-particle rotation and shift corrections, estimated from each image.

Each particle ``i`` has a rotation vector ``w_i`` (rad, axis-angle) and a shift offset ``t_i`` (px),
both zero at the start.  The pose used in the image model is ``R_i' = Exp(w_i) R_i`` (a rotation in
the view frame) with the RELION origin ``s_i + t_i``.

A visit of a particle (one per epoch, after the warm-up) makes one Gauss-Newton step of its
correction ``x_i`` (5,) against its own image, with the networks fixed: the model spectrum ``P(x)``
of the particle (its decoded structure or volume slice, CTF and shift) and its derivatives by finite
differences give the weighted least-squares estimate ``m_i`` of the correction the image alone
prefers, and its noise covariance.  How much of ``m_i`` to trust is learnt from the whole dataset
(empirical Bayes): the Fourier coefficients are split into two halves whose noise is independent
(:func:`fourier_halves`), each half gives its own estimate ``m_A``, ``m_B``, and over all particles
``mean(m_A m_B)`` is the variance ``tau^2`` of the true pose errors (the noise cancels) while
``mean((m_A - m_B)^2)`` calibrates the noise variances ``V_i``.  The new correction is
the posterior mean ``tau^2 / (tau^2 + V_i) m_i`` per component.  So exact poses stay put (``tau``
-> 0), poses with real errors move as far as the images support, and nothing random-walks.
``optim.pose_prior_deg`` / ``pose_prior_a`` bound ``tau`` and each step.

Under DDP every process sends the updated rows of its batch to all, so the tables stay identical
everywhere and rank 0's checkpoint holds them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cryodyna.config.schema import OptimConfig
from cryodyna.io.particles import ParticleTable
from cryodyna.io.star import write_star_with_poses
from cryodyna.runs.layout import evaluation_file
from cryodyna.imaging.batches import PoseBatch
from cryodyna.imaging.loss import scaled_residual
from cryodyna.imaging.rotations import rotvec_to_matrix_torch
from cryodyna import distributed

STEPS = (1e-3,) * 3 + (2e-2,) * 2  # finite-difference steps: rad, px
MIN_PARTICLES = 64  # particles measured before tau is estimated from the data (the bound until then)
TAU_FLOOR = 0.02  # smallest tau, as a fraction of its bound
GROUPS = (slice(0, 3), slice(3, 5))  # rotation components, shift components
OUTLIER = 4.0  # half-set estimates are clipped to this many bounds before they enter tau
WEDGES = 4  # angular sectors of the Fourier plane (over 180 degrees), alternately in either half
GUARD = 1.5  # Fourier px: coefficients this close to a sector edge, or to the origin (x 2), are in neither half


@dataclass
class PoseSpectra:
    """A batch's side of the pose fit, given by the trainer.

    predict: corrected poses (B) -> complex model spectra (B, G) with the networks' current output;
    observed: complex (B, G) spectra of the images on the same G coefficients; weights: (G,) >= 0 (0
    excludes a coefficient, e.g. the zero frequency); halves: (G,) int, the half (0 or 1) of each
    coefficient, -1 for neither (:func:`fourier_halves`).
    """

    predict: Callable[[PoseBatch], torch.Tensor]
    observed: torch.Tensor
    weights: torch.Tensor
    halves: torch.Tensor


def fourier_halves(frequencies: torch.Tensor, d: int) -> torch.Tensor:
    """Half (0 or 1) of each coefficient for :class:`PoseSpectra`, -1 for neither: frequencies
    (2, ...) cycles/px of a D-px image -> int (...).  The halves are alternate angular sectors
    (``WEDGES`` over 180 degrees; a pair ``k``, ``-k`` shares its half), without the coefficients within
    ``GUARD`` Fourier px of a sector edge or ``2 GUARD`` of the origin.  The particles are masked in
    real space, which correlates the noise of neighbouring coefficients: the half estimates of a
    checkerboard split, from masked pure noise, correlate by about 0.4 (taken for a pose error that
    moved exact poses by 2 degrees); sectors apart by the guard band do not correlate."""
    k = frequencies * d
    radius = k.square().sum(0).sqrt()
    sector = torch.atan2(k[1], k[0]) % torch.pi / (torch.pi / WEDGES)
    edge = torch.minimum(sector - sector.floor(), sector.ceil() - sector) * (torch.pi / WEDGES)
    guarded = (radius * torch.sin(edge) < GUARD) | (radius < 2 * GUARD)
    return torch.where(guarded, -1, sector.floor().long() % 2)


def image_model_spectra(image_model, coords: torch.Tensor, images: torch.Tensor, ctf) -> PoseSpectra:
    """:class:`PoseSpectra` of the Gaussian image model
    (:class:`~cryodyna.imaging.image_model.ImageModel`): half spectra (B, D*(D//2+1)) of ``images``
    (B, D, D) and of the structures ``coords`` (B, N, 3) Å in a given pose, weighted by the model's
    low-pass (squared, as it acts on both), zero frequency excluded."""
    formation = image_model.formation
    return PoseSpectra(lambda poses: image_model.predict_spectrum(coords, poses, ctf).flatten(1),
                       formation.spectrum(images.float()).flatten(1), image_model.spectrum_weights().flatten(),
                       fourier_halves(formation.transfer.frequencies, image_model.d).flatten())


def _normal_equations(jac: torch.Tensor, residual: torch.Tensor, weights: torch.Tensor,
                      scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal matrix (B, 5, 5) and right-hand side (B, 5) of the weighted least-squares fit of
    ``residual`` (B, G) by ``scale * jac @ step`` (jac (B, 5, G) complex, weights (G,)); float64."""
    jw = jac * weights
    normal = scale[:, None, None].double() ** 2 * torch.einsum("bkg,blg->bkl", jw, jac.conj()).real.double()
    rhs = scale[:, None].double() * torch.einsum("bkg,bg->bk", jw.conj(), residual).real.double()
    return normal, rhs


def _solve(normal: torch.Tensor, rhs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Step (B, 5) and the diagonal of the inverse normal matrix (B, 5), lightly regularised."""
    eye = torch.eye(5, dtype=normal.dtype, device=normal.device)
    inverse = torch.linalg.inv(normal + 1e-9 * normal.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * eye)
    return (inverse @ rhs.unsqueeze(-1)).squeeze(-1), inverse.diagonal(dim1=1, dim2=2)


def _moments(stats: torch.Tensor) -> torch.Tensor:
    """Sums over particles (3, 5) float64 of m_A m_B, (m_A - m_B)^2 and V_A + V_B from their
    stats rows (P, 3, 5): what :meth:`PoseCorrections.prior_widths` needs."""
    s = stats.double()
    return torch.stack([(s[:, 0] * s[:, 1]).sum(0), (s[:, 0] - s[:, 1]).square().sum(0), s[:, 2].sum(0)])


class PoseCorrections:
    """Correction tables for ``n`` particles on ``device``; ``apix`` (Å/px) converts the Å settings
    of ``optim`` (``pose_prior_a``) to pixels."""

    def __init__(self, n: int, optim: OptimConfig, apix: float, device: torch.device):
        self.values = torch.zeros(n, 5, device=device)  # (w_x, w_y, w_z) rad, (t_x, t_y) px
        # per particle, from its last visit: the half-set estimates m_A, m_B and their noise variances V_A + V_B (uncalibrated)
        self.stats = torch.zeros(n, 3, 5, device=device)
        self.visits = torch.zeros(n, device=device)
        self.bound = torch.tensor([np.deg2rad(optim.pose_prior_deg)] * 3 + [optim.pose_prior_a / apix] * 2,
                                  device=device, dtype=torch.float64)
        self._sums = torch.zeros(3, 5, device=device, dtype=torch.float64)  # _moments of the measured rows, kept current
        self._measured = 0

    def apply(self, batch: dict) -> dict:
        """A copy of ``batch`` whose ``poses`` are the corrected poses (the input is left as it is)."""
        return dict(batch, poses=self._corrected(batch["poses"], self.values[batch["index"].to(self.values.device)]))

    @staticmethod
    def _corrected(poses: PoseBatch, x: torch.Tensor) -> PoseBatch:
        return PoseBatch(rotvec_to_matrix_torch(x[:, :3].float()) @ poses.rotations, poses.origins + x[:, 3:].float())

    def prior_widths(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(tau (5,), noise calibration (5,)) from the particles measured so far: the spread of the
        true corrections and the factor that turns the stored noise variances into measured ones."""
        if self._measured < MIN_PARTICLES:
            return self.bound.clone(), torch.ones_like(self.bound)
        tau, calibration = torch.empty_like(self.bound), torch.empty_like(self.bound)
        for g in GROUPS:
            product, difference, variance = self._sums[:, g].sum(1) / (self._measured * (g.stop - g.start))
            tau[g] = product.clamp_min(0).sqrt().clamp(TAU_FLOOR * self.bound[g][0], self.bound[g][0])
            calibration[g] = (difference / variance.clamp_min(1e-30)).clamp_min(1e-3)
        return tau, calibration

    def _recount(self) -> None:
        measured = self.visits > 0
        self._sums, self._measured = _moments(self.stats[measured]), int(measured.sum())

    @torch.no_grad()
    def update(self, batch: dict, spectra: PoseSpectra) -> None:
        """One Gauss-Newton visit of the particles of ``batch`` (given poses, ``index``) against
        their images; every process must call this, with equally sized batches."""
        rows = batch["index"].to(self.values.device)
        x = self.values[rows].double()
        poses = batch["poses"]
        base = spectra.predict(self._corrected(poses, x))
        jac = []
        for k, h in enumerate(STEPS):
            dx = torch.zeros_like(x)
            dx[:, k] = h
            jac.append((spectra.predict(self._corrected(poses, x + dx)) - base) / h)
        jac = torch.stack(jac, 1)
        w = spectra.weights.to(base.real.dtype)
        scale, residual = scaled_residual(base, spectra.observed, w)
        noise = (w * residual.abs().square()).sum(-1).double() / w.sum()  # per-coefficient power (B,)
        (step_a, var_a), (step_b, var_b), (step, var) = (_solve(*_normal_equations(jac, residual, w * part, scale)) for part in
                                                         (spectra.halves == 0, spectra.halves == 1, 1))
        m, v = x + step, noise[:, None] * var
        limit = OUTLIER * self.bound
        stats = torch.stack([(x + step_a).clamp(-limit, limit), (x + step_b).clamp(-limit, limit), noise[:, None] * (var_a + var_b)], 1).float()
        tau, calibration = self.prior_widths()
        target = tau.square() / (tau.square() + calibration * v) * m
        values = x + (target - x).clamp(-self.bound, self.bound)
        good = torch.isfinite(stats).all(2).all(1) & torch.isfinite(values).all(1)
        values = torch.where(good[:, None], values, x)
        stats = torch.where(good[:, None, None], stats, self.stats[rows])
        visits = self.visits[rows] + good.to(self.visits.dtype)
        packed = torch.cat([rows.unsqueeze(1).double(), values, stats.flatten(1).double(), visits.unsqueeze(1).double()], 1)
        every = distributed.gather_rows(packed)  # the packed rows themselves in a single process
        idx = every[:, 0].long()
        before = self.visits[idx] > 0
        new_stats, new_visits = every[:, 6:21].view(-1, 3, 5).float(), every[:, 21].to(self.visits.dtype)
        after = new_visits > 0
        self._sums += _moments(new_stats[after]) - _moments(self.stats[idx][before])
        self._measured += int(after.sum()) - int(before.sum())
        self.values[idx] = every[:, 1:6].to(self.values.dtype)
        self.stats[idx] = new_stats
        self.visits[idx] = new_visits

    def corrected(self, rotations: np.ndarray, shifts_a: np.ndarray, apix: float) -> tuple[np.ndarray, np.ndarray]:
        """Refined poses of all particles: rotations (N, 3, 3) and RELION origins (N, 2) in Å, from
        the given ones in the same units."""
        x = self.values.double().cpu()
        rot = (rotvec_to_matrix_torch(x[:, :3]) @ torch.as_tensor(rotations, dtype=torch.float64)).numpy()
        return rot, shifts_a + x[:, 3:].numpy() * apix

    def magnitudes(self, apix: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-particle rotation-correction angle (degrees) and shift-correction length (Å)."""
        x = self.values.cpu().double()
        return np.rad2deg(x[:, :3].norm(dim=1).numpy()), x[:, 3:].norm(dim=1).numpy() * apix

    def write_evaluation(self, folder: Path, table: ParticleTable | None, apix: float) -> dict[str, float]:
        """``particles_refined.star`` (``table``, the particle file, with the refined poses) in
        ``folder``; returns the median corrections (degrees, Å) and the estimated spread of the
        given poses' errors per component (degrees, Å)."""
        angle, shift = self.magnitudes(apix)
        if table is not None:
            rotations, shifts = self.corrected(table.rotations, table.shifts, apix)
            write_star_with_poses(evaluation_file(folder, "refined_particles"), table, rotations, shifts)
        tau = self.prior_widths()[0].cpu().numpy()
        return {"median_pose_correction_deg": float(np.median(angle)), "median_shift_correction_a": float(np.median(shift)),
                "pose_error_spread_deg": float(np.rad2deg(tau[0])), "shift_error_spread_a": float(tau[3] * apix)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": self.values.cpu(), "stats": self.stats.cpu(), "visits": self.visits.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("values", "stats", "visits"):
            if state[name].shape != getattr(self, name).shape:
                raise ValueError(f"pose corrections for {state[name].shape[0]} particles, this run has {self.values.shape[0]}")
            getattr(self, name).copy_(state[name])
        self._recount()
