"""Shared test helpers: fixture folder (skips when absent), tiny synthetic files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """The shared fixture folder (real files from other tools); skip when it is absent."""
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not present")
    return FIXTURES


def fixture_file(*parts: str) -> Path:
    """Path of one fixture file, skipping the test when it is absent."""
    p = FIXTURES.joinpath(*parts)
    if not p.is_file():
        pytest.skip(f"fixture {p} is not present")
    return p


PEPTIDE_PDB = """\
ATOM      1  N   GLY A   1      -1.000   0.000   0.000  1.00  0.00           N
ATOM      2  CA  GLY A   1       0.000   0.000   0.000  1.00  0.00           C
ATOM      3  C   GLY A   1       1.000   1.000   0.000  1.00  0.00           C
ATOM      4  O   GLY A   1       1.000   2.000   0.000  1.00  0.00           O
ATOM      5  N   ALA A   2       2.000   0.500   0.000  1.00  0.00           N
ATOM      6  CA AALA A   2       3.800   0.000   0.000  0.60  0.00           C
ATOM      7  CA BALA A   2       3.900   0.100   0.000  0.40  0.00           C
ATOM      8  CB  ALA A   2       4.000  -1.500   0.000  1.00  0.00           C
ATOM      9  C   ALA A   2       4.500   1.000   0.000  1.00  0.00           C
ATOM     10  O   ALA A   2       4.500   2.200   0.000  1.00  0.00           O
ATOM     11  N   SER A   2A      5.500   0.500   0.000  1.00  0.00           N
ATOM     12  CA  SER A   2A      7.600   0.000   0.000  1.00  0.00           C
ATOM     13  H   SER A   2A      7.600   1.000   0.000  1.00  0.00           H
HETATM   14  O   HOH A 101      20.000  20.000  20.000  1.00  0.00           O
HETATM   15 MG    MG A 102      21.000  20.000  20.000  1.00  0.00          MG
TER
ATOM     16  P    DA B   1      10.000   0.000   0.000  1.00  0.00           P
ATOM     17  C1'  DA B   1      11.000   0.000   0.000  1.00  0.00           C
ATOM     18  N9   DA B   1      12.000   0.000   0.000  1.00  0.00           N
END
"""


@pytest.fixture
def peptide_pdb(tmp_path: Path) -> Path:
    """A 3-residue peptide (altloc, insertion code, hydrogen) + water + Mg + a 1-nt DNA chain."""
    p = tmp_path / "peptide.pdb"
    p.write_text(PEPTIDE_PDB)
    return p


def write_stack(path: Path, n: int, d: int, apix: float = 1.0, seed: int = 0) -> np.ndarray:
    """Write n random (d, d) images; returns them."""
    import mrcfile

    images = np.random.default_rng(seed).standard_normal((n, d, d)).astype(np.float32)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(images)
        m.voxel_size = apix
    return images


TINY_TRAIN_SETTINGS = ["model.encoder_hidden=[64, 32]", "model.z_dim=4", "optim.batch_size=32", "analysis.kmeans=3",
                       "optim.holdout_fraction=0.1", "data.lowpass=10"]
# For tests that compare runs to the last digit: a fixed thread count.  The automatic count follows
# the machine's load (the other test worker's too), and another count sums in another order.
REPEATABLE = ["optim.threads=1"]


@pytest.fixture(scope="session")
def tiny_adk(tmp_path_factory) -> Path:
    """200 AdK particles (32 px, 4 Å/px, residue density, SNR 1) with reference.pdb and ground truth."""
    import warnings

    from cryodyna.simulate.adk import write_adk_models
    from cryodyna.simulate.simulator import SimulationSpec, simulate

    out = tmp_path_factory.mktemp("tiny_adk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, closed, opened = write_adk_models(out)
    simulate([closed, opened], SimulationSpec(n_particles=200, box=32, apix=4.0, snr=1.0, density="residue", seed=0), out)
    return out


@pytest.fixture(scope="session")
def halfset_run(tiny_adk, tmp_path_factory) -> Path:
    """``train-atom --halfsets`` (one epoch of the tiny settings) on :func:`tiny_adk`, via the CLI."""
    import warnings

    from typer.testing import CliRunner

    from cryodyna.cli import app

    run_dir = tmp_path_factory.mktemp("halfsets") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = CliRunner().invoke(app, ["train-atom", str(tiny_adk / "particles.star"), str(tiny_adk / "reference.pdb"), "-o",
                                     str(run_dir), "--halfsets", "--epochs", "1",
                                     *[a for s in TINY_TRAIN_SETTINGS for a in ("--set", s)]])
    assert r.exit_code == 0, r.output
    return run_dir


def write_protein_nucleic_model(path: Path, rna: bool = False, n_nucleotides: int = 5) -> Path:
    """A protein-nucleic-acid model: AdK residues 1-8 (chain A, heavy atoms) and, 22 Å away, a strand
    of the first ``n_nucleotides`` of the 1K5I RNA from MDAnalysisTests (chain B, heavy atoms, old
    O1P/O2P names kept), as DNA (O2' removed, residues DG/DA/DC) or as RNA (G/A/C)."""
    import gzip
    import importlib.util

    from cryodyna.io.structure import write_structure
    from cryodyna.simulate.adk import adk_states

    closed, _ = adk_states()
    peptide = closed.select_atoms(np.flatnonzero((closed.residue < 8) & (closed.atomic_number > 1)))
    write_structure(path, peptide)
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("ATOM")] + ["TER"]
    root = importlib.util.find_spec("MDAnalysisTests").submodule_search_locations[0]
    bases = {"GUA": "G", "ADE": "A", "CYT": "C", "URA": "U"}
    rows = []
    with gzip.open(Path(root) / "data" / "analysis" / "1k5i_c36.pdb.gz", "rt") as fh:
        for line in fh:
            atom = line[12:16].strip()
            if (line.startswith("ATOM") and line[17:20].strip() in bases and int(line[22:26]) <= n_nucleotides
                    and not atom.startswith("H") and (rna or atom != "O2'")):
                xyz = [float(line[30 + 8 * k: 38 + 8 * k]) for k in range(3)]
                rows.append((atom, bases[line[17:20].strip()], int(line[22:26]), xyz))
    xyz = np.array([r[3] for r in rows])
    xyz += peptide.coords.mean(0) + np.array([22.0, 0.0, 0.0]) - xyz.mean(0)
    for k, ((atom, base, seq, _), x) in enumerate(zip(rows, xyz)):
        name = base if rna else "D" + base
        lines.append(f"ATOM  {k + 1:5d} {atom:<4s} {name:>3s} B{seq:4d}    {x[0]:8.3f}{x[1]:8.3f}{x[2]:8.3f}"
                     f"  1.00  0.00           {atom[0]}")
    path.write_text("\n".join(lines + ["END"]) + "\n")
    return path


def plain_particle_images(projections, origins, ctf, apix):
    """Particle images (B, D, D) of centred projections composed from the formulas, independently
    of :mod:`cryodyna.imaging.formation`: centred complex FFT x CTF x ``exp(+2 pi i q . origin)``
    (the particle centre sits at ``-origin`` px), real part of the inverse."""
    import torch

    from cryodyna.imaging.ctf import compute_ctf
    from cryodyna.imaging.fft import fft2_center, frequency_grid_2d, ifft2_center

    d = projections.shape[-1]
    q = frequency_grid_2d(d)
    o = origins.to(torch.float32)
    ramp = torch.exp(2j * torch.pi * (q[..., 0] * o[:, 0, None, None] + q[..., 1] * o[:, 1, None, None]))
    return ifft2_center(fft2_center(projections) * compute_ctf(ctf, d, apix) * ramp).real
