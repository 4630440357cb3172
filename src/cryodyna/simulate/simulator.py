"""Simulate a RELION 3.1 particle dataset from one or more conformations of a model.

Image model per particle: Gaussian projection of the posed structure (every atom, or one Gaussian
per residue) -> CTF -> placement by the RELION origin (Fourier phase ramp, particle centre at
``-origin``) -> additive white Gaussian noise.  SNR is var(signal) / var(noise), with the signal
variance measured over the whole box of the noiseless CTF-modulated images (mean over particles), so
the noise level is the same for every particle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from cryodyna.errors import CryodynaError, InputError
from cryodyna.imaging.ctf import CTFParams, compute_ctf
from cryodyna.imaging.fft import fft2_center, ifft2_center
from cryodyna.imaging.projection import project_gaussians
from cryodyna.imaging.rotations import random_rotations
from cryodyna.imaging.shift import apply_origin
from cryodyna.io.mrc import StackWriter
from cryodyna.io.particles import ParticleTable
from cryodyna.io.star import write_star
from cryodyna.io.structure import Structure
from cryodyna.structure.nodes import residue_nodes


@dataclass
class SimulationSpec:
    """What to simulate.

    n_particles; box [px]; apix [Å/px]; snr (var signal / var noise; None = noiseless);
    density: "atom" (each atom a Gaussian of width ``atom_sigma`` Å, amplitude = atomic number) or
    "residue" (one Gaussian per residue at CA/C1', width ``residue_sigma`` Å, amplitude = electrons);
    defocus_min/max [Å] (uniform), astigmatism_max [Å] (dfU - dfV uniform in [0, max]),
    voltage [kV], cs [mm], amp_contrast; bfactor [Å^2] CTF envelope (0 = none);
    max_shift [Å] (origins uniform in [-max, max] on x and y); seed; batch_size (small batches keep
    the projection in cache: 8 is fastest on CPU).
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
        if problems:
            raise CryodynaError("invalid simulation settings: " + "; ".join(problems))


def sample_path(n: int, n_states: int, mode: Literal["interpolate", "discrete"], weights, rng) -> tuple[np.ndarray, np.ndarray]:
    """Per-particle conformation: (state index (n,), coordinate (n,)).

    ``interpolate``: coordinate ``u`` uniform in [0, 1] along the piecewise-linear path through the
    states; state index = nearest state.  ``discrete``: state drawn with ``weights``; coordinate =
    state / (n_states - 1).
    """
    if mode == "interpolate":
        if n_states < 2:
            raise ValueError("interpolation needs at least two states")
        u = rng.uniform(0.0, 1.0, n)
        return np.rint(u * (n_states - 1)).astype(np.int64), u
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    state = rng.choice(n_states, size=n, p=p)
    return state, state / max(n_states - 1, 1)


def _coords_at(states: np.ndarray, u: np.ndarray, mode: str, state: np.ndarray) -> np.ndarray:
    """Coordinates (n, A, 3) of particles at path coordinate ``u`` (interpolate) or ``state``."""
    if mode == "discrete":
        return states[state]
    pos = u * (states.shape[0] - 1)
    seg = np.minimum(np.floor(pos).astype(np.int64), states.shape[0] - 2)
    frac = (pos - seg)[:, None, None]
    return states[seg] * (1 - frac) + states[seg + 1] * frac


def simulate(
    states: list[Structure],
    spec: SimulationSpec,
    out_dir: str | Path,
    mode: Literal["interpolate", "discrete"] = "interpolate",
    weights: list[float] | None = None,
    progress=None,
) -> Path:
    """Write ``particles.mrcs``, ``particles.star`` and ``ground_truth.npz`` to ``out_dir``.

    ``states`` must share their atoms (same count, names and order) for interpolation; for discrete
    ensembles they must share the residues (so the true node coordinates are comparable).
    ``progress``: optional callable ``progress(done, total)``.  Returns the STAR path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_states(states, same_atoms=mode == "interpolate" or spec.density == "atom")
    rng = np.random.default_rng(spec.seed)
    torch.manual_seed(spec.seed)
    n = spec.n_particles
    nodes = [residue_nodes(s) for s in states]
    if spec.density == "atom":
        rep = np.stack([s.coords for s in states])
        amps = torch.as_tensor(states[0].atomic_number, dtype=torch.float32)
        sig = torch.full_like(amps, spec.atom_sigma)
    else:
        rep = np.stack([nd.coords for nd in nodes])
        amps = torch.as_tensor(nodes[0].electrons, dtype=torch.float32)
        sig = torch.full_like(amps, spec.residue_sigma)
    node_states = np.stack([nd.coords for nd in nodes])

    state, u = sample_path(n, len(states), mode, weights, rng)
    rotations = random_rotations(n, rng)
    shifts = rng.uniform(-spec.max_shift, spec.max_shift, size=(n, 2))
    dfu = rng.uniform(spec.defocus_min, spec.defocus_max, n)
    dfv = dfu - rng.uniform(0.0, spec.astigmatism_max, n)
    ang = rng.uniform(0.0, np.pi, n)

    rot_t = torch.as_tensor(rotations, dtype=torch.float32)
    shift_px = torch.as_tensor(shifts / spec.apix, dtype=torch.float32)

    def render(sl: slice) -> torch.Tensor:
        """Noiseless CTF-modulated, shifted images (b, D, D) of particles ``sl``."""
        b = sl.stop - sl.start
        coords = torch.as_tensor(_coords_at(rep, u[sl], mode, state[sl]), dtype=torch.float32)
        img = project_gaussians(coords, amps, sig, rot_t[sl], spec.box, spec.apix, norm="mass", pixel_average=True)
        params = CTFParams(
            defocus_u=torch.as_tensor(dfu[sl]), defocus_v=torch.as_tensor(dfv[sl]), astig_angle=torch.as_tensor(ang[sl]),
            voltage=torch.full((b,), spec.voltage), cs=torch.full((b,), spec.cs),
            amp_contrast=torch.full((b,), spec.amp_contrast), phase_shift=torch.zeros(b),
            bfactor=torch.full((b,), spec.bfactor) if spec.bfactor > 0 else None,
        )
        f = fft2_center(img) * compute_ctf(params, spec.box, spec.apix)
        return ifft2_center(apply_origin(f, shift_px[sl])).real

    batches = [slice(i, min(i + spec.batch_size, n)) for i in range(0, n, spec.batch_size)]
    noise_std = 0.0
    if spec.snr is not None:
        pilot = batches[: max(1, 128 // spec.batch_size)]
        signal_var = torch.cat([render(sl).var(dim=(-2, -1)) for sl in pilot]).mean()
        noise_std = float(torch.sqrt(signal_var / spec.snr))
    stack_path = out / "particles.mrcs"
    writer = StackWriter(stack_path, n, spec.box, spec.apix)
    try:
        for sl in batches:
            img = render(sl)
            if noise_std > 0:
                img = img + noise_std * torch.as_tensor(rng.standard_normal(img.shape), dtype=torch.float32)
            writer.write(img.numpy())
            if progress is not None:
                progress(sl.stop, n)
    finally:
        writer.close()

    table = ParticleTable(
        image_file=np.full(n, str(stack_path.resolve()), dtype=object), image_index=np.arange(n),
        rotations=rotations, shifts=shifts, defocus_u=dfu, defocus_v=dfv, astig_angle=ang,
        voltage=np.full(n, spec.voltage), cs=np.full(n, spec.cs), amp_contrast=np.full(n, spec.amp_contrast),
        phase_shift=np.zeros(n), pixel_size=np.full(n, spec.apix), box=np.full(n, spec.box), optics_group=np.ones(n, np.int64),
    )
    star = out / "particles.star"
    write_star(star, table)
    np.savez_compressed(
        out / "ground_truth.npz",
        state=state, path_coordinate=u, rotations=rotations.astype(np.float32), shifts=shifts.astype(np.float32),
        node_coords=_coords_at(node_states, u, mode, state).astype(np.float32), state_node_coords=node_states.astype(np.float32),
        noise_std=np.float64(noise_std), mode=mode,
        spec=np.array(repr(asdict(spec))),
    )
    return star


def _check_states(states: list[Structure], same_atoms: bool) -> None:
    if not states:
        raise ValueError("no structure to simulate")
    ref = states[0]
    for k, s in enumerate(states[1:], start=1):
        if same_atoms and (s.n_atoms != ref.n_atoms or not np.array_equal(s.atom_name, ref.atom_name)):
            raise InputError(
                None,
                f"state {k + 1} has different atoms from state 1 ({s.n_atoms} vs {ref.n_atoms} atoms); interpolation and "
                "all-atom density need identical atoms in the same order (use --density residue otherwise)",
            )
        if s.n_residues != ref.n_residues:
            raise InputError(None, f"state {k + 1} has {s.n_residues} residues, state 1 has {ref.n_residues}; conformations must share their residues")
