"""Simulate a RELION 3.1 particle dataset from one or more conformations of a model.

Image model per particle: Gaussian projection of the posed structure (every atom, or one Gaussian
per residue) -> CTF -> placement by the RELION origin (Fourier phase ramp, particle centre at
``-origin``) -> additive white Gaussian noise.  SNR is var(signal) / var(noise), with the signal
variance measured over the whole box of the noiseless CTF-modulated images (mean over particles), so
the noise level is the same for every particle.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from cryodyna.errors import CryodynaError, InputError
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.imaging.formation import ImageFormation
from cryodyna.imaging.projection import project_gaussians
from cryodyna.imaging.rotations import axis_angle_to_matrix, random_rotations
from cryodyna.io.mrc import StackWriter
from cryodyna.io.particles import ParticleTable
from cryodyna.io.star import write_star
from cryodyna.io.structure import Structure, structure_suffix, write_structure
from cryodyna.simulate.landscape import Landscape, anm_modes
from cryodyna.simulate.spec import SimulationSpec
from cryodyna.structure.nodes import residue_nodes


def simulate(
    states: list[Structure],
    spec: SimulationSpec,
    out_dir: str | Path,
    mode: Literal["interpolate", "discrete"] = "interpolate",
    weights: list[float] | None = None,
    progress=None,
) -> Path:
    """Write ``particles.mrcs``, ``particles.star``, ``ground_truth.npz`` and ``reference.pdb`` (the
    first state in the particles' frame, ready for ``train-atom``; ``reference.cif`` for models of
    more than 62 chains) to ``out_dir``.  States whose
    first member is not centred in the box are moved there (with a warning).

    ``states`` must share their atoms (same count, names and order) for interpolation; for discrete
    ensembles they must share the residues (so the true node coordinates are comparable).
    ``progress``: optional callable ``progress(done, total)``.  Returns the STAR path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    states = centred_states(states)
    landscape = build_landscape(states, spec, mode, weights)
    check_in_box(states, spec)
    write_structure(out / f"reference{structure_suffix(states[0])}", states[0])
    rng = np.random.default_rng(spec.seed)
    torch.manual_seed(spec.seed)
    n = spec.n_particles
    amps = torch.as_tensor(states[0].atomic_number if spec.density == "atom" else residue_nodes(states[0]).electrons,
                           dtype=torch.float32)
    sig = torch.full_like(amps, spec.atom_sigma if spec.density == "atom" else spec.residue_sigma)
    params = landscape.sample(n, rng)
    rotations = random_rotations(n, rng)
    shifts = rng.uniform(-spec.max_shift, spec.max_shift, size=(n, 2))
    dfu = rng.uniform(spec.defocus_min, spec.defocus_max, n)
    dfv = dfu - rng.uniform(0.0, spec.astigmatism_max, n)
    ang = rng.uniform(0.0, np.pi, n)

    poses = PoseBatch(torch.as_tensor(rotations, dtype=torch.float32), torch.as_tensor(shifts / spec.apix, dtype=torch.float32))
    formation = ImageFormation(spec.box, spec.apix)

    def render(sl: slice) -> torch.Tensor:
        b = sl.stop - sl.start
        ctf = CTFParams(
            defocus_u=torch.as_tensor(dfu[sl]), defocus_v=torch.as_tensor(dfv[sl]), astig_angle=torch.as_tensor(ang[sl]),
            voltage=torch.full((b,), spec.voltage), cs=torch.full((b,), spec.cs),
            amp_contrast=torch.full((b,), spec.amp_contrast), phase_shift=torch.zeros(b),
            bfactor=torch.full((b,), spec.bfactor) if spec.bfactor > 0 else None,
        )
        coords = torch.as_tensor(landscape.points(params[sl]), dtype=torch.float32)
        return render_images(formation, coords, amps, sig, poses[sl], ctf)

    batches = [slice(i, min(i + spec.batch_size, n)) for i in range(0, n, spec.batch_size)]
    noise_std = 0.0
    if spec.snr is not None:
        pilot = batches[: max(1, 128 // spec.batch_size)]
        signal_var = torch.cat([render(sl).var(dim=(-2, -1)) for sl in pilot]).mean()
        noise_std = float(torch.sqrt(signal_var / spec.snr))
    stack_path = out / "particles.mrcs"
    writer = StackWriter(stack_path, n, spec.box, spec.apix, spec.float16)
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

    given_rotations, given_shifts = perturb_poses(rotations, shifts, spec.pose_error_deg, spec.shift_error_a, rng)
    table = ParticleTable(
        image_file=np.full(n, str(stack_path.resolve()), dtype=object), image_index=np.arange(n),
        rotations=given_rotations, shifts=given_shifts, defocus_u=dfu, defocus_v=dfv, astig_angle=ang,
        voltage=np.full(n, spec.voltage), cs=np.full(n, spec.cs), amp_contrast=np.full(n, spec.amp_contrast),
        phase_shift=np.zeros(n), pixel_size=np.full(n, spec.apix), box=np.full(n, spec.box), optics_group=np.ones(n, np.int64),
    )
    star = out / "particles.star"
    write_star(star, table)
    n_states = len(states)
    u = landscape.path_coordinate(params)
    state = np.rint(params[:, 0] if landscape.base == "discrete" or n_states == 1 else u * (n_states - 1)).astype(np.int64)
    np.savez_compressed(
        out / "ground_truth.npz",
        state=state, path_coordinate=u, params=params, rotations=rotations.astype(np.float32), shifts=shifts.astype(np.float32),
        given_rotations=given_rotations.astype(np.float32), given_shifts=given_shifts.astype(np.float32),
        node_coords=landscape.nodes(params).astype(np.float32), point_amplitudes=amps.numpy(), point_sigmas=sig.numpy(),
        ctf_bfactor=np.float64(spec.bfactor),
        noise_std=np.float64(noise_std), mode=mode, density=np.array(spec.density), spec=np.array(repr(asdict(spec))),
        **landscape.arrays(),
    )
    return star


def centred_states(states: list[Structure]) -> list[Structure]:
    """``states`` translated together so that the first one's atom centroid sits at the box centre
    (the particles' frame) when it is more than 1 Å away, with a warning saying by how much."""
    shift = -states[0].coords.mean(0)
    if np.linalg.norm(shift) > 1.0:
        warnings.warn(f"the model's centre was {np.linalg.norm(shift):.1f} Å from the box centre (a deposited model has its "
                      f"origin at the map corner); simulated it centred, translated by "
                      f"({', '.join(f'{v:.1f}' for v in shift)}) Å", stacklevel=3)
        states = [s.with_coords((s.coords + shift).astype(s.coords.dtype)) for s in states]
    return states


def check_in_box(states: list[Structure], spec: SimulationSpec) -> None:
    """A one-line error when an atom of the (centred) states lies outside the simulated box."""
    reach = max(float(np.abs(s.coords).max()) for s in states)
    if reach > spec.box * spec.apix / 2:
        raise CryodynaError(f"the model reaches {reach:.1f} Å from the box centre but the box is {spec.box * spec.apix:.1f} Å "
                            f"wide; use a larger --box or --apix (at least {int(np.ceil(2 * reach / spec.apix))} px at "
                            f"{spec.apix} Å/px)")


def perturb_poses(rotations: np.ndarray, shifts: np.ndarray, angle_deg: float, shift_a: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poses as an imperfect refinement reports them: rotations (N, 3, 3) composed with random
    rotations of RMS angle ``angle_deg`` (isotropic axis), shifts (N, 2) Å plus Gaussian offsets of
    RMS length ``shift_a``.  Zero errors return the inputs unchanged."""
    n = len(rotations)
    if angle_deg > 0:
        rotvec = rng.standard_normal((n, 3)) * np.deg2rad(angle_deg) / np.sqrt(3)
        rotations = axis_angle_to_matrix(rotvec) @ rotations
    if shift_a > 0:
        shifts = shifts + rng.standard_normal((n, 2)) * shift_a / np.sqrt(2)
    return rotations, shifts


def render_images(formation: ImageFormation, coords: torch.Tensor, amplitudes: torch.Tensor, sigmas: torch.Tensor,
                  poses: PoseBatch, ctf: CTFParams) -> torch.Tensor:
    """Noiseless images (B, D, D) of the simulator's forward model (box and pixel size of the
    unfiltered ``formation``): Gaussian points ``coords`` (B, P, 3) Å with ``amplitudes``/``sigmas``
    (P,) projected at ``poses`` (pixel-averaged, mass-normalised), then CTF and origin shift."""
    img = project_gaussians(coords, amplitudes, sigmas, poses.rotations, formation.d, formation.apix, norm="mass",
                            pixel_average=True)
    return formation(img, poses, ctf)


def build_landscape(states: list[Structure], spec: SimulationSpec, mode: str = "interpolate",
                    weights: list[float] | None = None) -> Landscape:
    """The landscape of ``simulate``: the states as a path or discrete set (``weights`` = occupancy
    per state) plus ``spec.normal_modes`` ANM modes of the first state."""
    if mode not in ("interpolate", "discrete"):
        raise CryodynaError(f"mode must be 'interpolate' or 'discrete', not {mode!r}")
    _check_states(states, same_atoms=mode == "interpolate" or spec.density == "atom")
    nodes = [residue_nodes(s) for s in states]
    if spec.density == "atom":
        points = np.stack([s.coords for s in states])
        point_node = states[0].residue.astype(np.int64)  # one node per residue, in residue order
    else:
        points = np.stack([nd.coords for nd in nodes])
        point_node = np.arange(len(nodes[0]))
    if weights is not None and len(weights) != len(states):
        raise CryodynaError(f"{len(weights)} state weights for {len(states)} states")
    if len(states) == 1 and mode == "interpolate" and spec.normal_modes == 0:
        raise CryodynaError("a single state needs normal modes (normal_modes >= 1) or --mode discrete")
    try:
        modes = anm_modes(nodes[0].coords, spec.normal_modes, spec.mode_cutoff)
        return Landscape(state_coords=points, point_node=point_node, node_of_state=np.stack([nd.coords for nd in nodes]),
                         base=mode, weights=np.ones(len(states)) if weights is None else np.asarray(weights, np.float64),
                         modes=modes, amplitude=spec.mode_amplitude, mode_path=spec.mode_path)
    except ValueError as err:
        raise CryodynaError(f"invalid landscape: {err}") from None


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
