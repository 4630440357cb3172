"""RELION STAR files (3.0 single block, 3.1/4/5 with optics groups) <-> :class:`ParticleTable`."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryodyna.errors import InputError
from cryodyna.io.angles import euler_relion_to_matrix, matrix_to_euler_relion
from cryodyna.io.mrc import read_header
from cryodyna.io.particles import ParticleTable
from cryodyna.io.paths import resolve_stack_path

OPTICS_FIELDS = {
    "voltage": "rlnVoltage",
    "cs": "rlnSphericalAberration",
    "amp_contrast": "rlnAmplitudeContrast",
}


def read_star_blocks(path: Path) -> dict[str, pd.DataFrame]:
    """All data blocks of a STAR file as DataFrames; a clear error for unreadable or empty files."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises assorted parser errors
        raise InputError(path, f"cannot parse as a STAR file ({type(exc).__name__}: {exc})") from None
    blocks = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame) and len(v.columns)}
    if not blocks:
        raise InputError(path, "no data block with a loop_ found; expected a RELION particles STAR file")
    return blocks


def _particles_block(path: Path, blocks: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if "particles" in blocks:
        return blocks["particles"]
    with_images = [df for df in blocks.values() if "rlnImageName" in df.columns]
    if not with_images:
        raise InputError(path, f"no block has the column rlnImageName (blocks: {', '.join(blocks) or 'none'})")
    return with_images[0]


def _numeric(path: Path, df: pd.DataFrame, column: str, block: str = "particles") -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            path, f"{block} row {i + 1}, column {column}: value {df[column].iloc[i]!r} is not a finite number"
        )
    return values


