"""What a simulation makes (:class:`SimulationSpec`): the defaults of ``cryodyna simulate``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryodyna.errors import CryodynaError


@dataclass
class SimulationSpec:
    """What to simulate.

    n_particles; box [px]; apix [Å/px]; snr (var signal / var noise; None = noiseless);
    density: "atom" (each atom a Gaussian of width ``atom_sigma`` Å, amplitude = atomic number) or
    "residue" (one Gaussian per residue at CA/C1', width ``residue_sigma`` Å, amplitude = electrons);
    defocus_min/max [Å] (uniform), astigmatism_max [Å] (dfU - dfV uniform in [0, max]),
    voltage [kV], cs [mm], amp_contrast; bfactor [Å^2] CTF envelope (0 = none);
    max_shift [Å] (origins uniform in [-max, max] on x and y); seed; batch_size (small batches keep
    the projection in cache: 8 is fastest on CPU); normal_modes, mode_amplitude [Å RMS per mode],
    mode_path, mode_cutoff [Å]: elastic-network motions added to every conformation (see
    :mod:`cryodyna.simulate.landscape`); pose_error_deg [degrees RMS rotation angle] and
    shift_error_a [Å RMS in-plane offset]: the STAR file gets poses perturbed by this much (images
    and ``ground_truth.npz`` keep the true ones), as a consensus refinement would give; float16:
    write the stack as 16-bit floats (MRC mode 12, half the disk).
    """

    n_particles: int = 1000
    box: int = 64
    apix: float = 2.0
    snr: float | None = 0.1
    density: Literal["atom", "residue"] = "atom"
    atom_sigma: float = 1.0
    residue_sigma: float = 2.0
    defocus_min: float = 10000.0
    defocus_max: float = 25000.0
    astigmatism_max: float = 500.0
    voltage: float = 300.0
    cs: float = 2.7
    amp_contrast: float = 0.1
    bfactor: float = 0.0
    max_shift: float = 4.0
    seed: int = 0
    batch_size: int = 8
    normal_modes: int = 0
    mode_amplitude: float = 3.0
    mode_path: Literal["independent", "arc"] = "independent"
    mode_cutoff: float = 15.0
    pose_error_deg: float = 0.0
    shift_error_a: float = 0.0
    float16: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.density not in ("atom", "residue"):
            problems.append(f"density must be 'atom' or 'residue', not {self.density!r}")
        if self.n_particles < 1 or self.box < 8 or self.apix <= 0 or self.batch_size < 1:
            problems.append("n_particles >= 1, box >= 8 px, apix > 0 and batch_size >= 1 are required")
        if self.snr is not None and self.snr <= 0:
            problems.append(f"snr must be positive (or None for noiseless images), not {self.snr}")
        if not 0 <= self.defocus_min <= self.defocus_max:
            problems.append(f"need 0 <= defocus_min <= defocus_max, got {self.defocus_min}, {self.defocus_max}")
        if self.normal_modes < 0 or self.mode_amplitude < 0 or self.mode_cutoff <= 0:
            problems.append("normal_modes >= 0, mode_amplitude >= 0 Å and mode_cutoff > 0 Å are required")
        if self.mode_path not in ("independent", "arc"):
            problems.append(f"mode_path must be 'independent' or 'arc', not {self.mode_path!r}")
        if self.pose_error_deg < 0 or self.shift_error_a < 0:
            problems.append("pose_error_deg >= 0 and shift_error_a >= 0 are required")
        if problems:
            raise CryodynaError("invalid simulation settings: " + "; ".join(problems))
