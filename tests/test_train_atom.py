"""End-to-end residue-level training on a tiny simulated dataset."""

import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cryodyna.cli import app
from cryodyna.errors import InputError
from cryodyna.io.structure import read_models
from conftest import REPEATABLE, TINY_TRAIN_SETTINGS
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom


def run(tiny_adk, run_dir, epochs, **kw):
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS + REPEATABLE, epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run_dir, cfg, **kw)


@pytest.mark.slow
def test_training_outputs_resume_and_sampling(tiny_adk, tmp_path):
    run_dir = tmp_path / "run"
    folder = run(tiny_adk, run_dir, 4)
    assert folder.name == "epoch-0004_step-0000020"  # 180 training particles / 32 = 5 steps per epoch
    z = np.load(folder / "z.npy")
    assert z.shape == (200, 4) and np.isfinite(z).all()
    assert len(read_models(folder / "pred.pdb")) == 3
    for k in (1, 2, 3):
        frames = read_models(folder / f"pca-{k}.pdb")
        assert len(frames) == 10 and frames[0].n_atoms == 214
    for name in ("input_image.png", "pred_image.png", "z_distribution.png", "ckpt.pt"):
        assert (folder / name).stat().st_size > 0
    for name in ("config.yaml", "command.txt", "environment.txt", "run.json", "log.txt", "checkpoints/last.pt"):
        assert (run_dir / name).is_file()
    import json

    progress = json.loads((run_dir / "progress.json").read_text())
    assert progress["step"] == 20 and progress["total_steps"] == 20 and "image" in progress["losses"]
    assert "torch" in (run_dir / "environment.txt").read_text()
    m = pd.read_csv(run_dir / "metrics.csv")
    image = m[(m.phase == "train") & (m.name == "image")].value.to_numpy()
    assert image[-1] < image[0]  # the image loss falls
    assert {"holdout_image_loss", "train_image_loss"} <= set(m[m.phase == "eval"].name)

    # Re-running the same command with more epochs resumes: step count continues, nothing is lost.
    folder2 = run(tiny_adk, run_dir, 6)
    assert folder2.name == "epoch-0006_step-0000030"
    assert folder.is_dir() and not list(run_dir.glob(".*tmp"))
    # Evaluation is deterministic: eval-only with the same weights reproduces z exactly.
    folder3 = run(tiny_adk, run_dir, 6, eval_only=True)
    assert folder3 == folder2
    np.testing.assert_array_equal(np.load(folder3 / "z.npy"), np.load(folder2 / "z.npy"))

    runner = CliRunner()
    r = runner.invoke(app, ["sample-structures", str(run_dir), "--z", str(folder2 / "z.npy"), "--npy", str(tmp_path / "all.npy")])
    assert r.exit_code == 0, r.output
    coords = np.load(tmp_path / "all.npy")
    assert coords.shape == (200, 214, 3) and not list(tmp_path.glob("*.partial"))  # decoded in chunks on disk, moved into place
    z_all = np.load(folder2 / "z.npy")
    np.savetxt(tmp_path / "two.txt", z_all[:2])
    r = runner.invoke(app, ["sample-structures", str(run_dir), "--z", str(tmp_path / "two.txt"), "-o", str(tmp_path / "two.pdb")])
    assert r.exit_code == 0, r.output
    two = read_models(tmp_path / "two.pdb")
    assert len(two) == 2
    np.testing.assert_allclose(two[1].coords, coords[1], atol=2e-3)  # same structures as the in-memory path


def test_training_with_the_gradient_as_encoder_input(tiny_adk, tmp_path):
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS + ["model.encoder_input=gradient"], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "run", cfg)
    z, z_encoder = np.load(final / "z.npy"), np.load(final / "z_encoder.npy")
    assert z.shape == z_encoder.shape == (200, 4) and np.isfinite(z).all() and z_encoder.std(0).min() > 0
    assert len(read_models(final / "pred.pdb")) == 3


