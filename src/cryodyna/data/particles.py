"""Particle images and metadata prepared for training: downsampled, masked, normalised, in memory or on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryodyna.data.dataset import ParticleDataset
from cryodyna.data.image_cache import ImageCache
from cryodyna.errors import InputError
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.io.particles import ParticleTable

log = logging.getLogger("cryodyna")


def default_box(box_in: int, largest: int = 128) -> int:
    """Downsampled side when the user gives none: ``largest`` px for larger images, else unchanged."""
    return min(box_in, largest)


@dataclass
class PreparedParticles:
    """Tensors for N particles at the working resolution.

    images (N, D, D) float32, downsampled and masked: in memory, or an :class:`ImageCache` on disk so
    that datasets larger than RAM train too; ``scale`` (1 / std, times -1 with ``invert_contrast``)
    is applied per batch.  poses: rotations and RELION origins in px; ctf: CTF parameters
    (float64); d (px), apix (Å/px).
    """

    images: torch.Tensor | ImageCache
    poses: PoseBatch
    ctf: CTFParams
    d: int
    apix: float
    scale: float

    def __len__(self) -> int:
        return self.images.shape[0]

    def rows(self, idx: torch.Tensor) -> dict:
        """The particles ``idx`` (B,) where the images are (CPU, or the device they were moved to)."""
        if isinstance(self.images, torch.Tensor):
            images = self.images[idx.to(self.images.device)]
        else:
            images = torch.from_numpy(self.images.read(idx.numpy()))
        return {"images": images * self.scale, "poses": self.poses[idx], "ctf": self.ctf[idx], "index": idx}

    def batch(self, idx: torch.Tensor, device) -> dict:
        """The particles ``idx`` (B,) on ``device``."""
        return to_device(self.rows(idx), device)

    def images_to(self, device: torch.device) -> None:
        """Hold all images on ``device`` (read once from the cache): batches are then gathered there."""
        if isinstance(self.images, ImageCache):
            self.images = torch.from_numpy(self.images.read_all())
        self.images = self.images.to(device)

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

    With ``cache`` (a ``.npy`` path) the images go to an :class:`ImageCache` instead of RAM; a cache
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
    every = np.arange(0, len(ds), max(1, len(ds) // 1000))
    std = float(np.std(images.read(every) if isinstance(images, ImageCache) else images[every].numpy()))
    if not np.isfinite(std) or std == 0:
        raise InputError(table.source, "the images are constant (standard deviation 0); check the stacks")
    scale = (-1.0 if invert_contrast else 1.0) / std
    return PreparedParticles(images, ds.poses, ds.ctf, ds.box, float(ds.apix.mean()), scale)


def _load_images(ds: ParticleDataset, progress, cache: Path | None):
    """All images of ``ds`` as a tensor, or in the :class:`ImageCache` ``cache`` (reused when its
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
        log.info("image cache %s reused (%d images of %d px)", cache, n, d)
        return ImageCache(cache)
    began = time.perf_counter()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        meta.unlink(missing_ok=True)
        images = ImageCache.create(cache, n, d)
    else:
        images = torch.empty(n, d, d)
    for start in range(0, n, 256):
        stop = min(start + 256, n)
        block = torch.stack([ds.image(i) for i in range(start, stop)])
        if cache is None:
            images[start:stop] = block
        else:
            images.write(start, block.numpy())
        if progress is not None:
            progress(stop, n)
    if cache is None:
        return images
    os.fsync(images.fd)
    meta.write_text(json.dumps(fingerprint))  # written last: a half-filled cache is never reused
    log.info("image cache %s written (%d images of %d px) in %.1f s", cache, n, d, time.perf_counter() - began)
    return images