def _parse_image_names(path: Path, names: pd.Series, datadir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    parts = names.astype(str).str.split("@", n=1, expand=True)
    if parts.shape[1] != 2 or parts[1].isna().any():
        i = int(np.flatnonzero(parts[1].isna())[0]) if parts.shape[1] == 2 else 0
        raise InputError(path, f"particles row {i + 1}, rlnImageName {names.iloc[i]!r}: expected 'INDEX@STACK'")
    index = pd.to_numeric(parts[0], errors="coerce")
    bad = np.flatnonzero(~np.isfinite(index.to_numpy(dtype=float)) | (index.to_numpy(dtype=float) < 1))
    if bad.size:
        i = int(bad[0])
        raise InputError(path, f"particles row {i + 1}, rlnImageName {names.iloc[i]!r}: index must be an integer >= 1")
    cache: dict[str, str] = {}
    files = np.empty(len(names), dtype=object)
    for i, name in enumerate(parts[1].to_numpy()):
        if name not in cache:
            cache[name] = resolve_stack_path(name, path.parent, datadir)
        files[i] = cache[name]
    return files, index.to_numpy(dtype=np.int64) - 1


def read_star(path: str | Path, datadir: str | Path | None = None, apix: float | None = None, box: int | None = None) -> ParticleTable:
    """Read a RELION particles STAR file.

    ``apix``/``box`` override or supply the pixel size (Å) and image side (px) when the file does
    not carry them (RELION 3.0 files without ``rlnImagePixelSize``); otherwise the box is read from
    the stack headers when the stacks exist.
    """
    path = Path(path)
    blocks = read_star_blocks(path)
    df = _particles_block(path, blocks).reset_index(drop=True)
    if len(df) == 0:
        raise InputError(path, "the particles block has no rows")
    optics = blocks.get("optics")
    n = len(df)
    if "rlnImageName" not in df.columns:
        raise InputError(path, "missing column rlnImageName in the particles block")
    files, index = _parse_image_names(path, df["rlnImageName"], None if datadir is None else Path(datadir))

    group = _numeric(path, df, "rlnOpticsGroup").astype(np.int64) if "rlnOpticsGroup" in df.columns else np.ones(n, np.int64)

    def per_particle(column: str, default: float | None = None) -> np.ndarray:
        """Column from the particles block, else from the optics group of each particle."""
        if column in df.columns:
            return _numeric(path, df, column)
        if optics is not None and column in optics.columns:
            ids = _numeric(path, optics, "rlnOpticsGroup", "optics").astype(np.int64) if "rlnOpticsGroup" in optics.columns else np.arange(1, len(optics) + 1)
            values = _numeric(path, optics, column, "optics")
            lookup = dict(zip(ids.tolist(), values.tolist()))
            missing = sorted(set(group.tolist()) - set(lookup))
            if missing:
                raise InputError(path, f"particles refer to optics group {missing[0]}, which the optics block does not define")
            return np.array([lookup[g] for g in group.tolist()], dtype=np.float64)
        if default is not None:
            return np.full(n, default, dtype=np.float64)
        raise InputError(path, f"missing column {column} (looked in the particles and optics blocks)")

    pixel_size = _pixel_size(path, df, optics, per_particle, apix, n)
    if box is not None:
        box_arr = np.full(n, int(box), dtype=np.int64)
    elif (optics is not None and "rlnImageSize" in optics.columns) or "rlnImageSize" in df.columns:
        box_arr = per_particle("rlnImageSize").astype(np.int64)
    else:
        box_arr = _box_from_stacks(files)

    defocus_u = per_particle("rlnDefocusU")
    defocus_v = per_particle("rlnDefocusV", default=np.nan)
    defocus_v = np.where(np.isnan(defocus_v), defocus_u, defocus_v)

    rotations = None
    angle_cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    present = [c for c in angle_cols if c in df.columns]
    if present and len(present) < 3:
        missing = sorted(set(angle_cols) - set(present))
        raise InputError(path, f"pose columns incomplete: have {', '.join(present)} but not {', '.join(missing)}")
    if present:
        rot, tilt, psi = (np.deg2rad(_numeric(path, df, c)) for c in angle_cols)
        rotations = euler_relion_to_matrix(rot, tilt, psi)

    if "rlnOriginXAngst" in df.columns or "rlnOriginYAngst" in df.columns:
        shifts = np.stack([per_particle("rlnOriginXAngst", 0.0), per_particle("rlnOriginYAngst", 0.0)], axis=1)
    elif "rlnOriginX" in df.columns or "rlnOriginY" in df.columns:
        px = np.stack([per_particle("rlnOriginX", 0.0), per_particle("rlnOriginY", 0.0)], axis=1)
        if np.isnan(pixel_size).any() and np.any(px != 0):
            raise InputError(path, "rlnOriginX/Y are in pixels but the file has no pixel size; pass --apix")
        shifts = px * np.nan_to_num(pixel_size)[:, None]
    else:
        shifts = np.zeros((n, 2))

    return ParticleTable(
        image_file=files,
        image_index=index,
        rotations=rotations,
        shifts=shifts,
        defocus_u=defocus_u,
        defocus_v=defocus_v,
        astig_angle=np.deg2rad(per_particle("rlnDefocusAngle", 0.0)),
        voltage=per_particle(OPTICS_FIELDS["voltage"]),
        cs=per_particle(OPTICS_FIELDS["cs"]),
        amp_contrast=_amplitude_contrast(path, df, optics, per_particle),
        phase_shift=np.deg2rad(per_particle("rlnPhaseShift", 0.0)),
        pixel_size=pixel_size,
        box=box_arr,
        optics_group=group,
        source=path,
        random_subset=_random_subset(path, df),
    )


def _random_subset(path: Path, df: pd.DataFrame) -> np.ndarray | None:
    """rlnRandomSubset (1 or 2 per particle) when the file has it."""
    if "rlnRandomSubset" not in df.columns:
        return None
    subset = _numeric(path, df, "rlnRandomSubset")
    bad = np.flatnonzero((subset != 1) & (subset != 2))
    if bad.size:
        raise InputError(path, f"row {bad[0] + 1}: rlnRandomSubset is {subset[bad[0]]:g}; expected 1 or 2")
    return subset.astype(np.int64)


def _amplitude_contrast(path, df, optics, per_particle) -> np.ndarray:
    """rlnAmplitudeContrast, or 0.1 with a warning when absent (cryoDRGN's default)."""
    column = OPTICS_FIELDS["amp_contrast"]
    if column not in df.columns and (optics is None or column not in optics.columns):
        warnings.warn(f"{path}: no {column} column; assuming amplitude contrast 0.1", stacklevel=3)
    return per_particle(column, 0.1)


def _pixel_size(path, df, optics, per_particle, apix, n) -> np.ndarray:
    if apix is not None:
        return np.full(n, float(apix))
    if (optics is not None and "rlnImagePixelSize" in optics.columns) or "rlnImagePixelSize" in df.columns:
        return per_particle("rlnImagePixelSize")
    if "rlnDetectorPixelSize" in df.columns and "rlnMagnification" in df.columns:
        return _numeric(path, df, "rlnDetectorPixelSize") / _numeric(path, df, "rlnMagnification") * 1e4
    return np.full(n, np.nan)


def _box_from_stacks(files: np.ndarray) -> np.ndarray:
    box = np.full(len(files), -1, dtype=np.int64)
    for f in np.unique(files):
        if os.path.isfile(f):
            box[files == f] = read_header(f).nx
    return box


def write_star(path: str | Path, table: ParticleTable) -> None:
    """Write ``table`` as a RELION 3.1 STAR file (optics + particles blocks).

    Stack paths are written relative to the STAR file's folder when they lie below it, otherwise
    absolute.  Optics groups are rebuilt from the distinct (group, pixel size, box, voltage, Cs,
    amplitude contrast) combinations.
    """
    path = Path(path)
    key = np.stack(
        [table.optics_group, table.pixel_size, table.box, table.voltage, table.cs, table.amp_contrast], axis=1
    ).astype(np.float64)
    unique, group = np.unique(key, axis=0, return_inverse=True)
    group = group.reshape(-1) + 1
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": np.arange(1, len(unique) + 1),
            "rlnOpticsGroupName": [f"opticsGroup{i}" for i in range(1, len(unique) + 1)],
            "rlnAmplitudeContrast": unique[:, 5],
            "rlnSphericalAberration": unique[:, 4],
            "rlnVoltage": unique[:, 3],
            "rlnImagePixelSize": unique[:, 1],
            "rlnImageSize": unique[:, 2].astype(np.int64),
            "rlnImageDimensionality": 2,
        }
    )
    particles = {"rlnImageName": _image_names(table, path.parent)}
    if table.rotations is not None:
        rot, tilt, psi = matrix_to_euler_relion(table.rotations)
        particles.update(rlnAngleRot=np.rad2deg(rot), rlnAngleTilt=np.rad2deg(tilt), rlnAnglePsi=np.rad2deg(psi))
    particles.update(
        rlnOriginXAngst=table.shifts[:, 0],
        rlnOriginYAngst=table.shifts[:, 1],
        rlnDefocusU=table.defocus_u,
        rlnDefocusV=table.defocus_v,
        rlnDefocusAngle=np.rad2deg(table.astig_angle),
        rlnPhaseShift=np.rad2deg(table.phase_shift),
        rlnOpticsGroup=group,
    )
    if table.random_subset is not None:
        particles["rlnRandomSubset"] = table.random_subset
    starfile.write({"optics": optics, "particles": pd.DataFrame(particles)}, path, overwrite=True, float_format="%.6f")


