"""``cryodyna`` command line: parse, validate, call the library (no logic here)."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from cryodyna import __version__
from cryodyna.errors import CryodynaError

app = typer.Typer(
    help="cryodyna: conformational dynamics from cryo-EM particle images with physics-aware priors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show configuration defaults.", no_args_is_help=True)
app.add_typer(config_app, name="config", help="Show the default configuration of a command as YAML.")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"cryodyna {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """cryodyna: conformational dynamics from cryo-EM particle images with physics-aware priors."""


@app.command("info")
def info(
    file: Path = typer.Argument(..., help="A .star, .cs, .pkl, .mrc/.mrcs, .pdb or .cif file."),
    apix: Optional[float] = typer.Option(None, help="Pixel size (Å) for particle files that lack it."),
    datadir: Optional[Path] = typer.Option(None, help="Folder with the image stacks."),
) -> None:
    """Summarise a particle table, pickle, MRC file or atomic model.

    Example: cryodyna info particles.star
    """
    from cryodyna.io.summary import describe

    table = Table(show_header=False, box=None)
    for label, value in describe(file, apix=apix, datadir=datadir):
        table.add_row(f"[bold]{label}[/bold]", value)
    console.print(table)


@config_app.command("show")
def config_show(kind: str = typer.Argument("train-atom", help="Command whose configuration to show.")) -> None:
    """Print the default configuration of KIND as commented YAML.

    Example: cryodyna config show train-atom > my.yaml
    """
    from cryodyna.config import dump_yaml, load_config

    typer.echo(dump_yaml(load_config(kind)), nl=False)


def _simulate(states, label: str, out: Path, mode: str = "interpolate", weights=None, **spec) -> tuple[Path, float]:
    """Run the simulator with a progress bar; returns the STAR path and images/s."""
    from cryodyna.progress import progress_bar
    from cryodyna.simulate.simulator import SimulationSpec, simulate

    spec = SimulationSpec(**spec)
    start = time.perf_counter()
    with progress_bar(label, spec.n_particles) as update:
        star = simulate(states, spec, out, mode=mode, weights=weights, progress=update)
    return star, spec.n_particles / (time.perf_counter() - start)


@app.command("simulate")
def simulate_cmd(
    models: List[Path] = typer.Argument(..., help="One multi-model PDB/mmCIF, or several PDB/mmCIF files (one state each)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    mode: str = typer.Option("interpolate", help="interpolate: continuous path through the states; discrete: one state per particle."),
    weights: Optional[str] = typer.Option(None, help="Comma-separated state weights for --mode discrete."),
    n_particles: int = typer.Option(1000, "-n", "--n-particles", help="Number of particles."),
    box: int = typer.Option(64, help="Image side (px)."),
    apix: float = typer.Option(2.0, help="Pixel size (Å)."),
    snr: float = typer.Option(0.1, help="Signal-to-noise ratio (variance ratio); 0 = noiseless."),
    density: str = typer.Option("atom", help="atom: every atom a Gaussian; residue: one Gaussian per residue."),
    atom_sigma: float = typer.Option(1.0, help="Atom Gaussian width (Å)."),
    defocus_min: float = typer.Option(10000.0, help="Minimum defocus (Å)."),
    defocus_max: float = typer.Option(25000.0, help="Maximum defocus (Å)."),
    max_shift: float = typer.Option(4.0, help="Maximum particle offset per axis (Å)."),
    bfactor: float = typer.Option(0.0, help="CTF B-factor envelope (Å^2)."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Simulate a RELION 3.1 dataset (STAR + MRCS + ground_truth.npz) from one or more conformations.

    Example: cryodyna simulate closed.pdb open.pdb -o sim -n 10000 --box 128 --apix 1.0 --snr 0.05
    """
    from cryodyna.io.structure import read_models, read_structure

    if mode not in {"interpolate", "discrete"}:
        raise CryodynaError(f"--mode must be 'interpolate' or 'discrete', not {mode!r}")
    states = read_models(models[0]) if len(models) == 1 else [read_structure(m) for m in models]
    w = None if weights is None else [float(x) for x in weights.split(",")]
    if w is not None and len(w) != len(states):
        raise CryodynaError(f"--weights has {len(w)} values for {len(states)} states")
    star, speed = _simulate(
        states, "simulating", out, mode, w, n_particles=n_particles, box=box, apix=apix, snr=snr or None,
        density=density, atom_sigma=atom_sigma, defocus_min=defocus_min, defocus_max=defocus_max, max_shift=max_shift,
        bfactor=bfactor, seed=seed,
    )
    console.print(f"wrote {star} ({n_particles} particles, {speed:.0f} images/s)")


