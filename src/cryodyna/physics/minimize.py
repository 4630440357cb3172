"""Energy minimisation of a coarse-grained structure in torch (replaces the reference method's GROMACS
step): L-BFGS on the MARTINI energy plus a harmonic restraint to the starting positions, which keeps
the structure in the map frame."""

from __future__ import annotations

import torch

from cryodyna.physics.forcefield import MartiniForceField


def minimize(forcefield: MartiniForceField, coords: torch.Tensor, restraint_k: float | torch.Tensor = 10.0, steps: int = 500,
             tolerance: float = 1e-3) -> tuple[torch.Tensor, dict[str, float], dict[str, float]]:
    """Minimise ``E(x) + restraint_k/2 |x - x0|^2`` (kJ/mol, Å) from ``coords`` (N, 3) with L-BFGS
    (strong-Wolfe line search) in float64, for at most ``steps`` iterations or until the largest
    force component is below ``tolerance`` kJ mol^-1 Å^-1. ``restraint_k``: one constant, or one per
    bead (N,), kJ mol^-1 Å^-2.

    Returns (minimised coordinates (N, 3), energies per term before, after), in kJ/mol.
    """
    ff = forcefield.double()
    x0 = coords.detach().double()
    x = x0.clone().requires_grad_(True)
    k = torch.as_tensor(restraint_k, dtype=torch.float64)
    k = k.unsqueeze(-1) if k.ndim else k
    before = ff.totals(x0)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, tolerance_grad=tolerance, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        frames = x.unsqueeze(0)
        energy = sum(v.sum() for v in ff.terms(frames, ff.neighbours(frames)).values())
        energy = energy + 0.5 * (k * (x - x0) ** 2).sum()
        energy.backward()
        return energy

    opt.step(closure)
    result = x.detach()
    after = ff.totals(result)
    forcefield.float()
    return result.float(), before, after
