"""Resume after SIGKILL, non-finite steps, determinism, unusable output folders."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from cryodyna.errors import CryodynaError, TrainingError
from cryodyna.io.outputs import check_output_folder
from conftest import REPEATABLE, TINY_TRAIN_SETTINGS
from cryodyna.config import resolved_config
from cryodyna.assembly.stage import load_run
from cryodyna.pipelines.training import train_atom



def cli(tiny_adk, run_dir, extra):
    args = [sys.executable, "-m", "cryodyna.cli", "train-atom", str(tiny_adk / "particles.star"), str(tiny_adk / "reference.pdb"),
            "-o", str(run_dir)]
    for s in TINY_TRAIN_SETTINGS + extra:
        args += ["--set", s]
    return args


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tiny_adk, tmp_path):
    run_dir = tmp_path / "run"
    extra = ["optim.epochs=40", "optim.eval_every=20", "optim.checkpoint_every=3"]
    proc = subprocess.Popen(cli(tiny_adk, run_dir, extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] >= 9:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=False)
    assert 0 < killed_at["step"] < 200
    r = subprocess.run(cli(tiny_adk, run_dir, extra), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming at step" in (run_dir / "log.txt").read_text()
    final = torch.load(ckpt, weights_only=False)
    assert final["step"] == 200 and final["epoch"] == 40  # 5 steps per epoch, no step lost or repeated
    folders = sorted(p.name for p in run_dir.glob("epoch-*"))
    assert folders[-1] == "epoch-0040_step-0000200" and "epoch-0020_step-0000100" in folders
    for name in folders:
        assert {"z.npy", "ckpt.pt", "pred.pdb", "pca-1.pdb"} <= {p.name for p in (run_dir / name).iterdir()}
    assert not list(run_dir.glob(".*.tmp"))
    steps = pd.read_csv(run_dir / "metrics.csv").query("phase == 'train' and name == 'image'").step
    assert steps.max() == 200


@pytest.mark.slow
def test_same_seed_gives_identical_latents(tiny_adk, tmp_path):
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS + REPEATABLE, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "a", cfg)
        b = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "b", cfg)
    np.testing.assert_array_equal(np.load(a / "z.npy"), np.load(b / "z.npy"))


def test_a_run_stopped_while_writing_its_final_evaluation_writes_it_on_resume(tiny_adk, tmp_path):
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "run", cfg)
        assert (final / "z_encoder.npy").exists()  # the last evaluation: posterior means beside the encoder's
        shutil.rmtree(final)  # what a kill during it leaves: it is built under a temporary name, the checkpoint is at the end
        again = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "run", cfg)
    assert again == final
    assert {"z.npy", "z_encoder.npy", "ckpt.pt", "pred.pdb"} <= {p.name for p in again.iterdir()}
    assert "final evaluation is missing" in (tmp_path / "run" / "log.txt").read_text()


def train_with_loss(tiny_adk, run_dir, monkeypatch, loss, settings):
    """Train the tiny run for 2 epochs with ``ImageModel.loss`` replaced by ``loss``; (last evaluation
    folder, metrics table)."""
    from cryodyna.imaging.image_model import ImageModel

    monkeypatch.setattr(ImageModel, "loss", loss)
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS + settings, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run_dir, cfg)
    return folder, pd.read_csv(run_dir / "metrics.csv")


def test_non_finite_steps_are_skipped_then_stop(tiny_adk, tmp_path, monkeypatch):
    from cryodyna.imaging.image_model import ImageModel

    real_loss = ImageModel.loss
    calls = {"n": 0}

    def flaky(self, predicted, target, reduce=True):
        calls["n"] += 1
        value = real_loss(self, predicted, target, reduce)
        return value * float("nan") if reduce and calls["n"] in (3, 4) else value

    folder, m = train_with_loss(tiny_adk, tmp_path / "r", monkeypatch, flaky, ["optim.max_bad_steps=3"])
    assert m[(m.phase == "train") & (m.name == "skipped_steps")].value.max() == 2
    assert np.isfinite(np.load(folder / "z.npy")).all()

    monkeypatch.setattr(ImageModel, "loss", lambda self, p, t, reduce=True: real_loss(self, p, t, reduce) * float("nan"))
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS + ["optim.max_bad_steps=3", "optim.checkpoint_every=1"], 4)
    with pytest.raises(TrainingError, match="3 consecutive steps had a non-finite loss"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "r", cfg)
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_spike_guard_caps_outliers_only_and_resumes():
    from cryodyna.train.spikes import SpikeGuard

    guard = SpikeGuard(10.0, window=5, warmup=3)
    for norm in (1.0, 2.0):
        guard.record(norm, guard.limit())
    assert guard.limit() == float("inf")
    guard.record(3.0, guard.limit())
    assert guard.limit() == 20.0  # 10 x the median of 1, 2, 3
    guard.record(5000.0, guard.limit())
    guard.record(float("nan"), guard.limit())  # a skipped step is not remembered
    assert guard.capped_steps == 1 and list(guard.norms) == [1.0, 2.0, 3.0, 5000.0]
    again = SpikeGuard(10.0, window=5, warmup=3)
    again.load_state_dict(guard.state_dict())
    assert again.limit() == guard.limit() == 25.0 and again.capped_steps == 1
    assert SpikeGuard(0.0, warmup=0).limit() == float("inf")


def test_a_gradient_spike_is_capped_in_training(tiny_adk, tmp_path, monkeypatch):
    """A batch whose loss (and gradient) is 10^4 times the usual moves the networks no further than
    spike_factor x the recent median gradient would; the metrics count it (train-cg's default, here
    on the faster residue level)."""
    import cryodyna.train.loop as loop
    from cryodyna.imaging.image_model import ImageModel
    from cryodyna.train.spikes import SpikeGuard

    monkeypatch.setattr(loop, "SpikeGuard", lambda factor: SpikeGuard(factor, warmup=3))
    real_loss = ImageModel.loss
    calls = {"n": 0}

    def spiky(self, predicted, target, reduce=True):
        value = real_loss(self, predicted, target, reduce)
        if torch.is_grad_enabled():
            calls["n"] += 1
            value = value * 1e4 if calls["n"] == 8 else value
        return value

    folder, m = train_with_loss(tiny_adk, tmp_path / "r", monkeypatch, spiky, ["optim.spike_factor=10"])
    assert calls["n"] >= 8
    assert m[(m.phase == "train") & (m.name == "capped_steps")].value.max() == 1
    assert np.isfinite(np.load(folder / "z.npy")).all()


def test_coarse_to_fine_training_sharpens_the_loss_low_pass_to_the_runs_own(tiny_adk, tmp_path, monkeypatch):
    """optim.lowpass_start_factor in a training run: the low-pass the training steps' loss sees
    passes fewer frequencies at first, more at each step of the one-epoch ramp, then the run's own."""
    from cryodyna.imaging.image_model import ImageModel

    real_loss = ImageModel.loss
    passed: list[float] = []

    def recording(self, predicted, target, reduce=True):
        if torch.is_grad_enabled():
            passed.append(float(self.formation.filter.sum()))
        return real_loss(self, predicted, target, reduce)

    train_with_loss(tiny_adk, tmp_path / "r", monkeypatch, recording,
                    ["optim.lowpass_start_factor=2", "optim.lowpass_ramp_epochs=1"])
    own = float(load_run(tmp_path / "r").image_model().formation.filter.sum())
    steps = len(passed) // 2  # two epochs
    assert steps >= 3 and passed[0] < 0.5 * own  # twice as coarse: about a quarter of the frequencies
    assert all(a < b for a, b in zip(passed[:steps], passed[1:steps + 1]))
    assert passed[steps:] == [pytest.approx(own)] * (len(passed) - steps)


