"""Contrast transfer function (the cryoDRGN / RELION formula, one implementation).

Sign convention: ``H(s) = -(sqrt(1 - w^2) sin(gamma) - w cos(gamma))`` with
``gamma = 2 pi (-0.5 df lambda |s|^2 + 0.25 Cs lambda^3 |s|^4) - phase_shift``.
So ``H(0) = +w`` and the first lobe is positive for under-focus (positive defocus): a positive
(protein-white) density gives positive low-frequency image contrast.  This is the negative of
cryoDRGN's ``compute_ctf``.  Defocus is positive for under-focus; the local defocus along direction
``theta`` is ``df = (U + V)/2 + (U - V)/2 cos(2 (theta - astig_angle))`` with ``theta`` measured from
the image x axis (columns) towards y (rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cryodyna.imaging.fft import frequency_grid_2d


def electron_wavelength(voltage_kv: torch.Tensor) -> torch.Tensor:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    v = voltage_kv * 1e3
    return 12.2639 / torch.sqrt(v + 0.97845e-6 * v * v)


@dataclass
class CTFParams:
    """Per-particle CTF parameters, each a tensor of shape (B,).

    defocus_u, defocus_v: Å (positive = under-focus); astig_angle: rad; voltage: kV; cs: mm;
    amp_contrast: fraction in [0, 1]; phase_shift: rad; bfactor: Å^2 (envelope exp(-B s^2 / 4)).
    """

    defocus_u: torch.Tensor
    defocus_v: torch.Tensor
    astig_angle: torch.Tensor
    voltage: torch.Tensor
    cs: torch.Tensor
    amp_contrast: torch.Tensor
    phase_shift: torch.Tensor
    bfactor: torch.Tensor | None = None

    def to(self, device) -> "CTFParams":
        """Move every field to ``device``."""
        return CTFParams(**{k: (None if v is None else v.to(device)) for k, v in vars(self).items()})


def compute_ctf(params: CTFParams, d: int, apix: torch.Tensor | float) -> torch.Tensor:
    """CTF on the centred (D, D) frequency grid for each particle: returns (B, D, D) float32.

    ``apix`` is the pixel size (Å) of the images the CTF multiplies, a float or a (B,) tensor.
    The phase ``gamma`` reaches hundreds of radians at high frequency, so it is evaluated in float64
    (outside autocast) and only the result is rounded to float32.
    """
    device = params.defocus_u.device
    with torch.autocast(device_type=device.type, enabled=False):
        if not isinstance(apix, torch.Tensor):
            apix = torch.full_like(params.defocus_u, float(apix))
        s = frequency_grid_2d(d, apix.double(), device=device).double()  # (B, D, D, 2)
        sx, sy = s[..., 0], s[..., 1]
        s2 = sx * sx + sy * sy
        theta = torch.atan2(sy, sx)

        def col(t: torch.Tensor) -> torch.Tensor:
            return t.double().reshape(-1, 1, 1)

        lam = col(electron_wavelength(params.voltage.double()))
        u, v, ang = col(params.defocus_u), col(params.defocus_v), col(params.astig_angle)
        df = 0.5 * (u + v + (u - v) * torch.cos(2 * (theta - ang)))
        cs = col(params.cs) * 1e7
        w = col(params.amp_contrast)
        gamma = 2 * torch.pi * (-0.5 * df * lam * s2 + 0.25 * cs * lam**3 * s2 * s2) - col(params.phase_shift)
        h = -(torch.sqrt(1 - w * w) * torch.sin(gamma) - w * torch.cos(gamma))
        if params.bfactor is not None:
            h = h * torch.exp(-col(params.bfactor) * s2 / 4)
        return h.float()
