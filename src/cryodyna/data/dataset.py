"""Particle dataset: images read lazily from the stacks, image by image, downsampled by Fourier cropping
and masked, with their pose, shift and CTF parameters."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cryodyna.errors import InputError
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.imaging.fft import fourier_crop
from cryodyna.imaging.filters import circular_mask
from cryodyna.io.mrc import ImageStack, read_header
from cryodyna.io.particles import ParticleTable


def check_images(table: ParticleTable) -> None:
    """Check, from the stack headers only, that every referenced stack exists, holds images of the
    box size the table records, and that every index is in range; the error names the row."""
    counts: dict[str, int] = {}
    for f in np.unique(table.image_file):
        rows = np.flatnonzero(table.image_file == f)
        try:
            header = read_header(f)
        except InputError as exc:
            hint = ("; if the stacks are in another folder, pass --set data.datadir=FOLDER (relative paths are looked up "
                    "there, then beside the particle file)") if exc.problem == "file not found" else ""
            raise InputError(table.source, f"{table.row_label[rows[0]]}: image stack {f}: {exc.problem}{hint}") from None
        counts[f] = header.n
        if header.nx != header.ny:
            raise InputError(table.source, f"{table.row_label[rows[0]]}: {f} holds {header.nx} x {header.ny} px images; expected square images")
        wrong = rows[(table.box[rows] >= 0) & (table.box[rows] != header.nx)]
        if wrong.size:
            i = int(wrong[0])
            raise InputError(
                table.source,
                f"{table.row_label[i]}: the particle file gives a box of {table.box[i]} px but {f} holds "
                f"{header.nx} px images; set rlnImageSize in the particle file to {header.nx}",
            )
    n = np.array([counts[f] for f in table.image_file])
    bad = np.flatnonzero(table.image_index >= n)
    if bad.size:
        i = int(bad[0])
        raise InputError(
            table.source,
            f"{table.row_label[i]}: image {table.image_index[i] + 1} requested from {table.image_file[i]}, "
            f"which holds {n[i]} images ({bad.size} row(s) affected)",
        )


class ParticleDataset(Dataset):
    """Images and metadata of a :class:`ParticleTable`.

    Images are (D, D) float32, downsampled to ``box`` px by Fourier cropping and zero outside the
    circular ``mask_radius`` if given.  ``apix`` (N,) is the downsampled pixel size (Å), ``poses``
    (:class:`PoseBatch`, N rows) the rotations and RELION origins in downsampled pixels, ``ctf``
    (:class:`CTFParams`, N rows, float64) the CTF of every particle.  An item is a batch of one
    (see :meth:`batch`).
    """

    def __init__(self, table: ParticleTable, box: int | None = None, mask_radius: float | None = None, check: bool = True):
        if check:
            check_images(table)
        if (table.box < 0).any():
            raise InputError(table.source, "image size unknown for some particles; the stacks could not be read")
        self.table = table
        self.box_in = table.box
        self.box = int(box if box is not None else table.box.max())
        if (self.box > table.box).any():
            raise InputError(table.source, f"cannot downsample to {self.box} px: some images are only {table.box.min()} px")
        self.apix = table.pixel_size * table.box / self.box
        self.mask_radius = mask_radius
        self.mask = None if mask_radius is None else circular_mask(self.box, mask_radius)
        self._stack = ImageStack()
        rotations = np.eye(3)[None].repeat(len(table), 0) if table.rotations is None else table.rotations
        self.poses = PoseBatch(torch.as_tensor(rotations, dtype=torch.float32),
                               torch.as_tensor(table.shifts / self.apix[:, None], dtype=torch.float32))
        self.ctf = CTFParams(*(torch.tensor(np.asarray(v, dtype=np.float64)) for v in (
            table.defocus_u, table.defocus_v, table.astig_angle, table.voltage, table.cs, table.amp_contrast, table.phase_shift)))

    def __len__(self) -> int:
        return len(self.table)

    def image(self, i: int) -> torch.Tensor:
        """Downsampled, masked image ``i`` as a (D, D) float32 tensor."""
        t = self.table
        img = torch.from_numpy(self._stack.image(t.image_file[i], int(t.image_index[i]), str(t.row_label[i])))
        img = fourier_crop(img, self.box)
        if self.mask is not None:
            img = img * self.mask
        return img

    def batch(self, indices: np.ndarray) -> dict:
        """Particles ``indices`` (B,): ``images`` (B, D, D), ``poses``, ``ctf``, ``apix`` (B,) and
        ``index`` (B,) rows of the table."""
        indices = np.asarray(indices, dtype=np.int64)
        rows = torch.from_numpy(indices)
        return {
            "images": torch.stack([self.image(int(i)) for i in indices]),
            "poses": self.poses[rows],
            "ctf": self.ctf[rows],
            "apix": torch.as_tensor(self.apix[indices], dtype=torch.float32),
            "index": rows,
        }

    def __getitem__(self, i: int) -> dict:
        return self.batch(np.array([i]))
