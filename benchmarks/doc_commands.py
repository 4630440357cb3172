"""Run every shell command of README.md and the user guide, in order, in one empty folder, and check
that each succeeds and writes what it names; print each command's wall time.

Commands run as written except:

* ``pip install ...``: not run (the environment is the one being tested); each extra it names
  must exist in ``pyproject.toml``;
* the test-suite and documentation-build commands (``python -m pytest``, ``mkdocs``): not run;
* files the guide assumes the user has (``run_data.star``, ``model.pdb``, a docked model and its
  ``consensus.mrc`` with the origin at the map corner) are made first from the AdK example;
* ``--short`` (what the test suite uses): the example has 300 particles, every training 1 epoch
  whose evaluation decodes 3 k-means centres and 3 frames per principal component (instead of 10
  and 10), torchrun 2 processes, and ``cryodyna quicktest`` is left to its own test.

After a command succeeds, the files it was told to write (``-o``, ``--out``, ``--plot``, ``--npy``,
``--csv``) must exist; at the end, every file name the pages quote in backticks (``z.npy``,
``consensus_fsc.csv``, ...) must have been written somewhere in the folder, evaluation folder names
(``epoch-NNNN_step-NNNNNNN``) matching any evaluation.  The timings without ``--short`` are the
ones the pages quote.

Example:
    python benchmarks/doc_commands.py            # full length, prints the time of every command
    python benchmarks/doc_commands.py --short    # what tests/test_doc_commands.py runs
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/index.md", "docs/tutorial.md", "docs/preparing-data.md", "docs/troubleshooting.md",
         "docs/developer.md", "docs/concepts.md"]
NOT_RUN = ("python -m pytest", "mkdocs ")  # the test suite itself and the documentation build
SHORT_ANALYSIS = " --set analysis.kmeans=3 --set analysis.pc_frames=3"  # fewer decoded structures / volumes
OUTPUT_OPTIONS = {"-o", "--out", "--plot", "--npy", "--csv"}
FILE_NAME = re.compile(r"`([A-Za-z0-9_][A-Za-z0-9_./-]*\.(?:npy|npz|pdb|png|json|csv|txt|yaml|mrc|mrcs|html|pt|star|cxc|itp))`")
# Names the pages quote that no command of theirs writes, and why.
QUOTED_NOT_WRITTEN = {
    "my_z.txt": "a user's own latents",
    "ctf.pkl": "cryoDRGN input",
    "poses.pkl": "cryoDRGN input",
    "nucleic_N.itp": "bead topology of a nucleic-acid chain N; the pages' model is a protein",
    "pca-K.pdb": "placeholder for pca-1.pdb, pca-2.pdb, ...",
    "particles_refined.star": "written with optim.refine_poses=true, which no command on the pages sets",
}


@dataclass
class Result:
    page: str
    command: str
    seconds: float | None = None
    problems: list[str] = field(default_factory=list)


def shell_commands(page: Path) -> list[str]:
    """Command lines of the page's ``bash`` blocks (comments and continuation lines joined)."""
    out = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def shorten(command: str) -> str | None:
    """The ``--short`` form of a command (None: not run)."""
    if command.startswith("cryodyna quicktest"):
        return None
    if command.startswith("cryodyna example"):
        command += " -n 300"
    command = re.sub(r"--epochs \d+", "--epochs 1", command)
    if re.match(r"(torchrun|cryodyna) .*train-(atom|cg|density)", command):
        command += (" --epochs 1" if "--epochs" not in command else "") + SHORT_ANALYSIS
    return re.sub(r"--nproc_per_node \d+", "--nproc_per_node 2", command)


