"""Learning, not just running: ``cryodyna quicktest`` trains on a tiny simulated AdK path; the
latents must order the particles and the decoded structures must beat the reference model by a
clear margin (the same checks the command makes, recomputed here from its outputs)."""

import numpy as np
import pytest
from typer.testing import CliRunner

from cryodyna.cli import app
from cryodyna.quicktest import learning_scores


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
