"""Batches for the training loop.

Images held on the training device are gathered there.  Otherwise rows are read on the CPU — by
``workers`` background processes when asked (an image cache on disk larger than the page cache),
into pinned memory when the device is a GPU — and copied to the device without blocking, so that
reading the next batch overlaps the current step.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from cryodyna.data.particles import PreparedParticles, to_device


class _BatchRows(Dataset):
    """Item i = the CPU rows of the i-th index tensor (automatic batching off)."""

    def __init__(self, data: PreparedParticles, batches: list[torch.Tensor]):
        self.data, self.batches = data, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict:
        return self.data.rows(self.batches[i])


def iterate_batches(data: PreparedParticles, batches: list[torch.Tensor], device: torch.device,
                    workers: int = 0) -> Iterator[dict]:
    """The particles of each index tensor (B,) in ``batches``, in order, on ``device``."""
    on_device = isinstance(data.images, torch.Tensor) and data.images.device == device
    pin = device.type == "cuda" and not on_device
    if on_device or (workers == 0 and not pin):
        for idx in batches:
            yield data.batch(idx, device)
        return
    loader = DataLoader(_BatchRows(data, batches), batch_size=None, shuffle=False, num_workers=workers,
                        pin_memory=pin, prefetch_factor=4 if workers else None,
                        generator=torch.Generator())  # its seed draw must not advance the training RNG
    for rows in loader:
        yield to_device(rows, device)
