"""cryoSPARC particle tables (``.cs``: numpy structured arrays) -> :class:`ParticleTable`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryodyna.errors import InputError
from cryodyna.io.angles import cryosparc_pose_to_matrix
from cryodyna.io.particles import ParticleTable
from cryodyna.io.paths import resolve_stack_path

REQUIRED = ["blob/path", "blob/idx", "blob/shape", "blob/psize_A", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast", "ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad"]


def load_cs(path: Path) -> np.ndarray:
    """The structured array of a ``.cs`` file, with a clear error when it is not one."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(path, f"not a cryoSPARC .cs file (numpy structured array): {exc}") from None
    if data.dtype.names is None or data.ndim != 1:
        raise InputError(path, "not a cryoSPARC .cs file: expected a 1-D numpy structured array")
    if len(data) == 0:
        raise InputError(path, "the particle table is empty")
    return data


def read_cs(path: str | Path, datadir: str | Path | None = None) -> ParticleTable:
    """Read poses (``alignments3D/pose`` axis-angle, ``alignments3D/shift`` px), CTF and image
    references (``blob/path``, ``blob/idx``) from a cryoSPARC ``.cs`` file.

    Rotations become RELION-convention matrices (``expmap(pose).T``); shifts are converted to Å with
    the blob pixel size and keep RELION's origin semantics (as cryoDRGN reads them).
    """
    path = Path(path)
    data = load_cs(path)
    names = data.dtype.names
    missing = [f for f in REQUIRED if f not in names]
    if missing:
        raise InputError(path, f"missing field(s) {', '.join(missing)}; expected a cryoSPARC particles .cs with blob and ctf fields")
    n = len(data)
    for field in REQUIRED[3:]:
        values = np.asarray(data[field], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputError(path, f"row {bad[0] + 1}, field {field}: value {values[bad[0]]} is not finite")
    apix = np.asarray(data["blob/psize_A"], dtype=np.float64)
    box = np.asarray(data["blob/shape"], dtype=np.int64)[:, -1]
    datadir = None if datadir is None else Path(datadir)
    cache: dict[bytes, str] = {}
    files = np.empty(n, dtype=object)
    for i, raw in enumerate(data["blob/path"]):
        if raw not in cache:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            cache[raw] = resolve_stack_path(name.lstrip(">"), path.parent, datadir)
        files[i] = cache[raw]
    rotations = None
    shifts = np.zeros((n, 2))
    if "alignments3D/pose" in names:
        rotations = cryosparc_pose_to_matrix(np.asarray(data["alignments3D/pose"], dtype=np.float64))
        if "alignments3D/shift" in names:
            shifts = np.asarray(data["alignments3D/shift"], dtype=np.float64) * apix[:, None]
    phase = np.asarray(data["ctf/phase_shift_rad"], dtype=np.float64) if "ctf/phase_shift_rad" in names else np.zeros(n)
    group = np.asarray(data["ctf/exp_group_id"], dtype=np.int64) + 1 if "ctf/exp_group_id" in names else np.ones(n, np.int64)
    subset = None
    if "alignments3D/split" in names:  # 0/1 in cryoSPARC; 1/2 as RELION's rlnRandomSubset
        subset = np.asarray(data["alignments3D/split"], dtype=np.int64) + 1
        bad = np.flatnonzero((subset != 1) & (subset != 2))
        if bad.size:
            raise InputError(path, f"row {bad[0] + 1}, field alignments3D/split: value {subset[bad[0]] - 1}; expected 0 or 1")
    return ParticleTable(
        image_file=files,
        image_index=np.asarray(data["blob/idx"], dtype=np.int64),
        rotations=rotations,
        shifts=shifts,
        defocus_u=np.asarray(data["ctf/df1_A"], dtype=np.float64),
        defocus_v=np.asarray(data["ctf/df2_A"], dtype=np.float64),
        astig_angle=np.asarray(data["ctf/df_angle_rad"], dtype=np.float64),
        voltage=np.asarray(data["ctf/accel_kv"], dtype=np.float64),
        cs=np.asarray(data["ctf/cs_mm"], dtype=np.float64),
        amp_contrast=np.asarray(data["ctf/amp_contrast"], dtype=np.float64),
        phase_shift=phase,
        pixel_size=apix,
        box=box,
        optics_group=group,
        source=path,
        random_subset=subset,
    )
