"""Learning, not just running: ``cryodyna quicktest`` trains on a tiny simulated AdK path; the
latents must order the particles and the decoded structures must beat the reference model by a
clear margin (the same checks the command makes, recomputed here from its outputs).  A second run
learns a short molecular-dynamics path (the targeted-MD AdK trajectory, not an interpolation
between two crystal structures) and must reproduce the motion at full size, not shrunk."""

import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from cryodyna.assembly.stage import load_run
from cryodyna.cli import app
from cryodyna.config import resolved_config
from cryodyna.io.structure import read_structure
from cryodyna.models.sampling import decode_latents
from cryodyna.pipelines.training import train_atom
from cryodyna.quicktest import LEARNING_SETTINGS, N_PARTICLES, learning_scores
from cryodyna.runs.layout import evaluation_file
from cryodyna.runs.read import load_latents
from cryodyna.simulate.adk import adk_md_frames
from cryodyna.simulate.ceiling import displacement_gain, node_rmsd
from cryodyna.simulate.simulator import SimulationSpec, simulate
from cryodyna.structure.nodes import residue_nodes


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quicktest_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quicktest")
    result = CliRunner().invoke(app, ["quicktest", "--work-dir", str(root)])
    return root, result


def test_quicktest_reports_installation_ok(quicktest_run):
    _, result = quicktest_run
    assert result.exit_code == 0, result.output
    assert "installation OK" in result.output and "7 checks passed" in result.output


def test_latent_orders_particles_and_structures_beat_the_reference(quicktest_run):
    root, _ = quicktest_run
    folder = max((root / "run").glob("epoch-*"))
    rho, learned, reference = learning_scores(root / "data", root / "run", np.load(folder / "z.npy"))
    assert rho >= 0.9, f"|Spearman(PC1, path)| {rho:.3f}"
    assert learned <= 0.6 * reference, f"median CA RMSD {learned:.2f} Å, reference model {reference:.2f} Å"


MD_SETTINGS = ["optim.epochs=24", "optim.eval_every=24", "optim.lr=2e-3"]  # a tiny data set: few steps


@pytest.fixture(scope="module")
def md_path_run(tmp_path_factory):
    """The quicktest's settings with ``MD_SETTINGS`` on 300 particles along every 5th frame of the
    targeted-MD AdK trajectory (closed -> open, reference = first frame; 32 px, 4 Å/px, residue
    density, SNR 1).  Median gain over three seeds of data and training: 0.85 / 0.82 / 0.79 (12
    epochs at the default learning rate: 0.66-0.75)."""
    root = tmp_path_factory.mktemp("md_path")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulate(adk_md_frames(every=5), SimulationSpec(n_particles=N_PARTICLES, box=32, apix=4.0, snr=1.0, density="residue",
                                                         seed=0), root / "data")
        folder = train_atom(root / "data/particles.star", root / "data/reference.pdb", root / "run",
                            resolved_config(None, [*LEARNING_SETTINGS, *MD_SETTINGS], None))
    gt = np.load(root / "data/ground_truth.npz")
    predicted = decode_latents(load_run(root / "run").model, load_latents(evaluation_file(folder, "latents")))
    reference = residue_nodes(read_structure(root / "data/reference.pdb")).coords
    return predicted, gt["node_coords"], reference


def full_size(predicted, truth, reference, moved_a: float = 1.0) -> float:
    """Median gain (projection of the predicted on the true displacement, 1 = full size) over the
    particles whose true structure moved more than ``moved_a`` Å RMS from the reference."""
    moved = np.sqrt(((truth - reference) ** 2).sum(-1).mean(-1)) > moved_a
    return float(np.median(displacement_gain(predicted[moved], truth[moved], reference)))


def test_md_path_is_learned_at_full_size(md_path_run):
    predicted, truth, reference = md_path_run
    gain = full_size(predicted, truth, reference)
    assert gain >= 0.7, f"the decoded motion is shrunk: median gain {gain:.2f} < 0.7"
    learned, unmoved = (float(np.median(node_rmsd(x, truth))) for x in (predicted, reference[None]))
    assert learned <= 0.6 * unmoved, f"median CA RMSD {learned:.2f} Å, reference model {unmoved:.2f} Å"
    shrunk = reference + 0.6 * (predicted - reference)  # what a model pulled back towards the reference gives
    assert full_size(shrunk, truth, reference) < 0.7
