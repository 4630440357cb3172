"""One writer per run folder: a second command is refused with the holder named; a lock left by a
process that no longer runs is taken over with a warning; the lock goes when the command ends."""

import json
import os
import socket
import subprocess
import sys
import warnings

import pytest
from conftest import TINY_TRAIN_SETTINGS

from cryodyna.config import resolved_config
from cryodyna.errors import CryodynaError
from cryodyna.pipelines.training import train_atom
from cryodyna.runs.layout import RunFolder
from cryodyna.runs.lock import run_lock


def write_lock(run_dir, pid, host=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    RunFolder(run_dir).lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                   "command": "cryodyna train-atom ...", "since": "2026-12-04T10:00:00"}))


def test_second_writer_is_refused_and_a_dead_holder_is_replaced(tmp_path):
    with run_lock(tmp_path / "run") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(CryodynaError, match=rf"in use by process {os.getpid()} on .*choose another -o"):
            with run_lock(tmp_path / "run"):
                pass
    assert not path.exists()  # released
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_lock(tmp_path / "run", int(finished.stdout))
    with pytest.warns(UserWarning, match="taking over the lock of process"):
        with run_lock(tmp_path / "run") as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    write_lock(tmp_path / "run", 1, host="another-node")  # another machine's process: never assumed dead
    with pytest.raises(CryodynaError, match="on another-node"):
        with run_lock(tmp_path / "run"):
            pass


def test_training_into_a_folder_in_use_fails_before_touching_it(tiny_adk, tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(run_dir, holder.pid)
        cfg = resolved_config(None, TINY_TRAIN_SETTINGS, 1)
        with pytest.raises(CryodynaError, match=f"in use by process {holder.pid}"):
            train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run_dir, cfg, restart=True)
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing written, nothing deleted
    finally:
        holder.kill()
        holder.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run_dir, cfg)
    assert (folder / "z.npy").is_file() and not RunFolder(run_dir).lock.exists()
