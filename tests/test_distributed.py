import pytest
"""Two CPU processes (torchrun, gloo) train exactly like one process with the same global batch."""

import subprocess
import sys

import numpy as np
import torch

from conftest import TINY_TRAIN_SETTINGS

# no cross-view attention (it mixes images within each process's batch); everything else must match
pytestmark = pytest.mark.slow


SETTINGS = TINY_TRAIN_SETTINGS + ["model.encoder=mlp", "model.context_dropout=0"]
# the residue clash term is a mean over violating entries, which differs per process
ATOM_SETTINGS = ("loss.clash_weight=0", "optim.epochs=2", "optim.eval_every=2")


def train(tiny_adk, run_dir, batch, nproc, command="train-atom", settings=ATOM_SETTINGS):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    args = launcher + ["-m", "cryodyna.cli", command, str(tiny_adk / "particles.star"), str(tiny_adk / "reference.pdb"),
                       "-o", str(run_dir)]
    for s in SETTINGS + list(settings) + [f"optim.batch_size={batch}"]:
        args += ["--set", s]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]


def assert_same_weights(single, ddp, steps):
    a = torch.load(single / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(ddp / "checkpoints" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == steps
    for name, value in a["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(b["model"][name], value, atol=2e-4, rtol=1e-3, msg=name)


def test_two_gloo_processes_match_one_process(tiny_adk, tmp_path):
    train(tiny_adk, tmp_path / "single", 32, 1)
    train(tiny_adk, tmp_path / "ddp", 16, 2)
    assert_same_weights(tmp_path / "single", tmp_path / "ddp", 10)  # 180 training particles / global batch 32 = 5 steps per epoch
    za = np.load(tmp_path / "single" / "epoch-0002_step-0000010" / "z.npy")
    zb = np.load(tmp_path / "ddp" / "epoch-0002_step-0000010" / "z.npy")
    assert zb.shape == (200, 4)  # gathered from both processes, in particle order
    np.testing.assert_allclose(zb, za, atol=2e-3, rtol=1e-3)
    assert (tmp_path / "ddp" / "log.txt").read_text().count("evaluation written") == 1  # rank 0 only
    import json

    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["processes"] == 2


def test_density_two_gloo_processes_match_one_process(tiny_adk, tmp_path):
    u = np.load(tiny_adk / "ground_truth.npz")["path_coordinate"]
    np.save(tmp_path / "z.npy", u[:, None].astype(np.float32))
    settings = ["model.hidden=32", "model.layers=1", "optim.epochs=1", "optim.holdout_fraction=0.1", "analysis.kmeans=2",
                "analysis.pcs=1", "analysis.pc_frames=2"]

    def run(run_dir, batch, nproc):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
        args = launcher + ["-m", "cryodyna.cli", "train-density", str(tiny_adk / "particles.star"), "--z", str(tmp_path / "z.npy"),
                           "-o", str(run_dir)]
        for s in settings + [f"optim.batch_size={batch}"]:
            args += ["--set", s]
        r = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)

    a, b = run(tmp_path / "single", 16, 1), run(tmp_path / "ddp", 8, 2)
    assert a["step"] == b["step"] == 11  # 180 training particles / global batch 16
    for name, value in a["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(b["model"][name], value, atol=2e-4, rtol=1e-3, msg=name)
    assert len(list((tmp_path / "ddp").glob("epoch-*/vol_kmeans_*.mrc"))) == 2


def test_bead_stage_two_gloo_processes_match_one_process(tiny_adk, tmp_path):
    """train-cg under torchrun: rank 0 maps and minimises the model once, the others read it; weights and
    gathered latents match one process.  (The tiny run has few bead contacts, so the batch independence
    of the non-bonded prior is tested directly in test_martini.)"""
    settings = ["optim.epochs=1", "optim.eval_every=1", "martini.minimize_steps=30"]
    train(tiny_adk, tmp_path / "single", 32, 1, "train-cg", settings)
    train(tiny_adk, tmp_path / "ddp", 16, 2, "train-cg", settings)
    assert_same_weights(tmp_path / "single", tmp_path / "ddp", 5)
    za = np.load(tmp_path / "single" / "epoch-0001_step-0000005" / "z.npy")
    np.testing.assert_allclose(np.load(tmp_path / "ddp" / "epoch-0001_step-0000005" / "z.npy"), za, atol=2e-3, rtol=1e-3)


def test_pose_refinement_under_two_gloo_processes_matches_one_process(tiny_adk, tmp_path):
    """Each process refines the poses of its own batch rows; the tables stay identical on all
    processes, so rank 0's checkpoint equals the single-process one."""
    settings = ATOM_SETTINGS + ("optim.refine_poses=true", "optim.pose_warmup_epochs=0")
    train(tiny_adk, tmp_path / "single", 32, 1, settings=settings)
    train(tiny_adk, tmp_path / "ddp", 16, 2, settings=settings)
    assert_same_weights(tmp_path / "single", tmp_path / "ddp", 10)
    a = torch.load(tmp_path / "single" / "checkpoints" / "last.pt", weights_only=False)["poses"]
    b = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=False)["poses"]
    assert a["visits"].sum() == b["visits"].sum() == 2 * 160  # two epochs of 5 global batches of 32
    torch.testing.assert_close(b["values"], a["values"], atol=2e-4, rtol=1e-2)
    assert (tmp_path / "ddp" / "epoch-0002_step-0000010" / "particles_refined.star").is_file()