def _image_names(table: ParticleTable, folder: Path) -> list[str]:
    """``rlnImageName`` values (``NNNNNN@stack``) of ``table`` for a STAR file in ``folder``: stack
    paths relative to it when they lie below it, otherwise absolute."""
    base = folder.resolve()

    def rel(f: str) -> str:
        try:
            return str(Path(f).resolve().relative_to(base))
        except ValueError:
            return str(Path(f).resolve())

    names = {f: rel(f) for f in np.unique(table.image_file)}
    return [f"{i + 1:06d}@{names[f]}" for f, i in zip(table.image_file, table.image_index)]


def write_star_with_poses(path: str | Path, table: ParticleTable, rotations: np.ndarray, shifts: np.ndarray) -> None:
    """Write ``table`` with new poses: rotations (N, 3, 3) and RELION origins (N, 2) in Å.

    When ``table`` was read from a STAR file, that file is copied with every block, column and row
    kept and only the angles, origins (in Å, or in px where it uses the legacy ``rlnOriginX/Y``) and
    image paths (re-based to the new folder) replaced; otherwise a RELION 3.1 file is written.
    """
    path = Path(path)
    source = table.source
    if source is None or Path(source).suffix.lower() != ".star":
        write_star(path, replace(table, rotations=rotations, shifts=shifts))
        return
    blocks = read_star_blocks(Path(source))
    key = "particles" if "particles" in blocks else next(k for k, v in blocks.items() if "rlnImageName" in v.columns)
    df = blocks[key].reset_index(drop=True).copy()
    if len(df) != len(rotations):
        raise InputError(source, f"has {len(df)} particle rows, the refined poses {len(rotations)}")
    rot, tilt, psi = matrix_to_euler_relion(rotations)
    df["rlnAngleRot"], df["rlnAngleTilt"], df["rlnAnglePsi"] = np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)
    legacy = "rlnOriginXAngst" not in df.columns and "rlnOriginX" in df.columns
    if legacy:
        df["rlnOriginX"], df["rlnOriginY"] = shifts[:, 0] / table.pixel_size, shifts[:, 1] / table.pixel_size
    else:
        df["rlnOriginXAngst"], df["rlnOriginYAngst"] = shifts[:, 0], shifts[:, 1]
    df["rlnImageName"] = _image_names(table, path.parent)
    blocks[key] = df
    starfile.write(blocks, path, overwrite=True, float_format="%.6f")
