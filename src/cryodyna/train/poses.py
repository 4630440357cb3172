"""Local pose refinement: per-particle rotation and shift corrections learnt with the networks.

Each particle ``i`` has a rotation vector ``w_i`` (rad, axis-angle) and a shift offset ``t_i`` (px),
both zero at the start.  The pose used in the image model is ``R_i' = Exp(w_i) R_i`` (a rotation in
the view frame) with the RELION origin ``s_i + t_i``.  A Gaussian prior keeps them small:
``0.5 (|w|^2 / sigma_rot^2 + |t|^2 / sigma_shift^2)`` per particle, averaged over the batch.

The corrections are not network parameters: each step updates only the rows of its batch with a
row-wise Adam (a particle's moments advance only when it is seen), and under DDP every process
then receives the updated rows of all processes, so the tables stay identical everywhere and rank
0's checkpoint holds them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cryodyna.config.schema import OptimConfig
from cryodyna.io.particles import ParticleTable
from cryodyna.io.star import write_star_with_poses
from cryodyna.runs.layout import evaluation_file
from cryodyna.imaging.batches import PoseBatch
from cryodyna.imaging.rotations import rotvec_to_matrix_torch
from cryodyna import distributed

BETAS = (0.9, 0.999)
EPS = 1e-12


class PoseCorrections:
    """Correction tables for ``n`` particles on ``device``; ``apix`` (Å/px) converts the Å settings
    of ``optim`` (``pose_lr_a``, ``pose_prior_a``) to pixels."""

    def __init__(self, n: int, optim: OptimConfig, apix: float, device: torch.device):
        self.cfg = optim
        self.values = torch.zeros(n, 5, device=device)  # (w_x, w_y, w_z) rad, (t_x, t_y) px
        self.m = torch.zeros_like(self.values)
        self.v = torch.zeros_like(self.values)
        self.visits = torch.zeros(n, device=device)
        self.lr = torch.tensor([np.deg2rad(optim.pose_lr_deg)] * 3 + [optim.pose_lr_a / apix] * 2, device=device)
        self.inv_var = torch.tensor([np.deg2rad(optim.pose_prior_deg) ** -2] * 3 + [(optim.pose_prior_a / apix) ** -2] * 2,
                                    device=device)
        self._rows: torch.Tensor | None = None
        self._leaf: torch.Tensor | None = None

    def apply(self, batch: dict, learn: bool) -> tuple[dict, torch.Tensor]:
        """A copy of ``batch`` whose ``poses`` are the corrected poses (the input is left as it is); with ``learn`` the corrections of these rows receive
        gradients (call :meth:`step` after the backward pass).  Also returns the prior loss (0-d; 0
        without ``learn``)."""
        rows = batch["index"].to(self.values.device)
        x = self.values[rows]
        if learn:
            x = x.clone().requires_grad_(True)
            self._rows, self._leaf = rows, x
        poses = batch["poses"]
        corrected = dict(batch, poses=PoseBatch(rotvec_to_matrix_torch(x[:, :3]) @ poses.rotations, poses.origins + x[:, 3:]))
        prior = 0.5 * (x.square() * self.inv_var).sum(1).mean() if learn else x.new_zeros(())
        return corrected, prior

    @torch.no_grad()
    def step(self, update: bool = True, grad_scale: float = 1.0) -> None:
        """Adam update of the rows of the last :meth:`apply` (skipped when ``update`` is false, e.g.
        after a non-finite loss; ``grad_scale``: the fp16 loss scale to divide out), then the updated rows of every process are written into all
        tables (every process must call this, with equally sized batches)."""
        rows, leaf = self._rows, self._leaf
        self._rows = self._leaf = None
        if rows is None:
            return
        g = leaf.grad / grad_scale if leaf.grad is not None and update else torch.zeros_like(leaf)
        m = BETAS[0] * self.m[rows] + (1 - BETAS[0]) * g
        v = BETAS[1] * self.v[rows] + (1 - BETAS[1]) * g.square()
        t = self.visits[rows] + (1.0 if update else 0.0)
        if update:
            m_hat = m / (1 - BETAS[0] ** t).unsqueeze(1)
            v_hat = v / (1 - BETAS[1] ** t).unsqueeze(1)
            values = self.values[rows] - self.lr * m_hat / (v_hat.sqrt() + EPS)
        else:
            m, v, values = self.m[rows], self.v[rows], self.values[rows]
        packed = torch.cat([rows.unsqueeze(1).double(), values.double(), m.double(), v.double(), t.unsqueeze(1).double()], 1)
        every = distributed.gather_rows(packed)  # the packed rows themselves in a single process
        idx = every[:, 0].long()
        every = every.float()
        self.values[idx], self.m[idx], self.v[idx], self.visits[idx] = every[:, 1:6], every[:, 6:11], every[:, 11:16], every[:, 16]

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
        ``folder``; returns the median corrections (degrees, Å)."""
        angle, shift = self.magnitudes(apix)
        if table is not None:
            rotations, shifts = self.corrected(table.rotations, table.shifts, apix)
            write_star_with_poses(evaluation_file(folder, "refined_particles"), table, rotations, shifts)
        return {"median_pose_correction_deg": float(np.median(angle)), "median_shift_correction_a": float(np.median(shift))}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": self.values.cpu(), "m": self.m.cpu(), "v": self.v.cpu(), "visits": self.visits.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("values", "m", "v", "visits"):
            if state[name].shape != getattr(self, name).shape:
                raise ValueError(f"pose corrections for {state[name].shape[0]} particles, this run has {self.values.shape[0]}")
            getattr(self, name).copy_(state[name])