@app.command("example")
def example_cmd(
    name: str = typer.Argument("adk", help="Example name (only 'adk': adenylate kinase closed <-> open)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    n_particles: int = typer.Option(2000, "-n", "--n-particles", help="Number of particles."),
    box: int = typer.Option(64, help="Image side (px)."),
    apix: float = typer.Option(2.0, help="Pixel size (Å)."),
    snr: float = typer.Option(0.05, help="Signal-to-noise ratio; 0 = noiseless."),
    density: str = typer.Option("atom", help="atom or residue density."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Build a built-in example dataset offline: reference model, states and simulated particles.

    Example: cryodyna example adk -o adk_example
    """
    from cryodyna.simulate.adk import path_rmsd, write_adk_models

    if name != "adk":
        raise CryodynaError(f"unknown example {name!r}; available: adk")
    ref, closed, opened = write_adk_models(out)
    star, speed = _simulate([closed, opened], "simulating AdK closed <-> open", out, n_particles=n_particles, box=box,
                            apix=apix, snr=snr or None, density=density, seed=seed)
    console.print(f"reference model: {ref} (closed state, CA RMSD to open {path_rmsd():.2f} Å)")
    console.print(f"particles: {star} ({n_particles} images of {box} px at {apix} Å/px, {speed:.0f} images/s)")


@app.command("train-atom")
def train_atom_cmd(
    particles: Path = typer.Argument(..., help="Particles: RELION .star, cryoSPARC .cs, or an .mrcs stack with --poses/--ctf."),
    model: Path = typer.Argument(..., help="Reference model (PDB/mmCIF) docked in the consensus map, origin at the box centre."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder (re-running resumes from its last checkpoint)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config (see `cryodyna config show train-atom`)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field, e.g. --set loss.clash_weight=5 (repeatable)."),
    epochs: Optional[int] = typer.Option(None, help="Shortcut for --set optim.epochs=N."),
    eval_only: bool = typer.Option(False, "--eval-only", help="Run one evaluation with the current (or resumed) weights."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Resume from this checkpoint instead of RUN/checkpoints/last.pt."),
    restart: bool = typer.Option(False, "--restart", help="Ignore an existing checkpoint in the run folder."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Stop training after this many minutes and evaluate."),
    poses: Optional[Path] = typer.Option(None, help="cryoDRGN poses.pkl when PARTICLES is an image stack."),
    ctf: Optional[Path] = typer.Option(None, help="cryoDRGN ctf.pkl when PARTICLES is an image stack."),
) -> None:
    """Learn per-particle latents and residue-level deformations of MODEL from PARTICLES.

    Example: cryodyna train-atom adk_example/particles.star adk_example/reference.pdb -o runs/adk --epochs 5
    """
    from cryodyna.train.run import resolved_config, train_atom

    cfg = resolved_config(config, set_, epochs)
    folder = train_atom(particles, model, out, cfg, eval_only=eval_only, resume=resume, restart=restart,
                        time_limit_minutes=time_limit, poses=poses, ctf=ctf)
    console.print(f"last evaluation: {folder}")


@app.command("sample-structures")
def sample_structures_cmd(
    run: Path = typer.Argument(..., help="A train-atom run folder."),
    z: Path = typer.Option(..., "--z", help="Latents to decode: .npy (K, z_dim) or a text file, e.g. RUN/epoch-*/z.npy."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Multi-model PDB/mmCIF output, one model per latent row."),
    npy: Optional[Path] = typer.Option(None, "--npy", help="Write coordinates (K, N, 3) in Å as .npy instead."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint to load (default RUN/checkpoints/last.pt)."),
    device: str = typer.Option("auto", help="Torch device."),
) -> None:
    """Decode latent rows into structures (all particles' z.npy gives one structure per particle).

    Example: cryodyna sample-structures runs/adk --z runs/adk/epoch-0005_step-0000150/z.npy --npy all.npy
    """
    from cryodyna.analysis.sampling import decode_latents
    from cryodyna.train.run import load_latents, load_run

    if (out is None) == (npy is None):
        raise CryodynaError("give exactly one of -o/--out (PDB/mmCIF) or --npy")
    model, task = load_run(run, checkpoint, device)
    coords = decode_latents(model, load_latents(z))
    if npy is not None:
        np_save(npy, coords)
        console.print(f"wrote {npy} {coords.shape}")
    else:
        task.write_models(out, coords)
        console.print(f"wrote {out} ({len(coords)} models)")


def np_save(path: Path, array) -> None:
    """Save an array with numpy (kept out of the command bodies)."""
    import numpy as np

    np.save(path, array)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def main() -> None:
    """Console-script entry point: warnings print as one line; user errors print one line and exit
    with status 2."""
    warnings.showwarning = _show_warning
    try:
        app()
    except CryodynaError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
