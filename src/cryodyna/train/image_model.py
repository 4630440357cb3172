"""The forward image model used in training, composed of the imaging steps:
``project_gaussians`` -> ``compute_ctf`` -> low-pass -> ``apply_origin`` (Fourier phase ramp), and the
matching preparation of the observed images (low-pass only: the data are never interpolated)."""

from __future__ import annotations

import torch
from torch import nn

from cryodyna.imaging.ctf import CTFParams, compute_ctf
from cryodyna.imaging.fft import fft2_center, ifft2_center
from cryodyna.imaging.filters import circular_mask, lowpass_filter
from cryodyna.imaging.loss import correlation_loss, masked_pearson
from cryodyna.imaging.projection import project_gaussians
from cryodyna.imaging.shift import apply_origin


class ImageModel(nn.Module):
    """Renders Gaussian nodes into particle images and scores them against the data.

    d, apix: image side (px) and pixel size (Å) after downsampling; amplitudes, sigmas (N,);
    lowpass: resolution (Å) of the soft low-pass applied to data and prediction (None = none);
    loss_mask_radius: disc (fraction of D/2) inside which the correlation is computed.
    Everything here runs in float32 regardless of autocast.
    """

    def __init__(self, d: int, apix: float, amplitudes: torch.Tensor, sigmas: torch.Tensor, lowpass: float | None,
                 lowpass_soft_width: float, loss_mask_radius: float, legacy_correlation: bool = False):
        super().__init__()
        self.d, self.apix, self.legacy = d, apix, legacy_correlation
        self.register_buffer("amplitudes", amplitudes.float())
        self.register_buffer("sigmas", sigmas.float())
        lp = torch.ones(d, d) if lowpass is None else lowpass_filter(d, apix, lowpass, lowpass_soft_width)
        self.register_buffer("lowpass", lp)
        self.register_buffer("loss_mask", circular_mask(d, loss_mask_radius))

    def _filtered(self, f: torch.Tensor) -> torch.Tensor:
        return ifft2_center(f * self.lowpass).real

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """Low-passed observed images (B, D, D)."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self._filtered(fft2_center(images.float()))

    def predict(self, coords: torch.Tensor, rotations: torch.Tensor, shifts: torch.Tensor, ctf: torch.Tensor) -> torch.Tensor:
        """Predicted images (B, D, D) for node coordinates (B, N, 3) Å, poses (B, 3, 3), RELION origins
        (B, 2) in px and CTF rows (B, 7) = (dfU, dfV, astig rad, kV, Cs mm, w, phase rad)."""
        with torch.autocast(device_type=coords.device.type, enabled=False):
            img = project_gaussians(coords.float(), self.amplitudes, self.sigmas, rotations.float(), self.d, self.apix)
            h = compute_ctf(CTFParams(*ctf.double().T), self.d, self.apix)
            return self._filtered(apply_origin(fft2_center(img) * h, shifts.float()))

    def loss(self, predicted: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
        """1 - masked Pearson correlation (mean over the batch, or per image with ``reduce=False``)."""
        if reduce:
            return correlation_loss(predicted, target, self.loss_mask, legacy=self.legacy)
        return 1 - masked_pearson(predicted, target, self.loss_mask)
