"""MRC/MRCS image stacks (lazy, read image by image) and volumes."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from cryodyna.errors import InputError
from cryodyna.io.raw import read_exact, write_all


@dataclass(frozen=True)
class MrcHeader:
    """Shape and sampling of an MRC file: ``n`` sections of ``ny`` x ``nx`` px, voxel size in Å,
    header origin (x, y, z) in Å."""

    nx: int
    ny: int
    n: int
    voxel_size: float
    origin: tuple[float, float, float]
    mode: int


MRC_MODES = {0, 1, 2, 3, 4, 6, 12, 101}


def _open(path: Path, mmap: bool):
    """Open read-only, tolerating old headers without the MAP id (as older tools write) but not
    missing or truncated data."""
    if not path.is_file():
        raise InputError(path, "file not found")
    if path.suffix.lower() in {".pdb", ".cif", ".mmcif", ".ent", ".star", ".cs"}:
        raise InputError(path, f"is a {path.suffix.lower()[1:]} file, not an MRC map or stack")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = (mrcfile.mmap if mmap else mrcfile.open)(path, mode="r", permissive=True)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(path, f"not a readable MRC file ({exc}); expected a valid MRC/MRCS header and data") from None
    h = m.header
    if int(h.mode) not in MRC_MODES or max(int(h.nx), int(h.ny), int(h.nz)) > 100_000:
        m.close()
        raise InputError(path, f"not an MRC file: its header holds mode {int(h.mode)} and size {int(h.nx)} x {int(h.ny)} x "
                         f"{int(h.nz)}, which no MRC writer produces (a text or model file renamed?)")
    if int(h.mode) in (3, 4):
        m.close()
        raise InputError(path, f"complex-valued MRC data (mode {int(h.mode)}); expected real images or maps")
    if m.data is None or min(int(h.nx), int(h.ny), int(h.nz)) <= 0:
        m.close()
        raise InputError(
            path, f"truncated or corrupt MRC file: the header announces {int(h.nx)} x {int(h.ny)} x {int(h.nz)} values "
            f"of mode {int(h.mode)} but the data are missing or incomplete",
        )
    return m


def read_header(path: str | Path) -> MrcHeader:
    """Header of an MRC file without reading its data."""
    path = Path(path)
    with _open(path, mmap=True) as m:
        h = m.header
        vs = float(m.voxel_size.x)
        return MrcHeader(
            nx=int(h.nx), ny=int(h.ny), n=int(h.nz), voxel_size=vs,
            origin=(float(h.origin.x), float(h.origin.y), float(h.origin.z)), mode=int(h.mode),
        )


class _StackFile:
    """One stack read image by image with ``pread``: read pages stay in the shared page cache, not in
    the process's resident memory as a memory map's would (a training run reads every image once)."""

    def __init__(self, path: Path) -> None:
        with _open(path, mmap=True) as m:  # the header, checked; no data page is touched
            data = m.data
            self.shape = data.shape if data.ndim == 3 else (1, *data.shape)
            self.dtype = data.dtype
            offset = int(m.header.nbytes + m.extended_header.nbytes)
        if self.shape[-1] != self.shape[-2]:
            raise InputError(path, f"images are {self.shape[-1]} x {self.shape[-2]} px; expected square images")
        self.image_bytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        self.offset = offset
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, first: int, count: int = 1) -> np.ndarray:
        """Images ``first`` .. ``first + count - 1`` (count, ny, nx) in the file's data type, in one read."""
        data = read_exact(self.fd, count * self.image_bytes, self.offset + first * self.image_bytes, self.path,
                          f"image {first + count}")
        return np.frombuffer(data, self.dtype).reshape(count, *self.shape[1:])

    def close(self) -> None:
        os.close(self.fd)


