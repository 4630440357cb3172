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

import torch

from cryodyna.imaging.batches import CTFParams
from cryodyna.imaging.fft import frequency_grid_2d


def electron_wavelength(voltage_kv: torch.Tensor) -> torch.Tensor:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    v = voltage_kv * 1e3
    return 12.2639 / torch.sqrt(v + 0.97845e-6 * v * v)


def phase_basis(q: torch.Tensor) -> torch.Tensor:
    """The four frequency terms the CTF phase is linear in, for spatial frequencies ``q`` (..., 2) in
    cycles/pixel (float64 for large boxes) (``[..., 0]`` along columns): (4, ...) float64 ``[|q|^2, qx^2 - qy^2, 2 qx qy, |q|^4]``
    (``|q|^2 cos 2theta`` and ``|q|^2 sin 2theta`` without an angle).  Computed once per grid."""
    q = q.double()
    qx, qy = q[..., 0], q[..., 1]
    q2 = qx * qx + qy * qy
    return torch.stack([q2, qx * qx - qy * qy, 2 * qx * qy, q2 * q2])


def ctf_on_basis(params: CTFParams, apix: torch.Tensor | float, basis: torch.Tensor) -> torch.Tensor:
    """CTF of each particle on a precomputed :func:`phase_basis` (4, ...): returns (B, ...) float32.

    The phase is one (B, 4) x (4, G) product in float64 (it reaches hundreds of radians at high
    frequency) plus a per-particle constant; amplitude contrast enters as a phase offset,
    ``sqrt(1 - w^2) sin(gamma) - w cos(gamma) = sin(gamma - asin(w))``.  ``apix`` (Å, float or (B,))
    converts cycles/pixel to cycles/Å inside the per-particle coefficients, so one basis serves
    every pixel size.
    """
    device = params.defocus_u.device
    with torch.autocast(device_type=device.type, enabled=False):
        apix = torch.as_tensor(apix, dtype=torch.float64, device=device).expand(params.defocus_u.shape)
        lam = electron_wavelength(params.voltage.double())
        u, v, ang = params.defocus_u.double(), params.defocus_v.double(), params.astig_angle.double()
        a2 = apix * apix
        mean, half = -torch.pi * lam * 0.5 * (u + v) / a2, -torch.pi * lam * 0.5 * (u - v) / a2
        quartic = 0.5 * torch.pi * params.cs.double() * 1e7 * lam**3 / (a2 * a2)
        coeff = torch.stack([mean, half * torch.cos(2 * ang), half * torch.sin(2 * ang), quartic], -1)  # (B, 4)
        offset = params.phase_shift.double() + torch.asin(params.amp_contrast.double())
        gamma = (coeff @ basis.reshape(4, -1).to(device)) - offset[:, None]
        h = -torch.sin(gamma)
        if params.bfactor is not None:
            h = h * torch.exp(-(params.bfactor.double() / (4 * a2))[:, None] * basis[0].reshape(1, -1).to(device))
        return h.float().view(-1, *basis.shape[1:])


def compute_ctf(params: CTFParams, d: int, apix: torch.Tensor | float) -> torch.Tensor:
    """CTF on the centred (D, D) frequency grid for each particle: returns (B, D, D) float32.

    ``apix`` is the pixel size (Å) of the images the CTF multiplies, a float or a (B,) tensor.
    """
    one = torch.ones((), dtype=torch.float64, device=params.defocus_u.device)  # a float64 grid
    return ctf_on_basis(params, apix, phase_basis(frequency_grid_2d(d, one)))