def test_eval_only_on_untrained_model_is_the_smoke_test(tiny_adk, tmp_path):
    folder = run(tiny_adk, tmp_path / "smoke", 1, eval_only=True)
    assert folder.name == "epoch-0000_step-0000000"
    ref = read_models(tiny_adk / "reference.pdb")[0]
    pred = read_models(folder / "pca-1.pdb")
    ca = ref.coords[ref.atom_name == "CA"]
    np.testing.assert_allclose(pred[0].coords, ca, atol=1e-3)  # zero-initialised head: the reference


def test_cli_train_atom_help_and_bad_latents(tiny_adk, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train-atom", "--help"])
    assert r.exit_code == 0 and "--eval-only" in r.output
    np.save(tmp_path / "z.npy", np.zeros((2, 7), np.float32))
    folder = run(tiny_adk, tmp_path / "r", 1, eval_only=True)
    from cryodyna.errors import CryodynaError
    from cryodyna.models.sampling import decode_latents
    from cryodyna.assembly.stage import load_run
    from cryodyna.runs.read import load_latents

    model = load_run(tmp_path / "r", folder / "ckpt.pt").model
    with pytest.raises(CryodynaError, match="7 columns but the model's z_dim is 4"):
        decode_latents(model, load_latents(tmp_path / "z.npy"))


def test_reference_init_and_bf16_steps(tiny_adk, tmp_path):
    import torch

    from cryodyna.io.read import read_particles
    from cryodyna.io.structure import read_structure
    from cryodyna.imaging.image_model import ImageModel
    from cryodyna.data.particles import prepare_particles
    from cryodyna.assembly.priors import build_priors
    from cryodyna.assembly.model import build_model, residue_graph
    from cryodyna.train.trainer import DeformationTrainer

    cfg = resolved_config(None, TINY_TRAIN_SETTINGS + ["model.reference_init=true", "optim.precision=bf16", "optim.lr=3e-3"], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = residue_graph(read_structure(tiny_adk / "reference.pdb"), cfg)
    data = prepare_particles(read_particles(tiny_adk / "particles.star"), None, 1.0, False)
    model = build_model(graph, cfg, data.d)
    image_model = ImageModel(data.d, data.apix, torch.as_tensor(graph.amplitudes), torch.as_tensor(graph.sigmas), 10.0, 2.0, 0.9375)
    trainer = DeformationTrainer(build_priors(graph, cfg.loss), graph, model, image_model, data, cfg.optim, tmp_path)
    batch = data.batch(torch.arange(32), "cpu")
    before = model.decoder(model.encode(batch["images"])).square().mean().item()
    assert before > 1e-3  # random output layer
    trainer.reference_init(max_epochs=5, tolerance=1e-12)
    after = model.decoder(model.encode(batch["images"])).square().mean().item()
    assert after < 0.1 * before
    values = trainer.train_step(batch)  # bf16 autocast for the networks, fp32 image model
    assert all(torch.isfinite(v) for v in values.values())


def test_image_cache_is_reused_and_invalidated(tiny_adk, tmp_path, monkeypatch):
    import os
    import shutil

    import torch

    from cryodyna.data.dataset import ParticleDataset
    from cryodyna.io.read import read_particles
    from cryodyna.data.image_cache import ImageCache
    from cryodyna.data.particles import prepare_particles

    table = read_particles(tiny_adk / "particles.star")
    in_ram = prepare_particles(table, None, 1.0, False)
    cached = prepare_particles(table, None, 1.0, False, cache=tmp_path / "images.npy")
    assert isinstance(cached.images, ImageCache)
    idx = torch.tensor([5, 1, 150])
    torch.testing.assert_close(cached.batch(idx, "cpu")["images"], in_ram.batch(idx, "cpu")["images"])

    def no_reading(self, i):
        raise AssertionError("the stacks were read although the cache is valid")

    monkeypatch.setattr(ParticleDataset, "image", no_reading)
    again = prepare_particles(table, None, 1.0, False, cache=tmp_path / "images.npy")
    torch.testing.assert_close(again.batch(idx, "cpu")["images"], in_ram.batch(idx, "cpu")["images"])
    shutil.copy(tmp_path / "images.npy", tmp_path / "half.npy")  # as if killed while writing: the fingerprint comes last
    with pytest.raises(AssertionError, match="the stacks were read"):
        prepare_particles(table, None, 1.0, False, cache=tmp_path / "half.npy")
    stack = tiny_adk / "particles.mrcs"
    os.utime(stack, ns=(stack.stat().st_atime_ns, stack.stat().st_mtime_ns + 10**9))  # the stack changed
    with pytest.raises(AssertionError, match="the stacks were read"):
        prepare_particles(table, None, 1.0, False, cache=tmp_path / "images.npy")


def test_the_graph_of_a_saved_run_never_changes(tiny_adk, tmp_path):
    """The secondary structure behind the blocks is kept in the run; weights that do not fit the
    graph (another cryodyna computed it differently) are a one-line error, not a torch traceback."""
    from cryodyna.errors import CryodynaError
    from cryodyna.structure.secondary import secondary_structure
    from cryodyna.io.structure import read_structure
    from cryodyna.assembly.stage import load_run

    run_dir = tmp_path / "run"
    run(tiny_adk, run_dir, 1)
    stored = run_dir / "inputs" / "secondary_structure.txt"
    assert stored.read_text().strip() == "".join(secondary_structure(read_structure(tiny_adk / "reference.pdb")))
    load_run(run_dir)
    stored.write_text("H" * 214 + "\n")  # one block per chain instead of ~30
    with pytest.raises(CryodynaError, match="its weights do not fit the model built for this run.*--restart"):
        load_run(run_dir)
    run(tiny_adk, run_dir, 1, restart=True)  # --restart forgets the stored assignment
    assert stored.read_text().strip() != "H" * 214


def test_models_of_more_than_62_chains_give_mmcif_outputs(tiny_adk, tmp_path):
    """A model whose chains do not fit the PDB format (72 chains of about 3 residues) trains; every
    structure the run, analyze, the report, chimerax and split-models write is mmCIF with the full
    chain names; train-cg, which maps the model through a PDB file, refuses it with an input error."""
    import dataclasses

    from cryodyna.io.structure import read_structure, write_structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = read_structure(tiny_adk / "reference.pdb")
    names = np.array([f"C{r // 3}" for r in range(s.n_residues)], dtype=object)
    write_structure(tmp_path / "many.cif", dataclasses.replace(s, chain_id=names))
    run_dir = tmp_path / "run"
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_atom(tiny_adk / "particles.star", tmp_path / "many.cif", run_dir, cfg)
    assert not list(folder.glob("*.pdb"))
    pred = read_models(folder / "pred.cif")
    assert len(pred) == 3 and list(dict.fromkeys(pred[0].chain_id)) == list(dict.fromkeys(names))
    assert len(read_models(folder / "pca-1.cif")) == 10
    runner = CliRunner()
    for args in (["analyze", str(run_dir), "--k", "2"], ["chimerax", str(run_dir), "-o", str(tmp_path / "m.cxc")],
                 ["split-models", str(folder / "pred.cif"), "-o", str(tmp_path / "split")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    analysis = run_dir / "analysis" / folder.name
    assert len(read_models(analysis / "kmeans.cif")) == 2 and (analysis / "pca-3.cif").is_file()
    script = (tmp_path / "m.cxc").read_text()
    assert "pca-1.cif" in script and "coordset #1 1,10 " in script
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["1.cif", "2.cif", "3.cif"]
    assert '"pca-1"' in (run_dir / "report.html").read_text()  # the page carries the mmCIF trajectories
    r = runner.invoke(app, ["train-cg", str(tiny_adk / "particles.star"), str(tmp_path / "many.cif"), "-o", str(tmp_path / "cg")])
    # train-cg needs PDB for martinize2: an input error naming the file before any mapping
    assert isinstance(r.exception, InputError) and "many.cif: 72 chains; the bead level maps the model with martinize2" in str(r.exception)