class ImageStack:
    """Lazy random access to images of one or more MRCS stacks.

    Images are returned as float32 (D, D) arrays. Files are opened on first use and read image by
    image (no memory map), so a process's memory does not grow with the stacks it has read.
    """

    def __init__(self) -> None:
        self._open: dict[str, _StackFile] = {}

    def _file(self, path: str | Path) -> _StackFile:
        key = str(path)
        if key not in self._open:
            self._open[key] = _StackFile(Path(path))
        return self._open[key]

    def data(self, path: str | Path) -> np.ndarray:
        """All (n, ny, nx) data of one stack (a single 2-D image becomes n = 1), read into memory."""
        f = self._file(path)
        return f.read(0, f.shape[0])

    def image(self, path: str | Path, index: int, label: str = "") -> np.ndarray:
        """Image ``index`` (0-based) of stack ``path`` as float32; ``label`` names the table row."""
        f = self._file(path)
        if not 0 <= index < f.shape[0]:
            where = f" ({label})" if label else ""
            raise InputError(
                path, f"image index {index + 1} (1-based){where} is beyond the stack, which holds {f.shape[0]} images"
            )
        img = f.read(index)[0].astype(np.float32)  # a writable copy
        if not np.isfinite(img).all():
            where = f" ({label})" if label else ""
            raise InputError(path, f"image {index + 1}{where} contains NaN or infinite pixels")
        return img

    def close(self) -> None:
        """Close the open files."""
        for f in self._open.values():
            f.close()
        self._open.clear()


class StackWriter:
    """Append images to an MRCS file chunk by chunk without holding the stack in memory; 32-bit
    floats (MRC mode 2), or 16-bit (mode 12: half the disk, about 3 significant digits) with ``float16``.
    Chunks are written with ``pwrite`` (a memory map would count every written page in the process)
    and the header statistics (min, max, mean, RMS deviation) are accumulated as they come."""

    def __init__(self, path: str | Path, n: int, d: int, apix: float, float16: bool = False) -> None:
        self.path = Path(path)
        with mrcfile.new_mmap(self.path, shape=(n, d, d), mrc_mode=12 if float16 else 2, overwrite=True) as m:
            m.header.ispg = 0
            m.voxel_size = apix
            self._offset = int(m.header.nbytes + m.extended_header.nbytes)
            self._dtype = m.data.dtype
        self._image_bytes = d * d * self._dtype.itemsize
        self._fd = os.open(self.path, os.O_WRONLY)
        self._next = 0
        self._n_values = n * d * d
        self._low, self._high, self._sum, self._squares = np.inf, -np.inf, 0.0, 0.0

    def write(self, images: np.ndarray) -> None:
        """Append (k, D, D) images."""
        block = np.ascontiguousarray(images, dtype=self._dtype)
        write_all(self._fd, block, self._offset + self._next * self._image_bytes)
        self._next += len(block)
        self._low = min(self._low, float(block.min(initial=np.inf)))
        self._high = max(self._high, float(block.max(initial=-np.inf)))
        self._sum += float(block.sum(dtype=np.float64))
        self._squares += float(np.square(block, dtype=np.float32).sum(dtype=np.float64))

    def close(self) -> None:
        """Write the header statistics and close the file."""
        os.close(self._fd)
        mean = self._sum / self._n_values
        with mrcfile.mmap(self.path, mode="r+", permissive=True) as m:  # the header only: no data page is read
            m.header.dmin, m.header.dmax, m.header.dmean = self._low, self._high, mean
            m.header.rms = np.sqrt(max(self._squares / self._n_values - mean**2, 0.0))


def write_volume(path: str | Path, volume: np.ndarray, apix: float, origin: tuple[float, float, float] | None = None) -> None:
    """Write a (nz, ny, nx) volume with voxel size ``apix`` Å.

    ``origin`` is the header origin in Å (x, y, z); by default ``-(n//2) * apix`` on each axis so the
    model frame (0 Å at voxel ``D//2``) lines up with the map in ChimeraX.
    """
    volume = np.ascontiguousarray(volume, dtype=np.float32)
    if origin is None:
        nz, ny, nx = volume.shape
        origin = (-(nx // 2) * apix, -(ny // 2) * apix, -(nz // 2) * apix)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(volume)
        m.voxel_size = apix
        m.header.origin.x, m.header.origin.y, m.header.origin.z = origin


def read_volume(path: str | Path) -> tuple[np.ndarray, float, tuple[float, float, float]]:
    """A volume (nz, ny, nx) float32, its voxel size (Å) and header origin (x, y, z) in Å."""
    path = Path(path)
    with _open(path, mmap=False) as m:
        data = np.asarray(m.data, dtype=np.float32)
        if data.ndim != 3:
            raise InputError(path, f"expected a 3-D volume, found data of shape {data.shape}")
        o = m.header.origin
        return data, float(m.voxel_size.x), (float(o.x), float(o.y), float(o.z))
