"""A stack of images in a ``.npy`` file on disk, written and read by rows with ``pwrite`` / ``pread``.

A memory map would make the same disk accesses, but every page it touches counts in the process's
resident memory until the kernel reclaims it, so the reported peak memory of a run grew with the
number of particles.  Explicit reads go through the page cache (shared, dropped under pressure) and
the process holds only the rows it asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cryodyna.io.raw import read_exact, write_all


class ImageCache:
    """Images (N, D, D) float32 in the ``.npy`` file ``path``; pickles as its file name, so that
    loader worker processes open their own descriptor."""

    dtype = np.dtype(np.float32)
    _fd: int | None = None

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f)
            self.offset = f.tell()
        if fortran_order or np.dtype(dtype) != self.dtype or len(shape) != 3:
            raise ValueError(f"{self.path}: expected a C-ordered float32 (N, D, D) array, found {dtype} {shape}")
        self.shape: tuple[int, int, int] = shape
        self.row_bytes = shape[1] * shape[2] * self.dtype.itemsize

    @classmethod
    def create(cls, path: Path, n: int, d: int) -> ImageCache:
        """A new file for ``n`` images of ``d`` x ``d`` px (header written, rows unset)."""
        header = {"descr": np.lib.format.dtype_to_descr(cls.dtype), "fortran_order": False, "shape": (n, d, d)}
        with open(path, "wb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            f.truncate(f.tell() + n * d * d * cls.dtype.itemsize)
        return cls(path)

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)

    @property
    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR if os.access(self.path, os.W_OK) else os.O_RDONLY)
        return self._fd

    def write(self, start: int, rows: np.ndarray) -> None:
        """Store ``rows`` (k, D, D) as images ``start`` .. ``start + k - 1``."""
        write_all(self.fd, np.ascontiguousarray(rows, dtype=self.dtype), self.offset + start * self.row_bytes)

    def read(self, idx: np.ndarray) -> np.ndarray:
        """Images ``idx`` (k,) as an array (k, D, D), in the order asked; runs of consecutive
        indices are read in one call each."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        order = np.argsort(idx, kind="stable")
        ordered = idx[order]
        for run in np.split(np.arange(len(idx)), np.flatnonzero(np.diff(ordered) != 1) + 1):
            if len(run):
                out[order[run]] = self._read_run(int(ordered[run[0]]), len(run))
        return out

    def read_all(self, chunk: int = 256) -> np.ndarray:
        """Every image (N, D, D), read ``chunk`` rows at a time."""
        out = np.empty(self.shape, self.dtype)
        for start in range(0, len(self), chunk):
            stop = min(start + chunk, len(self))
            out[start:stop] = self._read_run(start, stop - start)
        return out

    def _read_run(self, first: int, count: int) -> np.ndarray:
        data = read_exact(self.fd, count * self.row_bytes, self.offset + first * self.row_bytes, self.path,
                          f"image {first + count - 1}")
        return np.frombuffer(data, self.dtype).reshape(count, *self.shape[1:])