def test_unusable_output_folder_fails_early(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CryodynaError, match="cannot write to the output folder"):
        check_output_folder(tmp_path / "file" / "run")
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(CryodynaError, match="only 1 MB free"):
        check_output_folder(tmp_path / "run")


@pytest.mark.slow
def test_evaluations_keep_the_newest_and_the_best_checkpoint(tiny_adk, tmp_path):
    import json

    from cryodyna.analysis.report import analyze

    def train(run_dir, epochs, extra=()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run_dir,
                              resolved_config(None, TINY_TRAIN_SETTINGS + list(extra), epochs))

    train(tmp_path / "run", 4)
    folders = sorted((tmp_path / "run").glob("epoch-*"))
    assert len(folders) == 4
    losses = [json.loads((f / "evaluation.json").read_text())["holdout_image_loss"] for f in folders]
    best = folders[int(np.argmin(losses))]
    kept = {f for f in folders if (f / "ckpt.pt").is_file()}
    assert kept == set(folders[-2:]) | {best}
    assert all((f / "z.npy").is_file() for f in folders)  # only checkpoints are pruned
    pruned = next(f for f in folders if f not in kept)
    with pytest.raises(CryodynaError, match="keep-checkpoints all"):
        analyze(tmp_path / "run", pruned, k=2)
    train(tmp_path / "all", 3, ["optim.keep_checkpoints=all"])
    assert all((f / "ckpt.pt").is_file() for f in (tmp_path / "all").glob("epoch-*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_a_checkpoint_and_says_how_to_resume(tiny_adk, tmp_path, sig):
    import json

    run_dir = tmp_path / "run"
    extra = ["optim.epochs=200", "optim.eval_every=100", "optim.checkpoint_every=1000"]
    proc = subprocess.Popen(cli(tiny_adk, run_dir, extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = run_dir / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if progress.exists() and json.loads(progress.read_text()).get("step", 0) >= 20:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume with:" in err and "cryodyna" in err.split("resume with:")[1] and "Traceback" not in err
    state = json.loads(progress.read_text())
    assert state["status"] == "interrupted"
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["step"] >= 20  # saved at the interruption, not at the last periodic checkpoint (none yet)
    assert (state["step"], state["epoch"]) == (ckpt["step"], ckpt["epoch"])  # progress.json says where it stopped
    assert f"step {ckpt['step']};" in err
    r = subprocess.run(cli(tiny_adk, run_dir, ["optim.epochs=5"]), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resuming at step {ckpt['step']}, epoch " in r.stderr
    assert json.loads(progress.read_text())["status"] == "finished"


@pytest.mark.slow
def test_run_folder_is_a_record(tiny_adk, tmp_path):
    run_dir = tmp_path / "run"

    def train(epochs, extra=(), **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run_dir,
                              resolved_config(None, TINY_TRAIN_SETTINGS + list(extra), epochs), **kw)

    train(1)
    record = {name: (run_dir / name).read_text() for name in ("config.yaml", "command.txt", "run.json")}
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(CryodynaError, match=r"model.z_dim was 4, now 8.*--restart.*new -o"):
        train(2, ["model.z_dim=8"])
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == files  # nothing written
    train(2, ["optim.lr=0.002"])  # not structural: accepted, recorded in the history
    assert {name: (run_dir / name).read_text() for name in record} == record
    history = (run_dir / "history.txt").read_text().splitlines()
    assert history[0].split(" ", 1)[1].startswith("started:") and "resumed:" in history[1]
    assert "optim.epochs: 1 -> 2" in history[2] and "optim.lr: 0.001 -> 0.002" in history[2]
    train(1, ["model.z_dim=8"], restart=True)  # --restart starts a new record
    assert "z_dim: 8" in (run_dir / "config.yaml").read_text()


def test_failed_start_leaves_no_folder(tiny_adk, tmp_path):
    with pytest.raises(CryodynaError):
        train_atom(tmp_path / "missing.star", tiny_adk / "reference.pdb", tmp_path / "new", resolved_config(None, TINY_TRAIN_SETTINGS, 1))
    assert not (tmp_path / "new").exists()
    with pytest.raises(CryodynaError, match="is a folder"):
        train_atom(tiny_adk / "particles.star", tmp_path, tmp_path / "new2", resolved_config(None, TINY_TRAIN_SETTINGS, 1))
    assert not (tmp_path / "new2").exists()


def test_console_of_a_batch_job_tells_what_happens(tiny_adk, tmp_path):
    """stdout/stderr are not a terminal (as under a batch system): plain progress lines, the
    start-up facts, the evaluation phase and the next command."""
    r = subprocess.run(cli(tiny_adk, tmp_path / "run", ["optim.epochs=2"]), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert re.search(r"training 200 particles \(20 held out\) of 32 px at 4 Å/px on cpu \(\d CPU threads: [^)]+\): epochs 1-2 of 2, "
                     "10 steps of 32 particles", out), out
    assert "epoch 1/2, step 5/10: image" in out and "evaluating epoch 2" in out
    assert f"next: cryodyna analyze {tmp_path / 'run'}" in " ".join(out.split())


def test_time_limit_stop_is_named_after_its_epoch_and_resume_counts_from_one(tiny_adk, tmp_path, caplog):
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS + ["optim.eval_every=1"], 2)
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run, cfg, time_limit_minutes=1e-9)
        assert stopped.name == "epoch-0001_step-0000001"  # interrupted during the first epoch, after one step
        assert (run / "latest").resolve() == stopped.resolve()
        with caplog.at_level("INFO", logger="cryodyna"):
            last = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run, cfg)
    assert "resuming at step 1, epoch 1/2" in caplog.text
    names = sorted(p.name for p in run.glob("epoch-*"))
    assert names == ["epoch-0001_step-0000001", "epoch-0001_step-0000005", "epoch-0002_step-0000010"], names
    assert last.name == names[-1] and (run / "latest").resolve() == last.resolve()


def test_evaluations_scheduled_by_time_happen_within_an_epoch(tiny_adk, tmp_path):
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS + ["optim.eval_every_minutes=1e-9"], 1)  # due after every step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        last = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "run", cfg)
    names = sorted(p.name for p in (tmp_path / "run").glob("epoch-*"))
    assert names == [f"epoch-0001_step-{s:07d}" for s in range(1, 6)], names  # four within the epoch, one at its end
    assert last.name == names[-1] and all((tmp_path / "run" / n / "z.npy").is_file() for n in names)


def test_evaluations_scheduled_by_step_count(tiny_adk, tmp_path):
    cfg = resolved_config(None, TINY_TRAIN_SETTINGS + ["optim.eval_every_steps=2"], 2)  # 5 steps per epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "run", cfg)
    names = sorted(p.name for p in (tmp_path / "run").glob("epoch-*"))
    expected = ["epoch-0001_step-0000002", "epoch-0001_step-0000004", "epoch-0001_step-0000005", "epoch-0002_step-0000006",
                "epoch-0002_step-0000008", "epoch-0002_step-0000010"]
    assert names == expected, names
