"""Image similarity losses (scale-invariant, so the unknown image scale and offset do not matter)."""

from __future__ import annotations

import torch


def masked_pearson(pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of ``pred`` and ``obs`` (B, D, D) over the pixels where ``mask`` (D, D) is
    true; means and standard deviations are taken inside the mask only. Returns (B,)."""
    m = mask.to(pred.dtype)
    n = m.sum()
    p_mean = (pred * m).sum(dim=(-2, -1), keepdim=True) / n
    o_mean = (obs * m).sum(dim=(-2, -1), keepdim=True) / n
    p = (pred - p_mean) * m
    o = (obs - o_mean) * m
    cov = (p * o).sum(dim=(-2, -1))
    return cov / torch.sqrt((p * p).sum(dim=(-2, -1)) * (o * o).sum(dim=(-2, -1)) + eps)


def correlation_loss(pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor, legacy: bool = False) -> torch.Tensor:
    """Mean over the batch of ``1 - rho`` (exact masked Pearson, in [0, 2]).

    ``legacy=True`` gives the reference method's form instead: ``-(sum P Y) / ((std Y + 1e-5)
    (std P + 1e-5)) / n_mask`` with zeros outside the mask included in the unbiased stds and no
    mean subtraction (≈ ``-(D^2 / n_mask) rho``); kept for regression comparisons.
    """
    if not legacy:
        return (1 - masked_pearson(pred, obs, mask)).mean()
    m = mask.to(pred.dtype)
    p = (pred * m).flatten(1)
    y = (obs * m).flatten(1)
    score = (p * y).sum(-1) / ((y.std(-1) + 1e-5) * (p.std(-1) + 1e-5))
    return (-score / m.sum()).mean()


def scaled_residual(predicted: torch.Tensor, observed: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares amplitude ``a`` (...,) of complex spectra ``predicted`` (..., G) against
    ``observed`` (..., G) with coefficient weights (G,), and the residual ``observed - a predicted``
    (..., G)."""
    amplitude = (weights * (predicted.conj() * observed).real).sum(-1) / (weights * predicted.abs().square()).sum(-1).clamp_min(1e-30)
    return amplitude, observed - amplitude[..., None] * predicted
