"""Particle images and metadata prepared for training: downsampled, masked, normalised, in memory."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryodyna.data.dataset import ParticleDataset
from cryodyna.errors import InputError
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.io.particles import ParticleTable


def default_box(box_in: int, largest: int = 128) -> int:
    """Downsampled side when the user gives none: ``largest`` px for larger images, else unchanged."""
    return min(box_in, largest)


@dataclass
class PreparedParticles:
    """Tensors for N particles at the working resolution.

    images (N, D, D) float32, downsampled and masked: in memory, or a memory-mapped ``.npy`` cache so
    that datasets larger than RAM train too; ``scale`` (1 / std, times -1 with ``invert_contrast``)
    is applied per batch.  poses: rotations and RELION origins in px; ctf: CTF parameters
    (float64); d (px), apix (Å/px).
    """

    images: torch.Tensor | np.ndarray
    poses: PoseBatch
    ctf: CTFParams
    d: int
    apix: float
    scale: float

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getstate__(self) -> dict:
        """Pickled for DataLoader worker processes: a memory-mapped cache travels as its file name."""
        state = dict(vars(self))
        if isinstance(self.images, np.memmap):
            state["images"] = Path(self.images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], Path):
            state["images"] = np.load(state["images"], mmap_mode="r")
        vars(self).update(state)

    def rows(self, idx: torch.Tensor) -> dict:
        """The particles ``idx`` (B,) where the images are (CPU, or the device they were moved to)."""
        if isinstance(self.images, torch.Tensor):
            images = self.images[idx.to(self.images.device)]
        else:
            order = np.argsort(idx.numpy())  # read the cache in file order, then restore the batch order
            images = torch.from_numpy(self.images[idx.numpy()[order]][np.argsort(order)])
        return {"images": images * self.scale, "poses": self.poses[idx], "ctf": self.ctf[idx], "index": idx}

    def batch(self, idx: torch.Tensor, device) -> dict:
        """The particles ``idx`` (B,) on ``device``."""
        return to_device(self.rows(idx), device)

    def images_to(self, device: torch.device) -> None:
        """Hold all images on ``device`` (read once from the cache): batches are then gathered there."""
        self.images = torch.as_tensor(np.asarray(self.images)).to(device)

    @property
    def image_bytes(self) -> int:
        return int(np.prod(self.images.shape)) * 4


def to_device(rows: dict, device) -> dict:
    """A batch (tensors, :class:`PoseBatch`, :class:`CTFParams`) on ``device``; copies from pinned
    memory do not block."""
    return {k: v.to(device, non_blocking=True) for k, v in rows.items()}


def prepare_particles(table: ParticleTable, box: int | None, mask_radius: float, invert_contrast: bool,
                      progress=None, cache: Path | None = None, largest_default_box: int = 128) -> PreparedParticles:
    """Load every image of ``table`` (Fourier-cropped to ``box``, by default to at most
    ``largest_default_box``), with a progress callback ``progress(done, total)``.  All particles must share one pixel size after downsampling.

    With ``cache`` (a ``.npy`` path) the images go to a memory-mapped file instead of RAM; a cache
    written earlier for the same particles, box and mask is reused without reading the stacks.
    """
    if not table.has_poses:
        raise InputError(table.source, "the particle file has no poses (rlnAngleRot/Tilt/Psi or alignments3D/pose); "
                         "cryodyna needs the poses of a consensus refinement")
    if np.isnan(table.pixel_size).any():
        raise InputError(table.source, "pixel size unknown; set data.apix (e.g. --set data.apix=1.1)")
    box_in = int(table.box.max())
    ds = ParticleDataset(table, box=box or default_box(box_in, largest_default_box), mask_radius=mask_radius)
    spread = np.ptp(ds.apix) / ds.apix.mean()
    if spread > 1e-3:
        raise InputError(table.source, f"pixel sizes after downsampling differ between optics groups "
                         f"({ds.apix.min():.4f} - {ds.apix.max():.4f} Å); export one pixel size per run")
    images = _load_images(ds, progress, cache)
    std = float(np.std(np.asarray(images[:: max(1, len(ds) // 1000)])))
    if not np.isfinite(std) or std == 0:
        raise InputError(table.source, "the images are constant (standard deviation 0); check the stacks")
    scale = (-1.0 if invert_contrast else 1.0) / std
    return PreparedParticles(images, ds.poses, ds.ctf, ds.box, float(ds.apix.mean()), scale)


def _load_images(ds: ParticleDataset, progress, cache: Path | None):
    """All images of ``ds`` as a tensor, or in the memory-mapped ``cache`` (reused when its
    fingerprint matches)."""
    n, d = len(ds), ds.box
    t = ds.table
    fingerprint = {"source": str(t.source), "n": n, "box": d, "mask_radius": ds.mask_radius,
                   "stacks": {f: os.stat(f).st_mtime_ns for f in np.unique(t.image_file)},
                   "rows": hashlib.sha1(np.char.add(t.image_file.astype(str), t.image_index.astype(str)).tobytes()).hexdigest()}
    meta = None if cache is None else cache.with_suffix(".json")
    if cache is not None and cache.is_file() and meta.is_file() and json.loads(meta.read_text()) == fingerprint:
        if progress is not None:
            progress(n, n)
        return np.load(cache, mmap_mode="r")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        meta.unlink(missing_ok=True)
        images = np.lib.format.open_memmap(cache, mode="w+", dtype=np.float32, shape=(n, d, d))
    else:
        images = torch.empty(n, d, d)
    for start in range(0, n, 256):
        stop = min(start + 256, n)
        block = torch.stack([ds.image(i) for i in range(start, stop)])
        images[start:stop] = block if cache is None else block.numpy()
        if progress is not None:
            progress(stop, n)
    if cache is None:
        return images
    images.flush()
    meta.write_text(json.dumps(fingerprint))  # written last: a half-filled cache is never reused
    return np.load(cache, mmap_mode="r")
