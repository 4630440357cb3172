"""End-to-end residue-level training on a tiny simulated dataset."""

import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cryodyna.cli import app
from cryodyna.io.structure import read_models
from cryodyna.simulate.simulator import SimulationSpec, simulate
from cryodyna.train.run import resolved_config, train_atom

SETTINGS = ["model.encoder_hidden=[64, 32]", "model.z_dim=4", "optim.batch_size=32", "analysis.kmeans=3",
            "optim.holdout_fraction=0.1", "data.lowpass=10"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from cryodyna.simulate.adk import write_adk_models

    out = tmp_path_factory.mktemp("adk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, closed, opened = write_adk_models(out)
    simulate([closed, opened], SimulationSpec(n_particles=200, box=32, apix=4.0, snr=1.0, density="residue", seed=0), out)
    return out


def run(dataset, run_dir, epochs, **kw):
    cfg = resolved_config(None, SETTINGS, epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_atom(dataset / "particles.star", dataset / "reference.pdb", run_dir, cfg, **kw)


def test_training_outputs_resume_and_sampling(dataset, tmp_path):
    run_dir = tmp_path / "run"
    folder = run(dataset, run_dir, 4)
    assert folder.name == "epoch-0004_step-0000020"  # 180 training particles / 32 = 5 steps per epoch
    z = np.load(folder / "z.npy")
    assert z.shape == (200, 4) and np.isfinite(z).all()
    assert len(read_models(folder / "pred.pdb")) == 3
    for k in (1, 2, 3):
        frames = read_models(folder / f"pca-{k}.pdb")
        assert len(frames) == 10 and frames[0].n_atoms == 214
    for name in ("input_image.png", "pred_image.png", "z_distribution.png", "ckpt.pt"):
        assert (folder / name).stat().st_size > 0
    for name in ("config.yaml", "command.txt", "run.json", "log.txt", "checkpoints/last.pt"):
        assert (run_dir / name).is_file()
    m = pd.read_csv(run_dir / "metrics.csv")
    image = m[(m.phase == "train") & (m.name == "image")].value.to_numpy()
    assert image[-1] < image[0]  # the image loss falls
    assert {"holdout_image_loss", "train_image_loss"} <= set(m[m.phase == "eval"].name)

    # Re-running the same command with more epochs resumes: step count continues, nothing is lost.
    folder2 = run(dataset, run_dir, 6)
    assert folder2.name == "epoch-0006_step-0000030"
    assert folder.is_dir() and not list(run_dir.glob(".*tmp"))
    # Evaluation is deterministic: eval-only with the same weights reproduces z exactly.
    folder3 = run(dataset, run_dir, 6, eval_only=True)
    assert folder3 == folder2
    np.testing.assert_array_equal(np.load(folder3 / "z.npy"), np.load(folder2 / "z.npy"))

    runner = CliRunner()
    r = runner.invoke(app, ["sample-structures", str(run_dir), "--z", str(folder2 / "z.npy"), "--npy", str(tmp_path / "all.npy")])
    assert r.exit_code == 0, r.output
    coords = np.load(tmp_path / "all.npy")
    assert coords.shape == (200, 214, 3)
    np.savetxt(tmp_path / "two.txt", z[:2])
    r = runner.invoke(app, ["sample-structures", str(run_dir), "--z", str(tmp_path / "two.txt"), "-o", str(tmp_path / "two.pdb")])
    assert r.exit_code == 0, r.output
    assert len(read_models(tmp_path / "two.pdb")) == 2


def test_eval_only_on_untrained_model_is_the_smoke_test(dataset, tmp_path):
    folder = run(dataset, tmp_path / "smoke", 1, eval_only=True)
    assert folder.name == "epoch-0000_step-0000000"
    ref = read_models(dataset / "reference.pdb")[0]
    pred = read_models(folder / "pca-1.pdb")
    ca = ref.coords[ref.atom_name == "CA"]
    np.testing.assert_allclose(pred[0].coords, ca, atol=1e-3)  # zero-initialised head: the reference


def test_cli_train_atom_help_and_bad_latents(dataset, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train-atom", "--help"])
    assert r.exit_code == 0 and "--eval-only" in r.output
    np.save(tmp_path / "z.npy", np.zeros((2, 7), np.float32))
    folder = run(dataset, tmp_path / "r", 1, eval_only=True)
    from cryodyna.errors import CryodynaError
    from cryodyna.analysis.sampling import decode_latents
    from cryodyna.train.run import load_latents, load_run

    model, _ = load_run(tmp_path / "r", folder / "ckpt.pt")
    with pytest.raises(CryodynaError, match="7 columns but the model's z_dim is 4"):
        decode_latents(model, load_latents(tmp_path / "z.npy"))
