"""Fourier shell correlation between two maps: curve, resolution at a threshold, area under the curve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryodyna.errors import InputError
from cryodyna.io.mrc import read_volume


@dataclass
class FSCResult:
    """frequency (S,) cycles/Å at the shell centres 1..D//2 (shell r px -> r / (D apix));
    fsc (S,) correlation per shell; apix Å/voxel."""

    frequency: np.ndarray
    fsc: np.ndarray
    apix: float

    def resolution(self, threshold: float) -> float:
        """Resolution (Å) where the curve first drops below ``threshold`` (linear interpolation
        between shells); the Nyquist resolution ``2 apix`` if it never does."""
        below = np.flatnonzero(self.fsc < threshold)
        if below.size == 0:
            return 2 * self.apix
        i = int(below[0])
        if i == 0:
            return 1 / self.frequency[0]
        f0, f1, c0, c1 = self.frequency[i - 1], self.frequency[i], self.fsc[i - 1], self.fsc[i]
        return 1 / (f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0))

    def describe(self, threshold: float) -> str:
        """``3.45 Å``, or ``above 0.143 up to Nyquist (3.20 Å)`` when the curve never drops below ``threshold``."""
        if (self.fsc < threshold).any():
            return f"{self.resolution(threshold):.2f} Å"
        return f"above {threshold:g} up to Nyquist ({2 * self.apix:.2f} Å)"

    def to_csv(self, path: Path) -> None:
        """Columns frequency (1/Å), resolution (Å), fsc."""
        table = np.stack([self.frequency, 1 / self.frequency, self.fsc], 1)
        np.savetxt(path, table, delimiter=",", header="frequency_per_A,resolution_A,fsc", comments="", fmt="%.6g")

    @property
    def auc(self) -> float:
        """Area under the FSC curve with frequency in units of Nyquist (1 = perfect to Nyquist)."""
        x = self.frequency / self.frequency[-1]
        return float(np.trapezoid(np.concatenate([[1.0], self.fsc]), np.concatenate([[0.0], x])))


def fourier_shells(d: int) -> np.ndarray:
    """Shell of every voxel (D^3,) of a centred (D, D, D) spectrum: its distance from the zero
    frequency (voxel D//2) in Fourier pixels, rounded (shell r holds ``r - 0.5 <= |k| < r + 0.5``)."""
    n = np.arange(d) - d // 2
    r = np.sqrt(n[:, None, None] ** 2 + n[None, :, None] ** 2 + n[None, None, :] ** 2)
    return np.rint(r).astype(np.int64).ravel()


def fsc(map1: np.ndarray, map2: np.ndarray, apix: float, mask: np.ndarray | None = None) -> FSCResult:
    """FSC of two (D, D, D) maps (optionally both multiplied by ``mask``) over shells of 1 Fourier
    pixel up to Nyquist, shells ``r - 0.5 <= |k| < r + 0.5``."""
    if map1.shape != map2.shape or map1.ndim != 3 or len(set(map1.shape)) != 1:
        raise ValueError(f"FSC needs two cubic maps of the same shape, got {map1.shape} and {map2.shape}")
    if mask is not None:
        if mask.shape != map1.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the maps' {map1.shape}")
        map1, map2 = map1 * mask, map2 * mask
    d = map1.shape[0]
    f1 = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(map1.astype(np.float64))))
    f2 = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(map2.astype(np.float64))))
    shell = fourier_shells(d)
    keep = shell <= d // 2
    shell, a, b = shell[keep], f1.ravel()[keep], f2.ravel()[keep]
    n_shells = d // 2 + 1
    cross = np.bincount(shell, (a * b.conj()).real, n_shells)
    p1 = np.bincount(shell, np.abs(a) ** 2, n_shells)
    p2 = np.bincount(shell, np.abs(b) ** 2, n_shells)
    curve = cross / np.sqrt(np.maximum(p1 * p2, 1e-300))
    shells = np.arange(1, n_shells)
    return FSCResult(shells / (d * apix), curve[1:], apix)


def map_fsc(path1: Path, path2: Path, mask_path: Path | None = None) -> FSCResult:
    """FSC of two MRC maps (optionally masked); the boxes and voxel sizes must agree."""
    v1, a1, _ = read_volume(path1)
    v2, a2, _ = read_volume(path2)
    if v1.shape != v2.shape:
        raise InputError(path2, f"box {v2.shape} differs from {Path(path1).name}'s {v1.shape}; resample one map first")
    if len(set(v1.shape)) != 1:
        raise InputError(path1, f"FSC needs a cubic map, found shape {v1.shape}")
    if abs(a1 - a2) > 1e-3 * a1:
        raise InputError(path2, f"voxel size {a2:.4f} Å differs from {Path(path1).name}'s {a1:.4f} Å")
    mask = None
    if mask_path is not None:
        mask, _, _ = read_volume(mask_path)
        if mask.shape != v1.shape:
            raise InputError(mask_path, f"mask box {mask.shape} differs from the maps' {v1.shape}")
    return fsc(v1, v2, a1, mask)
