"""The Gaussian image model used in training and by the ceiling: nodes projected as Gaussians
(:func:`project_gaussians`), then :class:`ImageFormation` (CTF -> origin shift -> low-pass), scored
against the data by the masked correlation; observed images go through the same low-pass only
(the data are never interpolated)."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.imaging.fft import fourier_crop
from cryodyna.imaging.filters import circular_mask, lowpass_filter
from cryodyna.imaging.formation import ImageFormation
from cryodyna.imaging.loss import correlation_loss, masked_pearson
from cryodyna.imaging.projection import project_gaussians


def to_box(images: torch.Tensor, poses: PoseBatch, box: int) -> tuple[torch.Tensor, PoseBatch]:
    """Images (B, D, D) Fourier-cropped to ``box`` px (float32) and their poses with the origins
    (px) rescaled to the coarser pixels: the inputs of a :meth:`ImageModel.band_limited` model."""
    return fourier_crop(images.float(), box), dataclasses.replace(poses, origins=poses.origins * (box / images.shape[-1]))


class ImageModel(nn.Module):
    """Renders Gaussian nodes into particle images and scores them against the data.

    d, apix: image side (px) and pixel size (Å) after downsampling; amplitudes, sigmas (N,);
    lowpass: resolution (Å) of the soft low-pass applied to data and prediction (None = none);
    loss_mask_radius: disc (fraction of D/2) inside which the correlation is computed.
    """

    def __init__(self, d: int, apix: float, amplitudes: torch.Tensor, sigmas: torch.Tensor, lowpass: float | None,
                 lowpass_soft_width: float, loss_mask_radius: float, legacy_correlation: bool = False):
        super().__init__()
        self.d, self.apix, self.legacy = d, apix, legacy_correlation
        self.lowpass, self.lowpass_soft_width, self.loss_mask_radius = lowpass, lowpass_soft_width, loss_mask_radius
        self.register_buffer("amplitudes", amplitudes.float())
        self.register_buffer("sigmas", sigmas.float())
        self.formation = ImageFormation(d, apix, None if lowpass is None else lowpass_filter(d, apix, lowpass, lowpass_soft_width))
        self.register_buffer("loss_mask", circular_mask(d, loss_mask_radius))

    def set_filter_resolution(self, resolution: float) -> None:
        """Low-pass data and predictions at ``resolution`` Å from now on (a coarse-to-fine schedule);
        :attr:`lowpass`, the resolution the model is built for, and :meth:`band_limited` keep theirs."""
        self.formation.set_filter(lowpass_filter(self.d, self.apix, resolution, self.lowpass_soft_width, device=self.formation.filter.device))

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """Low-passed observed images (B, D, D)."""
        return self.formation.filtered(images)

    def _projections(self, coords: torch.Tensor, poses: PoseBatch) -> torch.Tensor:
        with torch.autocast(device_type=coords.device.type, enabled=False):
            return project_gaussians(coords.float(), self.amplitudes, self.sigmas, poses.rotations.float(), self.d, self.apix)

    def predict(self, coords: torch.Tensor, poses: PoseBatch, ctf: CTFParams) -> torch.Tensor:
        """Predicted images (B, D, D) for node coordinates (B, N, 3) Å."""
        return self.formation(self._projections(coords, poses), poses, ctf)

    def predict_spectrum(self, coords: torch.Tensor, poses: PoseBatch, ctf: CTFParams) -> torch.Tensor:
        """Unfiltered half spectra (B, D, D//2+1) of the predicted images (the layout of
        ``formation.spectrum``)."""
        return self.formation.particle_spectrum(self._projections(coords, poses), poses, ctf)

    def band_limited(self) -> tuple[ImageModel, int]:
        """The same model on the smallest even box whose spectrum holds every frequency the low-pass
        passes (same field of view, coarser pixels), and that box (px); itself without a low-pass.
        Images and poses enter it through :func:`to_box`."""
        if self.lowpass is None:
            return self, self.d
        box = min(self.d, 2 * math.ceil(self.d * self.apix / self.lowpass + self.lowpass_soft_width) + 2)
        if box == self.d:
            return self, self.d
        cropped = ImageModel(box, self.apix * self.d / box, self.amplitudes, self.sigmas, self.lowpass, self.lowpass_soft_width,
                             self.loss_mask_radius, self.legacy)
        return cropped.to(self.amplitudes.device), box

    def spectrum_weights(self) -> torch.Tensor:
        """(D, D//2+1) weights of the half-spectrum coefficients (the layout of
        ``formation.spectrum``) in a least-squares fit: the low-pass squared (it acts on data and
        model alike), the zero frequency excluded."""
        weights = self.formation.filter.square()
        weights[0, 0] = 0.0
        return weights

    def loss(self, predicted: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
        """1 - masked Pearson correlation (mean over the batch, or per image with ``reduce=False``)."""
        if reduce:
            return correlation_loss(predicted, target, self.loss_mask, legacy=self.legacy)
        return 1 - masked_pearson(predicted, target, self.loss_mask)

    def pull(self, coords: torch.Tensor, images: torch.Tensor, poses: PoseBatch, ctf: CTFParams) -> torch.Tensor:
        """Where the images pull the nodes: minus the gradient (B, N, 3), per Å, of each image's
        loss with respect to the node coordinates ``coords`` (B, N, 3) Å, map frame; images (B, D, D)."""
        with torch.enable_grad():
            x = coords.detach().float().clone().requires_grad_(True)
            loss = self.loss(self.predict(x, poses, ctf), self.target(images.float()), reduce=False).sum()
            return -torch.autograd.grad(loss, x)[0]