def user_files(folder: Path) -> None:
    """The files the guide assumes the user brings, made from the AdK example."""
    from cryodyna.analysis.maps import model_density
    from cryodyna.io.mrc import write_volume
    from cryodyna.io.structure import read_structure, write_structure

    example = folder / "_user_data"
    subprocess.run(["cryodyna", "example", "adk", "-o", str(example), "-n", "300"], check=True, capture_output=True)
    shutil.copy(example / "particles.mrcs", folder / "particles.mrcs")
    shutil.copy(example / "particles.star", folder / "run_data.star")
    shutil.copy(example / "particles.star", folder / "particles.star")
    shutil.copy(example / "reference.pdb", folder / "model.pdb")
    ref = read_structure(example / "reference.pdb")
    box, apix = 64, 2.0
    write_volume(folder / "consensus.mrc", model_density(ref, box, apix, 2.0, False), apix, (0.0, 0.0, 0.0))  # origin at the corner
    write_structure(folder / "docked_model.pdb", ref.with_coords(ref.coords + box * apix / 2))  # docked in that map


def run_pages(folder: Path, short: bool, log=print) -> list[Result]:
    """Run every page's commands in ``folder``; one :class:`Result` per command."""
    known_extras = extras()
    results = []
    for page in PAGES:
        for line in shell_commands(ROOT / page):
            for command in (part.strip() for part in line.split("&&")):
                r = Result(page, command)
                results.append(r)
                if command.startswith("pip install"):
                    for extra in re.findall(r"\.\[([\w,]+)\]", command):
                        r.problems += [f"extra [{e}] is not in pyproject.toml" for e in extra.split(",") if e not in known_extras]
                    continue
                if command.startswith(NOT_RUN):
                    continue
                run = shorten(command) if short else command
                if run is None:
                    continue
                start = time.perf_counter()
                p = subprocess.run(["bash", "-c", run], cwd=folder, capture_output=True, text=True)
                r.seconds = time.perf_counter() - start
                if p.returncode:
                    r.problems.append(f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-600:]}")
                    log(f"FAILED {page}: {run}\n{r.problems[-1]}")
                    continue
                words = shlex.split(run)
                for option, value in zip(words, words[1:]):
                    if option in OUTPUT_OPTIONS and not (folder / value).exists():
                        r.problems.append(f"{option} {value} was not written")
                log(f"{r.seconds:7.1f} s  {page}: {run}" + (f"   PROBLEMS: {r.problems}" if r.problems else ""))
    return results


def unwritten_names(folder: Path) -> list[str]:
    """File names quoted in the pages that no command wrote anywhere under ``folder``."""
    paths = list(folder.rglob("*"))
    written = {p.name for p in paths} | {str(p.relative_to(folder)) for p in paths}
    evaluation = re.compile(r"epoch-\d{4}_step-\d{7}")
    missing = []
    for page in PAGES:
        for name in sorted(set(FILE_NAME.findall((ROOT / page).read_text()))):
            base = Path(name).name
            if base in QUOTED_NOT_WRITTEN or name.startswith(("http", "../")) or "<" in name:
                continue
            if evaluation.search(name):
                pattern = re.compile(evaluation.sub(r"epoch-\\d{4}_step-\\d{7}", re.escape(name)) + "$")
                if not any(pattern.search(w) for w in written):
                    missing.append(f"{page}: {name}")
            elif base not in written and name not in written:
                missing.append(f"{page}: {name}")
    return missing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short", action="store_true", help="fewer particles and epochs (the test's form)")
    p.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it")
    args = p.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="cryodyna-docs-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"machine: {len(os.sched_getaffinity(0))} cores; folder {folder}; {'short' if args.short else 'full-length'} run",
          flush=True)
    user_files(folder)
    results = run_pages(folder, args.short, log=lambda s: print(s, flush=True))
    problems = [f"{r.page}: {r.command}: {q}" for r in results for q in r.problems] + unwritten_names(folder)
    total = sum(r.seconds or 0 for r in results)
    print(f"{sum(r.seconds is not None for r in results)} commands run in {total:.0f} s; {len(problems)} problems")
    for q in problems:
        print("  " + q)
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
