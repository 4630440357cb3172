"""Deformation-corrected reconstruction: every particle back-projected into one conformation (the
*frame*, e.g. the reference model) through its own learned deformation, next to the plain
back-projection of the same particles.

Per particle (pose ``R``, CTF ``H``, RELION origin ``t``): the image is re-centred (phase ramp),
multiplied by its CTF and back-projected; the point-spread function ``IFFT(H^2)`` is back-projected
beside it (the weights).  The plain map reads every voxel ``x`` at ``R x``; the corrected map reads
it at ``R (x + u(x))`` with ``u`` the particle's displacement field relative to the frame
(:class:`~cryodyna.imaging.displacement_field.DisplacementField`).  Both use the same weights, so
in Fourier space ``V = N / (W + lambda)`` (``N``, ``W`` the transforms of the two back-projection
sums) divides out the CTF and the interpolation kernel alike.

Particles fall in two half-sets that are reconstructed separately: the FSC of the (lightly
regularised, "unfiltered") half maps inside a soft model mask gives the resolution, and
``lambda(k) = W_half(k) (1 - FSC) / FSC`` (the noise-to-signal ratio per shell, in units of the
shell-mean weight of a half) gives the Wiener filter of the full map.  Map values are in image units
per Å (a projection of ``rho`` e/Å^3 in images of e/Å^2 reconstructs to ``rho``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cryodyna.analysis.fsc import FSCResult, fourier_shells, fsc
from cryodyna.data.dataset import ParticleDataset
from cryodyna.errors import CryodynaError
from cryodyna.imaging.backprojection import backproject
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.imaging.displacement_field import DisplacementField
from cryodyna.imaging.fft import fft3_center, ifft3_center
from cryodyna.imaging.filters import model_mask
from cryodyna.imaging.formation import ImageFormation
from cryodyna.imaging.grids import voxel_points

UNFILTERED_LAMBDA = 0.01  # regularisation of the half maps, as a fraction of the shell-mean weight
BATCH_BYTES = 512 * 2**20  # temporaries of one batch of back-projections: ~16 bytes per particle and voxel


@dataclass
class Maps:
    """One kind of reconstruction (plain or corrected): ``full`` (D, D, D) Wiener-filtered map of
    all particles, ``halves`` the two unfiltered half maps, ``fsc`` their FSC inside the mask."""

    full: np.ndarray
    halves: tuple[np.ndarray, np.ndarray]
    fsc: FSCResult


@dataclass
class Reconstruction:
    """Corrected and plain maps of the same particles; ``mask`` (D, D, D) the soft model mask of
    the FSCs; ``particles`` the count per half; ``apix`` Å/voxel."""

    corrected: Maps
    plain: Maps
    mask: np.ndarray
    particles: tuple[int, int]
    apix: float


class BackProjector:
    """Sums of the back-projections of particles into the frame ``nodes`` (N, 3) Å, per half.

    d, apix: box (px) and pixel size (Å) of the images; width: RBF width of the displacement
    field (Å); device: where the sums live.
    """

    def __init__(self, nodes: np.ndarray, d: int, apix: float, width: float, device=None):
        self.d, self.apix, self.device = d, apix, torch.device(device or "cpu")
        self.nodes = np.asarray(nodes, np.float32)
        self.field = DisplacementField(self.nodes, d, apix, width, device=self.device)
        self.formation = ImageFormation(d, apix).to(self.device)
        self._nodes = torch.as_tensor(self.nodes, device=self.device)
        self.points = voxel_points(d, apix, device=self.device)
        self.plain = [torch.zeros(d**3, dtype=torch.float64, device=self.device) for _ in range(2)]
        self.weight = [torch.zeros(d**3, dtype=torch.float64, device=self.device) for _ in range(2)]
        self.near = [torch.zeros(len(self.field.voxels), dtype=torch.float64, device=self.device) for _ in range(2)]
        self.count = [0, 0]

    def add(self, half: int, images: torch.Tensor, poses: PoseBatch, ctf: CTFParams, deformed: torch.Tensor) -> None:
        """Add particles to half ``half`` (0 or 1): raw images (B, D, D) with their poses and CTF,
        deformed node coordinates (B, N, 3) Å in the particles (same nodes as the frame)."""
        dev = self.device
        poses, ctf = poses.to(dev), ctf.to(dev)
        rotations = poses.rotations.float()
        stacked = torch.stack(self.formation.adjoint(images.to(dev, torch.float32), poses, ctf), 1)
        sums = backproject(stacked, rotations, self.points, self.apix)
        self.plain[half] += sums[0].double()
        self.weight[half] += sums[1].double()
        u = self.field.at_voxels(deformed.to(dev, torch.float32) - self._nodes)
        self.near[half] += backproject(stacked[:, :1], rotations, self.field.points + u, self.apix)[0].double()
        self.count[half] += len(images)

    def corrected_sum(self, half: int) -> torch.Tensor:
        """Numerator of the corrected map: the plain sum, with the voxels near the model read
        through the deformations (elsewhere the field is zero and both agree)."""
        out = self.plain[half].clone()
        out[self.field.voxels] = self.near[half]
        return out

    def result(self, mask_radius: float = 6.0, mask_edge: float = 6.0) -> Reconstruction:
        """The maps, FSCs and mask from the sums (both halves must hold particles)."""
        if min(self.count) == 0:
            raise CryodynaError(f"a half-set is empty ({self.count[0]} and {self.count[1]} particles); a reconstruction "
                                "needs particles in both halves")
        mask = model_mask(self.nodes, self.d, self.apix, mask_radius, mask_edge)
        solver = _WienerSolver(self.d, self.apix, self.weight, mask)
        corrected = solver.maps([self.corrected_sum(0), self.corrected_sum(1)])
        plain = solver.maps(self.plain)
        return Reconstruction(corrected, plain, mask, (self.count[0], self.count[1]), self.apix)


class _WienerSolver:
    """``V = N / (W + lambda)`` per Fourier voxel, with the weights ``W`` of both halves."""

    def __init__(self, d: int, apix: float, weights: list[torch.Tensor], mask: np.ndarray):
        self.d, self.apix, self.mask = d, apix, mask
        self.shell = torch.as_tensor(fourier_shells(d), device=weights[0].device)
        self.inside = self.shell <= d // 2
        self.shell = self.shell.clamp(max=d // 2)
        self.w = [fft3_center(w.view(d, d, d)).real.clamp(min=0).flatten() for w in weights]
        counts = torch.bincount(self.shell, minlength=d // 2 + 1).double()
        self.w_half = sum(torch.bincount(self.shell, w, minlength=d // 2 + 1) for w in self.w) / (2 * counts.clamp(min=1))

    def _solve(self, numerator: torch.Tensor, weight: torch.Tensor, lam: torch.Tensor) -> np.ndarray:
        num = fft3_center(numerator.view(self.d, self.d, self.d)).flatten()
        v = torch.where(self.inside, num / (weight + lam[self.shell]).clamp(min=1e-30), 0)
        return (ifft3_center(v.view(self.d, self.d, self.d)).real / self.apix).float().cpu().numpy()

    def maps(self, numerators: list[torch.Tensor]) -> Maps:
        lam0 = UNFILTERED_LAMBDA * self.w_half
        halves = tuple(self._solve(n, w, lam0) for n, w in zip(numerators, self.w))
        curve = fsc(halves[0], halves[1], self.apix, self.mask)
        f = np.clip(np.concatenate([[curve.fsc[0]], curve.fsc]), 1e-3, 0.999)
        lam = self.w_half * torch.as_tensor((1 - f) / f, device=self.w_half.device)
        full = self._solve(numerators[0] + numerators[1], self.w[0] + self.w[1], lam)
        return Maps(full, halves, curve)


def reconstruct(dataset: ParticleDataset, halves: Sequence[np.ndarray], deformed_nodes: Callable[[int, np.ndarray], torch.Tensor],
                frame: np.ndarray, width: float, sign: float = 1.0, batch_size: int = 32, device=None,
                progress: Callable[[int, int], None] | None = None, mask_radius: float = 6.0) -> Reconstruction:
    """Reconstruct the particles of ``halves`` (two index arrays into ``dataset``) in the frame
    ``frame`` (N, 3) Å; ``deformed_nodes(half, indices)`` gives their node coordinates (B, N, 3) Å
    (the learned deformation of each particle); ``sign`` multiplies the images (-1 for dark
    protein).  ``progress(done, total)`` is called after each batch; ``batch_size`` is lowered for
    large boxes so that a batch's temporaries stay within :data:`BATCH_BYTES`."""
    if np.ptp(dataset.apix) > 1e-3 * dataset.apix.mean():
        raise CryodynaError(f"pixel sizes after downsampling differ between optics groups ({dataset.apix.min():.4f} - "
                            f"{dataset.apix.max():.4f} Å); reconstruct one pixel size at a time")
    batch_size = max(1, min(batch_size, BATCH_BYTES // (16 * dataset.box**3)))
    projector = BackProjector(frame, dataset.box, float(dataset.apix.mean()), width, device)
    total, done = sum(len(h) for h in halves), 0
    for k, indices in enumerate(halves):
        for start in range(0, len(indices), batch_size):
            sel = np.asarray(indices[start : start + batch_size])
            rows = dataset.batch(sel)
            projector.add(k, sign * rows["images"], rows["poses"], rows["ctf"], deformed_nodes(k, sel))
            done += len(sel)
            if progress is not None:
                progress(done, total)
    return projector.result(mask_radius)
