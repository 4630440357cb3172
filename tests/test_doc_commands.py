"""Every shell command of README.md and the user guide runs (shortened: fewer particles and epochs)
and writes what it names; every file name the pages quote is written by their commands."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import doc_commands  # noqa: E402


@pytest.mark.slow
def test_every_documented_command_runs_and_writes_what_it_names(tmp_path):
    doc_commands.user_files(tmp_path)
    results = doc_commands.run_pages(tmp_path, short=True, log=lambda line: None)
    assert sum(r.seconds is not None for r in results) >= 18  # the pages' commands were found and run
    problems = [f"{r.page}: {r.command}: {q}" for r in results for q in r.problems]
    problems += doc_commands.unwritten_names(tmp_path)
    assert not problems, "\n".join(problems)


def test_commands_are_read_from_the_pages():
    tutorial = doc_commands.shell_commands(doc_commands.ROOT / "docs/tutorial.md")
    assert "cryodyna analyze atom" in tutorial and not any(c.startswith("#") or " # " in c for c in tutorial)
    assert doc_commands.shorten("cryodyna train-atom a.star m.pdb -o r --epochs 10") == (
        "cryodyna train-atom a.star m.pdb -o r --epochs 1" + doc_commands.SHORT_ANALYSIS)
    assert doc_commands.shorten("cryodyna quicktest") is None
