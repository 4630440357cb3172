"""Commands about inputs: file summaries, configuration defaults, simulated datasets, map and model helpers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from cryodyna.cli.common import app, config_app, console
from cryodyna.errors import CryodynaError
from cryodyna.io.outputs import check_output_file, check_output_folder
from cryodyna.simulate.spec import SimulationSpec

SIMULATION = SimulationSpec()  # the defaults of simulate


@app.command("info")
def info(
    file: Path = typer.Argument(..., help="A .star, .cs, .pkl, .mrc/.mrcs, .pdb or .cif file."),
    apix: Optional[float] = typer.Option(None, help="Pixel size (Å) for particle files that lack it."),
    datadir: Optional[Path] = typer.Option(None, help="Folder with the image stacks."),
) -> None:
    """Summarise a particle table, pickle, MRC file or atomic model.

    Example: cryodyna info particles.star
    """
    from cryodyna.analysis.summary import describe

    table = Table(show_header=False, box=None)
    for label, value in describe(file, apix=apix, datadir=datadir):
        table.add_row(f"[bold]{label}[/bold]", value)
    console.print(table)


@config_app.command("show")
def config_show(kind: str = typer.Argument("train-atom", help="Command whose configuration to show: train-atom, train-cg or train-density.")) -> None:
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
    check_output_folder(out, spec.n_particles * (2 if spec.float16 else 4) * spec.box**2)  # the image stack
    start = time.perf_counter()
    with progress_bar(label, spec.n_particles) as update:
        star = simulate(states, spec, out, mode=mode, weights=weights, progress=update)
    return star, spec.n_particles / (time.perf_counter() - start)


@app.command("simulate")
def simulate_cmd(
    models: List[Path] = typer.Argument(..., help="One multi-model PDB/mmCIF, or several PDB/mmCIF files (one state each)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    mode: str = typer.Option("interpolate", help="interpolate: continuous path through the states; discrete: one state per particle."),
    weights: Optional[str] = typer.Option(None, help="Comma-separated occupancy per state: for discrete, the state probabilities; for interpolate, the density along the path at each state (e.g. 1,0.2,1: populated ends, sparse middle)."),
    n_particles: int = typer.Option(SIMULATION.n_particles, "-n", "--n-particles", help="Number of particles."),
    box: int = typer.Option(SIMULATION.box, help="Image side (px)."),
    apix: float = typer.Option(SIMULATION.apix, help="Pixel size (Å)."),
    snr: float = typer.Option(SIMULATION.snr, help="Signal-to-noise ratio (variance ratio); 0 = noiseless."),
    density: str = typer.Option(SIMULATION.density, help="atom: every atom a Gaussian; residue: one Gaussian per residue."),
    atom_sigma: float = typer.Option(SIMULATION.atom_sigma, help="Atom Gaussian width (Å)."),
    defocus_min: float = typer.Option(SIMULATION.defocus_min, help="Minimum defocus (Å)."),
    defocus_max: float = typer.Option(SIMULATION.defocus_max, help="Maximum defocus (Å)."),
    max_shift: float = typer.Option(SIMULATION.max_shift, help="Maximum particle offset per axis (Å)."),
    bfactor: float = typer.Option(SIMULATION.bfactor, help="CTF B-factor envelope (Å^2)."),
    seed: int = typer.Option(SIMULATION.seed, help="Random seed."),
    normal_modes: int = typer.Option(SIMULATION.normal_modes, help="Elastic-network (ANM) normal modes of the first state added to every conformation (0 = none)."),
    mode_amplitude: float = typer.Option(SIMULATION.mode_amplitude, help="Amplitude range of each normal mode (Å RMS displacement)."),
    mode_path: str = typer.Option(SIMULATION.mode_path, help="independent: amplitudes uniform in -A..A per mode (a K-D landscape); arc: a curved 1-D motion on a half circle of the first two modes."),
    mode_cutoff: float = typer.Option(SIMULATION.mode_cutoff, help="Spring cut-off of the elastic network (Å)."),
    pose_error_deg: float = typer.Option(SIMULATION.pose_error_deg, help="RMS rotation error of the poses written to the STAR file (degrees; images and ground truth keep the true poses)."),
    shift_error_a: float = typer.Option(SIMULATION.shift_error_a, help="RMS in-plane shift error of the STAR file's origins (Å)."),
    float16: bool = typer.Option(False, "--float16", help="Write the stack as 16-bit floats (MRC mode 12): half the disk of a large data set."),
) -> None:
    """Simulate a RELION 3.1 dataset (STAR + MRCS + ground_truth.npz) from one or more conformations.

    The states form a path (--mode interpolate; a multi-model trajectory gives a curved one) or a
    discrete set, with occupancy --weights; --normal-modes adds elastic-network motions (one model
    and two modes: a 2-D landscape; discrete states and one mode: states mixed with a motion).

    Example: cryodyna simulate closed.pdb open.pdb -o sim -n 10000 --box 128 --apix 1.0 --snr 0.05
    """
    from cryodyna.io.structure import read_models, read_structure, structure_suffix

    if mode not in {"interpolate", "discrete"}:
        raise CryodynaError(f"--mode must be 'interpolate' or 'discrete', not {mode!r}")
    states = read_models(models[0]) if len(models) == 1 else [read_structure(m) for m in models]
    w = None if weights is None else [float(x) for x in weights.split(",")]
    if w is not None and len(w) != len(states):
        raise CryodynaError(f"--weights has {len(w)} values for {len(states)} states")
    star, speed = _simulate(
        states, "simulating", out, mode, w, n_particles=n_particles, box=box, apix=apix, snr=snr or None,
        density=density, atom_sigma=atom_sigma, defocus_min=defocus_min, defocus_max=defocus_max, max_shift=max_shift,
        bfactor=bfactor, seed=seed, normal_modes=normal_modes, mode_amplitude=mode_amplitude, mode_path=mode_path,
        mode_cutoff=mode_cutoff, pose_error_deg=pose_error_deg, shift_error_a=shift_error_a, float16=float16,
    )
    reference = star.parent / f"reference{structure_suffix(states[0])}"
    console.print(f"wrote {star} ({n_particles} particles, {speed:.0f} images/s) and {reference} "
                  "(the first state in the particles' frame)")


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
    check_output_folder(out, n_particles * 4 * box**2)
    ref, closed, opened = write_adk_models(out)
    star, speed = _simulate([closed, opened], "simulating AdK closed <-> open", out, n_particles=n_particles, box=box,
                            apix=apix, snr=snr or None, density=density, seed=seed)
    console.print(f"reference model: {ref} (closed state, CA RMSD to open {path_rmsd(closed, opened):.2f} Å)")
    console.print(f"particles: {star} ({n_particles} images of {box} px at {apix} Å/px, {speed:.0f} images/s)")


@app.command("mrc-info")
def mrc_info_cmd(path: Path = typer.Argument(..., help="MRC/MRCS file.")) -> None:
    """Print the shape, voxel size, origin and value range of an MRC file.

    Example: cryodyna mrc-info map.mrc
    """
    from cryodyna.analysis.summary import describe_mrc

    for label, value in describe_mrc(path, statistics=True):
        console.print(f"[bold]{label}[/bold]: {value}")


@app.command("center-origin")
def center_origin_cmd(
    model: Path = typer.Argument(..., help="Model docked in the map."),
    map_: Path = typer.Argument(..., metavar="MAP", help="Consensus map (its header origin is respected)."),
    out: Path = typer.Option(Path("."), "-o", "--out", help="Output folder."),
) -> None:
    """Move a map and its docked model into cryodyna's frame (0 Å at the box centre).

    Example: cryodyna center-origin model.pdb consensus.mrc -o prepared
    """
    from cryodyna.analysis.maps import center_origin

    check_output_folder(out, model.stat().st_size + map_.stat().st_size if model.is_file() and map_.is_file() else 0)
    out_model, out_map, shift = center_origin(model, map_, out)
    console.print(f"wrote {out_model} and {out_map} (translation {', '.join(f'{v:.2f}' for v in shift)} Å)")


@app.command("pdb2mrc")
def pdb2mrc_cmd(
    model: Path = typer.Argument(..., help="PDB/mmCIF model in the box frame (0 Å at the centre)."),
    box: int = typer.Option(..., "--box", help="Box side (px)."),
    apix: float = typer.Option(..., "--apix", help="Voxel size (Å)."),
    sigma: float = typer.Option(2.0, "--sigma", help="Gaussian width (Å)."),
    atoms: bool = typer.Option(False, "--atoms", help="One Gaussian per atom instead of per residue."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output MRC (default MODEL.mrc)."),
) -> None:
    """Gaussian density of a model on a box grid, written as MRC with the matching origin.

    Example: cryodyna pdb2mrc reference.pdb --box 128 --apix 1.0 -o reference.mrc
    """
    from cryodyna.analysis.maps import model_density
    from cryodyna.io.mrc import write_volume
    from cryodyna.io.structure import read_structure

    out = out or model.with_suffix(".mrc")
    check_output_file(out, 4 * box**3)
    write_volume(out, model_density(read_structure(model), box, apix, sigma, atoms), apix)
    console.print(f"wrote {out}")


@app.command("split-models")
def split_models_cmd(
    pdb: Path = typer.Argument(..., help="Multi-model PDB/mmCIF (e.g. pca-1.pdb)."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output folder (default: next to the file, named after it)."),
) -> None:
    """Write each model of a multi-model file as its own PDB.

    Example: cryodyna split-models runs/adk/latest/pca-1.pdb
    """
    from cryodyna.analysis.maps import split_models

    check_output_folder(out or pdb.with_suffix(""), pdb.stat().st_size if pdb.is_file() else 0)
    paths = split_models(pdb, out or pdb.with_suffix(""))
    console.print(f"wrote {len(paths)} models to {paths[0].parent}")
