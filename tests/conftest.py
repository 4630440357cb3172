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
