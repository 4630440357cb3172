"""Every command that writes checks its outputs (writable, enough free disk) before it computes:
one clear error naming the path and the option to change."""

import shutil
from collections import namedtuple

import numpy as np
import pytest
from typer.testing import CliRunner

from cryodyna.cli import app
from cryodyna.errors import CryodynaError

runner = CliRunner()


def commands(run, data, blocked):
    """(name, arguments) of every writing command with its output under ``blocked`` (a path whose
    parent is a regular file: unwritable even for root)."""
    ref, star, z = data / "reference.pdb", data / "particles.star", data / "z.npy"
    return [
        ("backmap", ["backmap", str(ref), "-o", str(blocked / "all.pdb")]),
        ("sample-structures -o", ["sample-structures", str(run), "--z", str(z), "-o", str(blocked / "s.pdb")]),
        ("sample-structures --npy", ["sample-structures", str(run), "--z", str(z), "--npy", str(blocked / "s.npy")]),
        ("traverse", ["traverse", str(run), "--from", "0", "--to", "5", "-o", str(blocked / "path.pdb")]),
        ("reconstruct", ["reconstruct", str(run.parent), "-o", str(blocked / "c.mrc")]),
        ("sample-volumes", ["sample-volumes", str(run), "-o", str(blocked)]),
        ("fsc", ["fsc", str(data / "a.mrc"), str(data / "b.mrc"), "--plot", str(blocked / "fsc.png")]),
        ("cluster", ["cluster", str(run), "--k", "2", "-o", str(blocked)]),
        ("chimerax", ["chimerax", str(run), "-o", str(blocked / "movie.cxc")]),
        ("pdb2mrc", ["pdb2mrc", str(ref), "--box", "16", "--apix", "4", "-o", str(blocked / "ref.mrc")]),
        ("example", ["example", "adk", "-o", str(blocked)]),
        ("simulate", ["simulate", str(ref), "-o", str(blocked), "-n", "4", "--box", "16"]),
        ("center-origin", ["center-origin", str(ref), str(data / "a.mrc"), "-o", str(blocked)]),
        ("split-models", ["split-models", str(ref), "-o", str(blocked)]),
        ("cg-prep", ["cg-prep", str(ref), "-o", str(blocked)]),
        ("quicktest", ["quicktest", "--work-dir", str(blocked)]),
        ("train-atom", ["train-atom", str(star), str(ref), "-o", str(blocked)]),
        ("train-cg", ["train-cg", str(star), str(ref), "-o", str(blocked)]),
        ("train-density", ["train-density", str(star), "-o", str(blocked)]),
    ]


@pytest.fixture(scope="module")
def inputs(tiny_adk, halfset_run, tmp_path_factory):
    data = tmp_path_factory.mktemp("output_checks")
    for name in ("reference.pdb", "particles.star", "particles.mrcs"):
        shutil.copy(tiny_adk / name, data / name)
    np.save(data / "z.npy", np.zeros((3, 4), np.float32))
    (data / "file").write_text("a file, not a folder")
    return halfset_run / "half-1", data


def test_unwritable_outputs_fail_before_computing(inputs):
    run, data = inputs
    blocked = data / "file" / "out"
    for name, args in commands(run, data, blocked):
        r = runner.invoke(app, args)
        assert isinstance(r.exception, CryodynaError), (name, r.output, r.exception)
        message = str(r.exception)
        assert "cannot write to the output folder" in message and "choose another" in message, (name, message)
        assert str(data / "file") in message, (name, message)


def test_analyze_needs_a_writable_run_folder(inputs, tmp_path):
    run, _ = inputs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "analysis", ignore_errors=True)
    (copy / "analysis").write_text("a file where the analysis folder goes")
    r = runner.invoke(app, ["analyze", str(copy)])
    assert isinstance(r.exception, CryodynaError) and "cannot write" in str(r.exception)


def test_full_disk_is_reported_before_reconstructing(inputs, tmp_path, monkeypatch):
    run, _ = inputs
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    r = runner.invoke(app, ["reconstruct", str(run.parent), "-o", str(tmp_path / "c.mrc")])
    assert isinstance(r.exception, CryodynaError), r.output
    assert "only 1 MB free on this disk" in str(r.exception) and not (tmp_path / "c.mrc").exists()
