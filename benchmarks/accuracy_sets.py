"""Benchmark datasets for per-particle accuracy, all simulated by the package from all-atom density with
a CTF (``cryodyna.simulate``).  None uses MDAnalysisTests' ``adk_dims`` trajectory or ``3PWP``.

* ``adk-curved``: AdK closed -> open as a *sequential* domain motion (the LID opens first, then the
  NMP domain; the core moves all along), 21 frames, uneven occupancy (populated ends, a sparse
  middle); reference = closed state.
* ``adk-mid``: the same path with the reference at its middle frame (not an end state).
* ``adk-2d``: two independent motions: the closed <-> open path times the lowest elastic-network
  mode of the closed state (+-4 Å).
* ``complex``: a five-chain TCR-peptide-MHC complex (1BD2, 815 residues, from MDAnalysisTests'
  mmCIF test files) moving along its two lowest elastic-network modes (+-5 Å each), 96 px.
* ``adk-md``: a molecular-dynamics path: MDAnalysisTests' targeted-MD AdK closed -> open trajectory
  (``adk_gbis_tmd-fast1_NAMD.dcd`` with ``adk_closed_NAMD.psf``: NAMD, GB implicit solvent, 100
  frames, real side-chain and loop rearrangements), frames superposed on the first by their CA atoms;
  uneven occupancy (a populated near-closed region, a populated open end, a sparse middle);
  reference = first (closed) frame.
* ``adk-md-mid``: the same particles with the reference at the middle frame.
* ``pr-md``: a second protein, not AdK: the progesterone-receptor ligand-binding-domain dimer (1A28,
  2 x 250 residues) pulled by steered all-atom Langevin dynamics in OpenMM along a curved path in
  its two softest elastic-network modes, 6 Å CA RMS at the end (``md_path.py``: side chains, loops
  and CA positions fluctuate thermally; computed once, about 3 minutes, and cached as
  ``pr-md_path.pdb`` beside the set folders); the same uneven occupancy as ``adk-md``; reference =
  first frame; 80 px.
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryodyna.io.structure import Structure, read_structure, write_structure
from cryodyna.simulate.adk import adk_md_frames, adk_states
from cryodyna.simulate.simulator import SimulationSpec, simulate
from md_path import cached_path

ADK_LID = (122, 159)
ADK_NMP = (30, 59)


@dataclass
class BenchmarkSet:
    name: str
    box: int
    apix: float
    description: str


SETS = {
    "adk-md": BenchmarkSet("adk-md", 64, 1.6, "AdK targeted-MD closed->open trajectory, uneven occupancy, closed reference"),
    "adk-md-mid": BenchmarkSet("adk-md-mid", 64, 1.6, "same MD path, reference at the middle frame"),
    "adk-curved": BenchmarkSet("adk-curved", 64, 1.6, "AdK sequential LID-then-NMP opening, uneven occupancy, closed reference"),
    "adk-mid": BenchmarkSet("adk-mid", 64, 1.6, "same path, reference at the middle frame"),
    "adk-2d": BenchmarkSet("adk-2d", 64, 1.6, "AdK closed<->open x lowest normal mode (2-D landscape)"),
    "pr-md": BenchmarkSet("pr-md", 80, 1.6, "progesterone-receptor LBD dimer, steered-MD curved path, uneven occupancy, first-frame reference"),
    "complex": BenchmarkSet("complex", 96, 1.6, "1BD2 five-chain complex, two normal modes (2-D), 815 residues"),
}


def sequential_path(closed: Structure, opened: Structure, frames: int = 21) -> list[Structure]:
    """Frames of a non-linear closed -> open transition: the LID domain moves in the first half of
    the path, the NMP domain in the second, the rest linearly throughout."""
    seq = closed.res_seq[closed.residue]
    u = np.linspace(0.0, 1.0, frames)[:, None]
    lid = (seq >= ADK_LID[0]) & (seq <= ADK_LID[1])
    nmp = (seq >= ADK_NMP[0]) & (seq <= ADK_NMP[1])
    t = np.broadcast_to(u, (frames, closed.n_atoms)).copy()
    t[:, lid] = np.clip(2 * u, 0, 1)
    t[:, nmp] = np.clip(2 * u - 1, 0, 1)
    coords = closed.coords[None] * (1 - t[..., None]) + opened.coords[None] * t[..., None]
    return [closed.with_coords(c) for c in coords]


def md_weights(n: int) -> np.ndarray:
    """Occupancy of ``n`` path frames: a populated near-closed region (a quarter of the way, about
    1.7 Å CA RMSD from the closed state), a populated open end and a sparse middle (about 12x less
    dense than the peaks); about half the particles lie beyond the middle of the path."""
    u = np.linspace(0.0, 1.0, n)
    return 0.1 + np.exp(-0.5 * ((u - 0.25) / 0.07) ** 2) + 1.2 * np.exp(-0.5 * ((u - 1.0) / 0.12) ** 2)


def complex_structure() -> Structure:
    """1BD2 (TCR-peptide-MHC, five chains) from MDAnalysisTests, centred at its atom centroid."""
    spec = importlib.util.find_spec("MDAnalysisTests")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped waters and ligands
        s = read_structure(Path(next(iter(spec.submodule_search_locations))) / "data" / "mmcif" / "1BD2.pdb.gz")
    return s.with_coords(s.coords - s.coords.mean(0))


def build(name: str, out: Path, particles: int, snr: float, seed: int = 0, pose_error_deg: float = 0.0,
          shift_error_a: float = 0.0) -> Path:
    """Simulate set ``name`` into ``out`` (reused when present); returns the folder with
    ``particles.star``, ``ground_truth.npz`` and ``reference.pdb``.  Pose errors (degrees RMS, Å
    RMS) perturb the STAR file's poses only: the images are those of the error-free set."""
    b = SETS[name]
    out = Path(out)
    if (out / "particles.star").exists() and (out / "reference.pdb").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    common = dict(n_particles=particles, box=b.box, apix=b.apix, snr=snr, density="atom", seed=seed,
                  pose_error_deg=pose_error_deg, shift_error_a=shift_error_a)
    if name in ("adk-md", "adk-md-mid"):
        frames = adk_md_frames()
        simulate(frames, SimulationSpec(**common), out, mode="interpolate", weights=list(md_weights(len(frames))))
        reference = frames[0] if name == "adk-md" else frames[len(frames) // 2]
    elif name == "pr-md":
        frames = cached_path(out.resolve().parents[1] / "pr-md_path.pdb")
        simulate(frames, SimulationSpec(**common), out, mode="interpolate", weights=list(md_weights(len(frames))))
        reference = frames[0]
    elif name in ("adk-curved", "adk-mid"):
        frames = sequential_path(*adk_states())
        u = np.linspace(0, 1, len(frames))
        weights = 0.15 + np.abs(2 * u - 1) ** 2  # ends ~7x more populated than the middle
        simulate(frames, SimulationSpec(**common), out, mode="interpolate", weights=list(weights))
        reference = frames[0] if name == "adk-curved" else frames[len(frames) // 2]
    elif name == "adk-2d":
        closed, opened = adk_states()
        simulate([closed, opened], SimulationSpec(**common, normal_modes=1, mode_amplitude=4.0), out)
        reference = closed
    else:
        reference = complex_structure()
        simulate([reference], SimulationSpec(**common, normal_modes=2, mode_amplitude=5.0), out)
    write_structure(out / "reference.pdb", reference)
    return out
