"""cryoDRGN pickles: ``poses.pkl`` = (rotations (N,3,3), translations (N,2) as a fraction of the
box) and ``ctf.pkl`` = (N, 9) array (D, apix, dfU Å, dfV Å, dfang deg, kV, Cs mm, w, phase deg).

cryoDRGN stores the same rotation matrices and the same origin sign as RELION (translation = origin
in px / D), so conversion is a change of units only.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from cryodyna.errors import InputError
from cryodyna.io.mrc import read_header
from cryodyna.io.particles import ParticleTable


def load_pickle(path: Path):
    """Unpickle a cryoDRGN file (numpy arrays / tuples only are expected)."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception as exc:
        raise InputError(path, f"cannot unpickle ({type(exc).__name__}: {exc})") from None


def read_ctf_pkl(path: str | Path) -> np.ndarray:
    """cryoDRGN CTF parameters as a validated (N, 9) float64 array."""
    path = Path(path)
    ctf = np.asarray(load_pickle(path), dtype=np.float64)
    if ctf.ndim != 2 or ctf.shape[1] != 9:
        raise InputError(path, f"expected an (N, 9) CTF array (D, apix, dfU, dfV, dfang, kV, Cs, w, phase), found shape {ctf.shape}")
    if not np.isfinite(ctf).all():
        raise InputError(path, f"row {int(np.flatnonzero(~np.isfinite(ctf).all(1))[0]) + 1} has non-finite values")
    return ctf


def read_poses_pkl(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """cryoDRGN poses: rotations (N, 3, 3) and translations (N, 2) as a fraction of the box (or None)."""
    path = Path(path)
    obj = load_pickle(path)
    rot, trans = (obj[0], obj[1]) if isinstance(obj, tuple) else (obj, None)
    rot = np.asarray(rot, dtype=np.float64)
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise InputError(path, f"expected rotations of shape (N, 3, 3), found {rot.shape}")
    if trans is not None:
        trans = np.asarray(trans, dtype=np.float64)
        if trans.shape != (rot.shape[0], 2):
            raise InputError(path, f"expected translations of shape ({rot.shape[0]}, 2), found {trans.shape}")
    return rot, trans


def read_cryodrgn(stack: str | Path, poses: str | Path | None, ctf: str | Path) -> ParticleTable:
    """Particle table for an image stack described by cryoDRGN pickles; image ``i`` of the stack is
    particle ``i``."""
    stack = Path(stack)
    header = read_header(stack)
    params = read_ctf_pkl(ctf)
    n = header.n
    if len(params) != n:
        raise InputError(ctf, f"has {len(params)} rows but the stack {stack} holds {n} images")
    rotations, shifts = None, np.zeros((n, 2))
    if poses is not None:
        rotations, trans = read_poses_pkl(poses)
        if len(rotations) != n:
            raise InputError(poses, f"has {len(rotations)} poses but the stack {stack} holds {n} images")
        if trans is not None:
            shifts = trans * params[:, [0]] * params[:, [1]]
    return ParticleTable(
        image_file=np.full(n, str(stack.resolve()), dtype=object),
        image_index=np.arange(n, dtype=np.int64),
        rotations=rotations,
        shifts=shifts,
        defocus_u=params[:, 2],
        defocus_v=params[:, 3],
        astig_angle=np.deg2rad(params[:, 4]),
        voltage=params[:, 5],
        cs=params[:, 6],
        amp_contrast=params[:, 7],
        phase_shift=np.deg2rad(params[:, 8]),
        pixel_size=params[:, 1],
        box=params[:, 0].astype(np.int64),
        optics_group=np.ones(n, np.int64),
        source=stack,
    )


def ctf_array(table: ParticleTable) -> np.ndarray:
    """The (N, 9) cryoDRGN CTF array of a table."""
    return np.stack(
        [table.box, table.pixel_size, table.defocus_u, table.defocus_v, np.rad2deg(table.astig_angle),
         table.voltage, table.cs, table.amp_contrast, np.rad2deg(table.phase_shift)],
        axis=1,
    ).astype(np.float32)


def write_cryodrgn(poses_path: str | Path, ctf_path: str | Path, table: ParticleTable) -> None:
    """Write cryoDRGN ``poses.pkl`` (rotations, translations / box) and ``ctf.pkl``."""
    if table.rotations is None:
        raise InputError(table.source, "the particle table has no poses to write")
    trans = table.shifts / (table.pixel_size * table.box)[:, None]
    with open(poses_path, "wb") as fh:
        pickle.dump((table.rotations.astype(np.float32), trans.astype(np.float32)), fh)
    with open(ctf_path, "wb") as fh:
        pickle.dump(ctf_array(table), fh)
