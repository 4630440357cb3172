import re
import subprocess
import sys

import numpy as np
import yaml
from typer.testing import CliRunner

from cryodyna import __version__
from cryodyna.cli import app

runner = CliRunner()


def test_version_and_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("info", "simulate", "example", "config"):
        assert cmd in r.output


def test_config_show_prints_valid_yaml():
    r = runner.invoke(app, ["config", "show", "train-atom"])
    assert r.exit_code == 0
    data = yaml.safe_load(r.output)
    assert data["optim"]["lr"] == 1e-3 and "model" in data


def test_example_simulate_and_info(tmp_path):
    r = runner.invoke(app, ["example", "adk", "-o", str(tmp_path / "ex"), "-n", "16", "--box", "32", "--apix", "4"])
    assert r.exit_code == 0, r.output
    for name in ("reference.pdb", "open.pdb", "particles.star", "particles.mrcs", "ground_truth.npz"):
        assert (tmp_path / "ex" / name).is_file()
    r = runner.invoke(app, ["info", str(tmp_path / "ex" / "particles.star")])
    assert r.exit_code == 0 and "16" in r.output and "32 px" in r.output
    r = runner.invoke(app, ["info", str(tmp_path / "ex" / "reference.pdb")])
    assert "214" in r.output
    r = runner.invoke(app, ["simulate", str(tmp_path / "ex" / "reference.pdb"), str(tmp_path / "ex" / "open.pdb"),
                            "-o", str(tmp_path / "sim"), "-n", "8", "--box", "24", "--apix", "5", "--mode", "discrete",
                            "--weights", "1,1", "--density", "residue"])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "sim" / "ground_truth.npz")["node_coords"].shape == (8, 214, 3)


def test_user_error_is_one_line_with_exit_code_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cryodyna.cli", "info", str(tmp_path / "missing.star")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "missing.star: file not found" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_help_keeps_brackets_and_shows_flags_as_flags():
    from cryodyna.reference import command_names

    runner = CliRunner()
    for name in command_names():
        out = runner.invoke(app, name.split()[1:] + ["--help"]).output
        assert "Usage:" in out, name
        assert not re.search(r"<(bool|str|int|float|path|list\[\w+\])>", out, re.I), (name, out)  # no Python type names
        assert "{" not in out.splitlines()[0], (name, out.splitlines()[0])  # arguments in capitals, not {name}
    backmap = runner.invoke(app, ["backmap", "--help"]).output
    assert '".[relax]"' in " ".join(backmap.split())
    simulate = runner.invoke(app, ["simulate", "--help"]).output
    assert "simulate [OPTIONS] MODELS..." in simulate and "--set" not in simulate
    assert "--set TEXT" in runner.invoke(app, ["train-atom", "--help"]).output


def test_only_rank_zero_reports_under_torchrun(peptide_pdb):
    """torchrun starts one process per GPU with RANK set: only rank 0 prints results and next steps."""
    import os

    out = {}
    for rank in ("0", "1"):
        r = subprocess.run([sys.executable, "-m", "cryodyna.cli", "info", str(peptide_pdb)], capture_output=True, text=True,
                           env={**os.environ, "RANK": rank}, check=True)
        out[rank] = r.stdout
    assert "residues" in out["0"] and out["1"] == ""
