"""The image-formation model, composed once: projection -> CTF -> origin shift -> filter.

A projector turns the specimen into the spectrum of its projection along the beam: the Gaussian
projector (:func:`cryodyna.imaging.projection.project_gaussians`, real space, then ``rfft2``) or
the Fourier-slice projector (:class:`cryodyna.imaging.slicing.CentralSlice`, a network evaluated on
the rotated disc).  Both hand their spectrum to a :class:`FourierTransfer`, which applies the
particle's CTF and places the particle where its RELION origin says (the one origin convention:
the prediction moves by ``-origin``).  :class:`ImageFormation` composes the whole chain on the
half-spectrum (``rfft2``) layout of (D, D) images, with an optional filter, and its adjoint (used
by back-projection).

Everything runs in float32 (the CTF phase in float64) regardless of autocast.
"""

from __future__ import annotations

import torch
from torch import nn

from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.imaging.ctf import ctf_on_basis, phase_basis
from cryodyna.imaging.fft import rfft_frequency_grid
from cryodyna.imaging.shift import ramp_on


class FourierTransfer(nn.Module):
    """CTF times origin shift on a fixed set of frequencies (one pixel size).

    frequencies: (..., 2) cycles/px (``[..., 0]`` along columns), any layout; apix: Å/px.  The
    four CTF phase terms and the ramp frequencies are computed once, so a call costs one
    (B, 4) x (4, G) product, one sine and one ramp.
    """

    def __init__(self, frequencies: torch.Tensor, apix: float):
        super().__init__()
        self.apix = apix
        self.register_buffer("ctf_basis", phase_basis(frequencies))  # (4, ...) float64
        self.register_buffer("frequencies", frequencies.movedim(-1, 0).float().contiguous())  # (2, ...)

    def ctf(self, ctf: CTFParams) -> torch.Tensor:
        """CTF values (B, ...) float32."""
        return ctf_on_basis(ctf, self.apix, self.ctf_basis)

    def placement(self, poses: PoseBatch) -> torch.Tensor:
        """Complex (B, ...) ``exp(-2 pi i q . (-origin))``: moves a centred projection to where the
        particle sits in its image (the one place the origin sign is written)."""
        return ramp_on(-poses.origins.float(), self.frequencies)

    def forward(self, poses: PoseBatch, ctf: CTFParams) -> torch.Tensor:
        """Complex (B, ...): CTF x placement, what multiplies the spectrum of a centred projection
        to give the particle's image."""
        with torch.autocast(device_type=self.frequencies.device.type, enabled=False):
            return self.ctf(ctf) * self.placement(poses)


class ImageFormation(nn.Module):
    """Projections (B, D, D) -> particle images (B, D, D), on the ``rfft2`` half spectrum.

    d, apix: image side (px) and pixel size (Å); image_filter: centred (D, D) radial weights
    applied to every image this class returns (a low-pass; None = none).  Images are centred with
    the origin at pixel D//2.
    """

    def __init__(self, d: int, apix: float, image_filter: torch.Tensor | None = None):
        super().__init__()
        self.d, self.apix = d, apix
        self.transfer = FourierTransfer(rfft_frequency_grid(d), apix)
        self.register_buffer("filter", torch.ones(d, d // 2 + 1))  # rfft layout
        if image_filter is not None:
            self.set_filter(image_filter)

    def set_filter(self, image_filter: torch.Tensor) -> None:
        """Filter every image from now on with centred (D, D) radial weights ``image_filter``."""
        self.filter.copy_(torch.fft.ifftshift(image_filter)[:, : self.d // 2 + 1])

    def spectrum(self, images: torch.Tensor) -> torch.Tensor:
        """Half spectrum (B, D, D//2+1) of centred images (B, D, D)."""
        return torch.fft.rfft2(torch.fft.ifftshift(images, dim=(-2, -1)))

    def image(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Filtered centred image (B, D, D) of a half spectrum."""
        return torch.fft.fftshift(torch.fft.irfft2(spectrum * self.filter, s=(self.d, self.d)), dim=(-2, -1))

    def filtered(self, images: torch.Tensor) -> torch.Tensor:
        """Observed images (B, D, D) through the same filter as the predictions."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self.image(self.spectrum(images.float()))

    def particle_spectrum(self, projections: torch.Tensor, poses: PoseBatch, ctf: CTFParams) -> torch.Tensor:
        """Unfiltered half spectra (B, D, D//2+1) of the particle images of centred projections (B, D, D)."""
        with torch.autocast(device_type=projections.device.type, enabled=False):
            return self.spectrum(projections.float()) * self.transfer(poses, ctf)

    def forward(self, projections: torch.Tensor, poses: PoseBatch, ctf: CTFParams) -> torch.Tensor:
        """Particle images (B, D, D) of centred projections (B, D, D)."""
        return self.image(self.particle_spectrum(projections, poses, ctf))

    def adjoint(self, images: torch.Tensor, poses: PoseBatch, ctf: CTFParams) -> tuple[torch.Tensor, torch.Tensor]:
        """The adjoint of :meth:`forward` without the filter: images (B, D, D) re-centred and
        multiplied by their CTF, and the CTF^2 point-spread images (B, D, D) that weight them in a
        back-projection."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            size = (self.d, self.d)
            h = self.transfer.ctf(ctf)
            back = torch.fft.irfft2(self.spectrum(images.float()) * (h * self.transfer.placement(poses).conj()), s=size)
            psf = torch.fft.irfft2(h.square(), s=size)
            return torch.fft.fftshift(back, dim=(-2, -1)), torch.fft.fftshift(psf, dim=(-2, -1))
