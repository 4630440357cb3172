"""Maps of a trained density generator at chosen latents (``cryodyna sample-volumes``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryodyna.assembly.volume import load_density_run
from cryodyna.io.mrc import write_volume
from cryodyna.models.sampling import render_volume


def sample_volumes(run_dir: Path, z: np.ndarray | None, out_dir: Path, box: int | None = None, apix: float | None = None,
                   checkpoint: Path | None = None, device: str = "cpu") -> list[Path]:
    """Write ``vol_000.mrc``... (one per latent row, or one homogeneous volume) and ``z_values.txt``."""
    model, info = load_density_run(run_dir, checkpoint, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [None] if z is None else list(z)
    apix_out = apix or info["apix"] * info["box"] / (box or info["box"])
    paths = []
    for i, zi in enumerate(rows):
        vol = render_volume(model, zi, info["apix"], box or info["box"], apix_out, info["fourier_radius"])
        paths.append(out_dir / f"vol_{i:03d}.mrc")
        write_volume(paths[-1], vol, apix_out)
    if z is not None:
        np.savetxt(out_dir / "z_values.txt", z, fmt="%.5f")
    return paths
