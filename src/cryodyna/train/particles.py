"""Particle images and metadata prepared for training: downsampled, masked, normalised, in memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryodyna.data.dataset import ParticleDataset
from cryodyna.errors import InputError
from cryodyna.io.particles import ParticleTable


def default_box(box_in: int) -> int:
    """Downsampled side when the user gives none: 128 px for larger images, else unchanged."""
    return 128 if box_in > 128 else box_in


@dataclass
class PreparedParticles:
    """Tensors for N particles at the working resolution.

    images (N, D, D) float32, masked and scaled to unit standard deviation (``scale`` = the factor
    applied, times -1 with ``invert_contrast``); rotations (N, 3, 3); shifts (N, 2) RELION origins in
    px; ctf (N, 7) = (dfU Å, dfV Å, astig rad, kV, Cs mm, w, phase rad); d (px), apix (Å/px).
    """

    images: torch.Tensor
    rotations: torch.Tensor
    shifts: torch.Tensor
    ctf: torch.Tensor
    d: int
    apix: float
    scale: float

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, idx: torch.Tensor, device) -> dict[str, torch.Tensor]:
        """The particles ``idx`` on ``device``."""
        return {
            "images": self.images[idx].to(device, non_blocking=True),
            "rotations": self.rotations[idx].to(device),
            "shifts": self.shifts[idx].to(device),
            "ctf": self.ctf[idx].to(device),
            "index": idx.to(device),
        }


def prepare_particles(table: ParticleTable, box: int | None, mask_radius: float, invert_contrast: bool,
                      progress=None) -> PreparedParticles:
    """Load every image of ``table`` (Fourier-cropped to ``box``), with a progress callback
    ``progress(done, total)``.  All particles must share one pixel size after downsampling."""
    if not table.has_poses:
        raise InputError(table.source, "the particle file has no poses (rlnAngleRot/Tilt/Psi or alignments3D/pose); "
                         "cryodyna needs the poses of a consensus refinement")
    if np.isnan(table.pixel_size).any():
        raise InputError(table.source, "pixel size unknown; set data.apix (e.g. --set data.apix=1.1)")
    box_in = int(table.box.max())
    ds = ParticleDataset(table, box=box or default_box(box_in), mask_radius=mask_radius)
    spread = np.ptp(ds.apix) / ds.apix.mean()
    if spread > 1e-3:
        raise InputError(table.source, f"pixel sizes after downsampling differ between optics groups "
                         f"({ds.apix.min():.4f} - {ds.apix.max():.4f} Å); export one pixel size per run")
    n = len(ds)
    images = torch.empty(n, ds.box, ds.box)
    chunk = 256
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        images[start:stop] = torch.stack([ds.image(i) for i in range(start, stop)])
        if progress is not None:
            progress(stop, n)
    sample = images[:: max(1, n // 1000)]
    std = float(sample.std())
    if not np.isfinite(std) or std == 0:
        raise InputError(table.source, "the images are constant (standard deviation 0); check the stacks")
    scale = (-1.0 if invert_contrast else 1.0) / std
    images *= scale
    rotations = torch.as_tensor(table.rotations, dtype=torch.float32)
    shifts = torch.as_tensor(table.shifts / ds.apix[:, None], dtype=torch.float32)
    ctf = torch.as_tensor(np.stack([table.defocus_u, table.defocus_v, table.astig_angle, table.voltage, table.cs,
                                    table.amp_contrast, table.phase_shift], 1), dtype=torch.float64)
    return PreparedParticles(images, rotations, shifts, ctf, ds.box, float(ds.apix.mean()), scale)
