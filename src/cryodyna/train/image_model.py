"""The forward image model used in training, composed of the imaging steps:
``project_gaussians`` -> CTF -> low-pass -> origin shift (Fourier phase ramp), and the matching
preparation of the observed images (low-pass only: the data are never interpolated).

The Fourier steps run in the half-spectrum (``rfft2``) layout; the frequency terms of the CTF phase,
the frequencies of the phase ramp and the low-pass are computed once per model (one pixel size),
so a step costs one (B, 4) x (4, D (D/2 + 1)) product and one sine for the CTF."""

from __future__ import annotations

import torch
from torch import nn

from cryodyna.imaging.ctf import CTFParams, ctf_on_basis, phase_basis
from cryodyna.imaging.fft import rfft_frequency_grid
from cryodyna.imaging.filters import circular_mask, lowpass_filter
from cryodyna.imaging.loss import correlation_loss, masked_pearson
from cryodyna.imaging.projection import project_gaussians
from cryodyna.imaging.shift import ramp_on


class ImageModel(nn.Module):
    """Renders Gaussian nodes into particle images and scores them against the data.

    d, apix: image side (px) and pixel size (Å) after downsampling; amplitudes, sigmas (N,);
    lowpass: resolution (Å) of the soft low-pass applied to data and prediction (None = none);
    loss_mask_radius: disc (fraction of D/2) inside which the correlation is computed.
    Everything here runs in float32 (the CTF phase in float64) regardless of autocast.
    """

    def __init__(self, d: int, apix: float, amplitudes: torch.Tensor, sigmas: torch.Tensor, lowpass: float | None,
                 lowpass_soft_width: float, loss_mask_radius: float, legacy_correlation: bool = False):
        super().__init__()
        self.d, self.apix, self.legacy = d, apix, legacy_correlation
        self.register_buffer("amplitudes", amplitudes.float())
        self.register_buffer("sigmas", sigmas.float())
        q = rfft_frequency_grid(d)  # (D, D//2+1, 2) cycles/px
        self.register_buffer("ctf_basis", phase_basis(q))  # (4, D, D//2+1) float64
        self.register_buffer("frequencies", q.permute(2, 0, 1).float())  # (2, D, D//2+1) cycles/px
        lp = torch.ones(d, d) if lowpass is None else lowpass_filter(d, apix, lowpass, lowpass_soft_width)
        self.register_buffer("lowpass", torch.fft.ifftshift(lp)[:, : d // 2 + 1].contiguous())  # radial: half = rfft layout
        self.register_buffer("loss_mask", circular_mask(d, loss_mask_radius))

    def _spectrum(self, images: torch.Tensor) -> torch.Tensor:
        """Half spectrum (B, D, D//2+1) of centred images (B, D, D) (origin at pixel D//2)."""
        return torch.fft.rfft2(torch.fft.ifftshift(images, dim=(-2, -1)))

    def _image(self, f: torch.Tensor) -> torch.Tensor:
        """Centred low-passed image (B, D, D) of a half spectrum."""
        return torch.fft.fftshift(torch.fft.irfft2(f * self.lowpass, s=(self.d, self.d)), dim=(-2, -1))

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """Low-passed observed images (B, D, D)."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self._image(self._spectrum(images.float()))

    def predict(self, coords: torch.Tensor, rotations: torch.Tensor, shifts: torch.Tensor, ctf: torch.Tensor) -> torch.Tensor:
        """Predicted images (B, D, D) for node coordinates (B, N, 3) Å, poses (B, 3, 3), RELION origins
        (B, 2) in px and CTF rows (B, 7) = (dfU, dfV, astig rad, kV, Cs mm, w, phase rad)."""
        with torch.autocast(device_type=coords.device.type, enabled=False):
            img = project_gaussians(coords.float(), self.amplitudes, self.sigmas, rotations.float(), self.d, self.apix)
            h = ctf_on_basis(CTFParams(*ctf.double().T), self.apix, self.ctf_basis)
            return self._image(self._spectrum(img) * (h * ramp_on(-shifts.float(), self.frequencies)))

    def loss(self, predicted: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
        """1 - masked Pearson correlation (mean over the batch, or per image with ``reduce=False``)."""
        if reduce:
            return correlation_loss(predicted, target, self.loss_mask, legacy=self.legacy)
        return 1 - masked_pearson(predicted, target, self.loss_mask)
