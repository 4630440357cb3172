"""Typed per-particle batches: poses and CTF parameters as named tensors, never positional rows.

Both are dataclasses of tensors sharing a leading particle axis (B,); they index, move between
devices and pin memory field by field, so a batch of particles is ``table[idx].to(device)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch

T = TypeVar("T", bound="TensorFields")


class TensorFields:
    """Field-wise operations for a dataclass whose fields are (B, ...) tensors (or None)."""

    def map(self: T, fn: Callable[[torch.Tensor], torch.Tensor]) -> T:
        """A copy with ``fn`` applied to every tensor field."""
        return dataclasses.replace(self, **{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                                            for f in dataclasses.fields(self)})

    def __getitem__(self: T, idx) -> T:
        return self.map(lambda t: t[idx])

    def __len__(self) -> int:
        return dataclasses.astuple(self)[0].shape[0]

    def to(self: T, device, non_blocking: bool = False) -> T:
        """Every field on ``device`` (dtypes kept)."""
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self: T) -> T:
        """Every field in pinned host memory (used by DataLoader's ``pin_memory``)."""
        return self.map(lambda t: t.pin_memory())


@dataclass
class PoseBatch(TensorFields):
    """Poses of B particles.

    rotations: (B, 3, 3) RELION matrices, a map-frame point ``x`` projects to ``p = R x`` (image
    column ``p[0]``, row ``p[1]``); origins: (B, 2) RELION origins in pixels (x = columns,
    y = rows): the particle centre sits at ``-origin`` in its image.
    """

    rotations: torch.Tensor
    origins: torch.Tensor


@dataclass
class CTFParams(TensorFields):
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
