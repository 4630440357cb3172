"""``cryodyna`` command line: parse, validate, call the library (no logic here)."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from cryodyna import __version__
from cryodyna.errors import CryodynaError, TrainingInterrupted

app = typer.Typer(
    help="cryodyna: conformational dynamics from cryo-EM particle images with physics-aware priors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: brackets such as "cryodyna[relax]" or "[Å]" stay as written
)
config_app = typer.Typer(help="Show configuration defaults.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(config_app, name="config", help="Show the default configuration of a command as YAML.")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


# options shared by the training commands (typer option objects can be reused)
PARTICLES_ARG = typer.Argument(..., help="Particles: RELION .star, cryoSPARC .cs, or an .mrcs stack with --poses/--ctf.")
RUN_OUT = typer.Option(..., "-o", "--out", help="Run folder (re-running resumes from its last checkpoint).")
CONFIG_OPT = typer.Option(None, "--config", help="YAML config (see `cryodyna config show COMMAND`).")
SET_OPT = typer.Option([], "--set", help="Override a config field, e.g. --set optim.lr=3e-4 (repeatable).")
EPOCHS_OPT = typer.Option(None, help="Shortcut for --set optim.epochs=N.")
KEEP_OPT = typer.Option(None, "--keep-checkpoints", metavar="N|all",
                        help="Evaluation folders that keep their ckpt.pt: the newest N (default 2) plus the one with the best held-out loss, or all (shortcut for --set optim.keep_checkpoints=...).")


def _with_keep(settings: list[str], keep: str | None) -> list[str]:
    """``--set`` overrides plus ``--keep-checkpoints``."""
    return list(settings) + ([f"optim.keep_checkpoints={keep}"] if keep is not None else [])
EVAL_ONLY_OPT = typer.Option(False, "--eval-only", help="Run one evaluation with the current (or resumed) weights.")
RESUME_OPT = typer.Option(None, "--resume", help="Resume from this checkpoint instead of RUN/checkpoints/last.pt.")
RESTART_OPT = typer.Option(False, "--restart", help="Ignore an existing checkpoint in the run folder.")
TIME_LIMIT_OPT = typer.Option(None, "--time-limit", help="Stop training after this many minutes and evaluate.")
POSES_OPT = typer.Option(None, help="cryoDRGN poses.pkl when PARTICLES is an image stack.")
CTF_OPT = typer.Option(None, help="cryoDRGN ctf.pkl when PARTICLES is an image stack.")


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
    normal_modes: int = typer.Option(0, help="Elastic-network (ANM) normal modes of the first state added to every conformation (0 = none)."),
    mode_amplitude: float = typer.Option(3.0, help="Amplitude range of each normal mode (Å RMS displacement)."),
    mode_path: str = typer.Option("independent", help="independent: amplitudes uniform in -A..A per mode (a K-D landscape); arc: a curved 1-D motion on a half circle of the first two modes."),
    mode_cutoff: float = typer.Option(15.0, help="Spring cut-off of the elastic network (Å)."),
    pose_error_deg: float = typer.Option(0.0, help="RMS rotation error of the poses written to the STAR file (degrees; images and ground truth keep the true poses)."),
    shift_error_a: float = typer.Option(0.0, help="RMS in-plane shift error of the STAR file's origins (Å)."),
) -> None:
    """Simulate a RELION 3.1 dataset (STAR + MRCS + ground_truth.npz) from one or more conformations.

    The states form a path (--mode interpolate; a multi-model trajectory gives a curved one) or a
    discrete set, with occupancy --weights; --normal-modes adds elastic-network motions (one model
    and two modes: a 2-D landscape; discrete states and one mode: states mixed with a motion).

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
        bfactor=bfactor, seed=seed, normal_modes=normal_modes, mode_amplitude=mode_amplitude, mode_path=mode_path,
        mode_cutoff=mode_cutoff, pose_error_deg=pose_error_deg, shift_error_a=shift_error_a,
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
    console.print(f"reference model: {ref} (closed state, CA RMSD to open {path_rmsd(closed, opened):.2f} Å)")
    console.print(f"particles: {star} ({n_particles} images of {box} px at {apix} Å/px, {speed:.0f} images/s)")


def _deformation_command(kind: str, model_help: str, doc: str) -> None:
    """Register ``train-atom`` / ``train-cg``: the same options, different stage."""

    def command(
        particles: Path = PARTICLES_ARG,
        model: Path = typer.Argument(..., help=model_help),
        out: Path = RUN_OUT,
        config: Optional[Path] = CONFIG_OPT,
        set_: List[str] = SET_OPT,
        epochs: Optional[int] = EPOCHS_OPT,
        keep_checkpoints: Optional[str] = KEEP_OPT,
        eval_only: bool = EVAL_ONLY_OPT,
        resume: Optional[Path] = RESUME_OPT,
        restart: bool = RESTART_OPT,
        time_limit: Optional[float] = TIME_LIMIT_OPT,
        poses: Optional[Path] = POSES_OPT,
        ctf: Optional[Path] = CTF_OPT,
        halfsets: bool = typer.Option(False, "--halfsets", help="Train two independent models on the two half-sets of the particles (rlnRandomSubset when the file has it, else random halves) into OUT/half-1 and OUT/half-2, and compare their predictions for every particle (OUT/halfset_agreement.csv, per node; OUT/halfset_particles.csv, per particle)."),
    ) -> None:
        from cryodyna.train import run

        cfg = run.resolved_config(config, _with_keep(set_, keep_checkpoints), epochs, f"train-{kind}")
        train = run.train_atom if kind == "atom" else run.train_cg
        options = dict(eval_only=eval_only, resume=resume, restart=restart, time_limit_minutes=time_limit, poses=poses, ctf=ctf)
        if halfsets:
            from cryodyna.train.halfsets import train_halfsets

            folders = train_halfsets(train, particles, model, out, cfg, **options)
            console.print(f"last evaluations: {folders[0]}, {folders[1]}; half-set agreement: {out / 'halfset_agreement.csv'}")
            console.print(f"next: cryodyna reconstruct {out} -o {out / 'consensus.mrc'}   (gold-standard corrected map)",
                          highlight=False)
            return
        folder = train(particles, model, out, cfg, **options)
        console.print(f"last evaluation: {folder}")
        console.print(f"next: cryodyna analyze {out}   (structures along the PCs, RMSF, index.html); "
                      f"cryodyna train-density {particles} --z {folder / 'z.npy'} -o {out}_density", highlight=False)

    command.__doc__ = doc
    app.command(f"train-{kind}")(command)


_deformation_command(
    "atom", "Reference model (PDB/mmCIF) docked in the consensus map, origin at the box centre.",
    """Learn per-particle latents and residue-level deformations of MODEL from PARTICLES.

    Example: cryodyna train-atom adk_example/particles.star adk_example/reference.pdb -o runs/adk --epochs 5
    """)
_deformation_command(
    "cg", "All-atom reference model (PDB/mmCIF) docked in the consensus map, origin at the box centre.",
    """Learn per-particle latents and MARTINI bead-level deformations of MODEL from PARTICLES.

    Example: cryodyna train-cg adk_example/particles.star adk_example/reference.pdb -o runs/adk_cg --epochs 5
    """)


@app.command("cg-prep")
def cg_prep_cmd(
    model: Path = typer.Argument(..., help="All-atom model (PDB/mmCIF), complete side chains, in the map frame."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    ff: str = typer.Option("martini3001", "--ff", help="Force field: martini3001 (Martini 3) or martini22 (Martini 2.2)."),
    nonbonded: str = typer.Option("wca", help="Non-bonded form for the minimisation: wca, lj or morse."),
    steps: int = typer.Option(500, help="L-BFGS iterations of the minimisation (0 = no minimisation)."),
    restraint: float = typer.Option(10.0, help="Harmonic restraint of the beads to the mapped positions during the minimisation (kJ mol^-1 Å^-2)."),
) -> None:
    """Map a model to MARTINI beads (martinize2), write its topology and minimise it.

    Example: cryodyna cg-prep adk_example/reference.pdb -o adk_cg
    """
    from cryodyna.config import load_config
    from cryodyna.io.structure import read_structure
    from cryodyna.train.cg_prep import prepare_cg

    cfg = load_config("train-cg", None, [f"martini.force_field={ff}", f"martini.nonbonded={nonbonded}",
                                         f"martini.minimize={'true' if steps > 0 else 'false'}",
                                         f"martini.minimize_steps={max(steps, 1)}", f"martini.restraint_k={restraint}"]).martini
    _, report = prepare_cg(read_structure(model), cfg, out, model)
    before, after = report["energy_before_kj_mol"], report["energy_after_kj_mol"]
    table = Table("term", "mapped (kJ/mol)", "minimised (kJ/mol)")
    for term in before:
        table.add_row(term, f"{before[term]:.1f}", f"{after[term]:.1f}")
    console.print(f"{report['beads']} beads for {report['residues']} residues ({report['force_field']}; non-bonded: {report['nonbonded']})")
    console.print(table)
    console.print(f"wrote {out}/cg.pdb, cg_min.pdb, *.itp, energies.json (minimised - mapped RMSD {report['rmsd_minimised_to_mapped_A']:.2f} Å)")


@app.command("backmap")
def backmap_cmd(
    source: Path = typer.Argument(..., metavar="RUN_OR_PDB", help="A train-cg run folder (uses its latest pred.pdb) or a bead model PDB written by train-cg/analyze."),
    out: Path = typer.Option(..., "-o", "--out", help="All-atom multi-model PDB/mmCIF to write."),
    run: Optional[Path] = typer.Option(None, "--run", help="The train-cg run folder, when RUN_OR_PDB is a PDB outside it."),
    relax: bool = typer.Option(False, "--relax", help="Then minimise each model with OpenMM (Amber14, vacuum), heavy atoms restrained to the back-mapped positions; needs pip install \"cryodyna[relax]\"."),
    relax_iterations: int = typer.Option(500, "--relax-iterations", min=0, help="Minimiser iterations per model with --relax (0 = until converged)."),
    relax_restraint: float = typer.Option(10.0, "--relax-restraint", min=0.0, help="Harmonic restraint of each heavy atom to its back-mapped position with --relax (kJ mol^-1 Å^-2, the unit of cg-prep --restraint)."),
    restraint_nm: Optional[float] = typer.Option(None, "--restraint", min=0.0, hidden=True, help="Deprecated: --relax-restraint in kJ mol^-1 nm^-2."),
) -> None:
    """Rebuild all-atom models from bead models (per-residue superposition of the all-atom reference),
    optionally relaxed by a short restrained minimisation.

    Example: cryodyna backmap runs/adk_cg/epoch-0005_step-0000150/pca-1.pdb -o pca-1_allatom.pdb --relax
    """
    from cryodyna.analysis.backmap import backmap_run

    if restraint_nm is not None:
        warnings.warn("backmap --restraint (kJ mol^-1 nm^-2) is deprecated: use --relax-restraint in kJ mol^-1 Å^-2 "
                      f"(--relax-restraint {restraint_nm / 100:g})", stacklevel=1)
        relax_restraint = restraint_nm / 100
    n_models, report, relaxed = backmap_run(source, out, run, relax_iterations if relax else None, 100 * relax_restraint)
    for label, r in (("back-mapped", report), ("relaxed", relaxed)):
        if r is not None:
            console.print(f"{label}: bond lengths RMS change {r.bond_rms_dev:.3f} Å, max {r.bond_max_dev:.2f} Å; "
                          f"atoms in clashes (< 2.2 Å): {100 * r.clash_fraction:.2f} %")
    console.print(f"wrote {out} ({n_models} all-atom models)")


@app.command("sample-structures")
def sample_structures_cmd(
    run: Path = typer.Argument(..., help="A train-atom or train-cg run folder."),
    z: Path = typer.Option(..., "--z", help="Latents to decode: .npy (K, z_dim) or a text file, e.g. RUN/epoch-*/z.npy."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Multi-model PDB/mmCIF output, one model per latent row."),
    npy: Optional[Path] = typer.Option(None, "--npy", help="Write coordinates (K, N, 3) in Å as .npy instead (with --allatom: (K, atoms, 3))."),
    allatom: bool = typer.Option(False, "--allatom", help="train-cg runs: back-map every bead model to all atoms (per-residue superposition of the all-atom reference) and report bond-length changes and clashes."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint to load (default RUN/checkpoints/last.pt)."),
    device: str = typer.Option("auto", help="Torch device."),
) -> None:
    """Decode latent rows into structures (all particles' z.npy gives one structure per particle).

    Example: cryodyna sample-structures runs/adk --z runs/adk/epoch-0005_step-0000150/z.npy --npy all.npy
    Example: cryodyna sample-structures runs/adk_cg --z runs/adk_cg/epoch-0005_step-0000150/z.npy --allatom -o all.pdb
    """
    import numpy as np

    from cryodyna.analysis.sampling import decode_latents
    from cryodyna.train.run import load_latents, load_run

    if (out is None) == (npy is None):
        raise CryodynaError("give exactly one of -o/--out (PDB/mmCIF) or --npy")
    if allatom:
        from cryodyna.analysis.backmap import backmap, geometry_report, run_backmapping

        reference, cg = run_backmapping(run)
    model, task = load_run(run, checkpoint, device)
    coords = decode_latents(model, load_latents(z))
    if allatom:
        start = time.perf_counter()
        coords = backmap(reference, cg, coords)
        rate = len(coords) / (time.perf_counter() - start)
        r = geometry_report(reference, coords)
        console.print(f"back-mapped {len(coords)} models ({rate:.0f} models/s): bond lengths RMS change {r.bond_rms_dev:.3f} Å, "
                      f"max {r.bond_max_dev:.2f} Å; atoms in clashes (< 2.2 Å): {100 * r.clash_fraction:.2f} %", highlight=False)
    if npy is not None:
        np.save(npy, coords)
        console.print(f"wrote {npy} {coords.shape}")
    elif allatom:
        from cryodyna.io.structure import write_structure

        write_structure(out, reference, coords)
        console.print(f"wrote {out} ({len(coords)} all-atom models)")
    else:
        task.write_models(out, coords)
        console.print(f"wrote {out} ({len(coords)} models)")


@app.command("traverse")
def traverse_cmd(
    run: Path = typer.Argument(..., help="A train-atom or train-cg run folder."),
    start: str = typer.Option(..., "--from", help="Start: a particle index, or a latent as comma-separated numbers."),
    end: str = typer.Option(..., "--to", help="End: a particle index, or a latent as comma-separated numbers."),
    out: Path = typer.Option(..., "-o", "--out", help="Multi-model PDB/mmCIF of the path; the latents go to OUT.z.txt and the visited particles to OUT.particles.txt."),
    frames: int = typer.Option(10, "--frames", min=2, help="Structures along the path (count)."),
    neighbours: int = typer.Option(10, "--neighbours", min=1, help="Neighbours per particle in the latent graph (count)."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", help="Evaluation folder whose z.npy to use (default: the latest)."),
) -> None:
    """Structures along a path between two particles (or latents) that stays in populated regions of
    the latent space: the shortest path through the particles' nearest-neighbour graph.

    Example: cryodyna traverse runs/adk --from 12 --to 907 -o runs/adk/path.pdb
    """
    import numpy as np

    from cryodyna.analysis.report import latest_evaluation
    from cryodyna.analysis.sampling import decode_latents
    from cryodyna.analysis.traverse import latent_path, parse_end_point
    from cryodyna.train.run import load_run

    z = np.load((eval_dir or latest_evaluation(run)) / "z.npy")
    path, visited = latent_path(z, parse_end_point(start, z, "--from"), parse_end_point(end, z, "--to"), frames, neighbours)
    model, task = load_run(run)
    task.write_models(out, decode_latents(model, path))
    np.savetxt(f"{out}.z.txt", path, fmt="%.5f")
    np.savetxt(f"{out}.particles.txt", visited, fmt="%d")
    console.print(f"wrote {out} ({frames} models along a path through {len(visited)} particles)")


@app.command("reconstruct")
def reconstruct_cmd(
    run: Path = typer.Argument(..., help="A train-atom or train-cg run folder, or the folder of a --halfsets run."),
    out: Path = typer.Option(..., "-o", "--out", help="Corrected consensus map (MRC); its siblings OUT_half1/2.mrc (unfiltered half maps), OUT_plain*.mrc (plain back-projection of the same particles), OUT_mask.mrc, OUT_fsc.csv/.png and OUT.json are written beside it."),
    box: Optional[int] = typer.Option(None, "--box", min=8, help="Reconstruct from images Fourier-cropped to this many pixels (default: the images' own size)."),
    z: Optional[Path] = typer.Option(None, "--z", help="Also one corrected map per latent row (.npy or text, K x z_dim; for a --halfsets run, latents of half-1), written as OUT_z000.mrc ..."),
    particles_per_map: Optional[int] = typer.Option(None, "--particles-per-map", min=2, help="With --z: the particles whose structures are nearest (node RMSD) to each latent's structure that go into its map (default: a fifth of all)."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", help="Evaluation folder whose latents and weights to use (default: the latest)."),
    width: Optional[float] = typer.Option(None, "--field-width", min=0.1, help="Width of the Gaussian RBF that extends node displacements to a 3-D field (Å; default: the median nearest-node distance, 3.8 Å per residue)."),
    batch: int = typer.Option(32, "--batch", min=1, help="Particles back-projected at once (memory grows with it)."),
    device: str = typer.Option("auto", help="Torch device."),
) -> None:
    """Deformation-corrected consensus map: every particle back-projected into the reference
    conformation through its learned deformation (CTF-weighted, Wiener-filtered from the half-set
    FSC), next to the plain back-projection of the same particles, with gold-standard half-set FSCs.

    Example: cryodyna reconstruct runs/adk -o runs/adk/consensus.mrc
    """
    from cryodyna.train.reconstruct_run import reconstruct_run
    from cryodyna.train.run import load_latents

    s = reconstruct_run(run, out, box, eval_dir, width, batch, device, None if z is None else load_latents(z), particles_per_map)
    for name in ("corrected", "plain"):
        r = s[name]
        console.print(f"{name:9s} half-set FSC=0.5: {r['fsc_0.5_a']:.2f} Å   FSC=0.143: {r['fsc_0.143_a']:.2f} Å   "
                      f"AUC {r['fsc_auc']:.3f}", highlight=False)
    for m in s.get("latent_maps", []):
        console.print(f"{m['map']}: {m['particles']} particles (node RMSD <= {m['max_node_rmsd_a']:.2f} Å), "
                      f"FSC=0.143 at {m['fsc_0.143_a']:.2f} Å", highlight=False)
    console.print(f"wrote {out} and its half maps, plain maps, mask and FSC ({s['particles'][0]} + {s['particles'][1]} "
                  f"particles, {s['half_sets']}; {s['particles_per_s']:.0f} particles/s)", highlight=False)


@app.command("train-density")
def train_density_cmd(
    particles: Path = PARTICLES_ARG,
    z: Optional[Path] = typer.Option(None, "--z", help="Per-particle latents (N, z_dim), e.g. RUN/epoch-*/z.npy from train-atom; omit for a homogeneous map."),
    out: Path = RUN_OUT,
    config: Optional[Path] = CONFIG_OPT,
    set_: List[str] = SET_OPT,
    epochs: Optional[int] = EPOCHS_OPT,
    keep_checkpoints: Optional[str] = KEEP_OPT,
    eval_only: bool = EVAL_ONLY_OPT,
    resume: Optional[Path] = RESUME_OPT,
    restart: bool = RESTART_OPT,
    time_limit: Optional[float] = TIME_LIMIT_OPT,
    poses: Optional[Path] = POSES_OPT,
    ctf: Optional[Path] = CTF_OPT,
) -> None:
    """Train a density generator (implicit volume network) on PARTICLES with given latents.

    Example: cryodyna train-density adk_example/particles.star --z adk_example/run/epoch-0010_step-0000290/z.npy -o adk_example/density
    """
    from cryodyna.train.density import train_density
    from cryodyna.train.run import resolved_config

    cfg = resolved_config(config, _with_keep(set_, keep_checkpoints), epochs, "train-density")
    folder = train_density(particles, z, out, cfg, eval_only=eval_only, resume=resume, restart=restart,
                           time_limit_minutes=time_limit, poses=poses, ctf=ctf)
    console.print(f"last evaluation: {folder}")
    console.print(f"next: maps in {folder}; cryodyna sample-volumes {out} --z Z.txt -o {out}/volumes (maps at chosen latents)",
                  highlight=False)


@app.command("sample-volumes")
def sample_volumes_cmd(
    run: Path = typer.Argument(..., help="A train-density run folder."),
    z: Optional[Path] = typer.Option(None, "--z", help="Latents: .npy (K, z_dim) or a text file such as z_pca_1.txt (omit for a homogeneous run)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder for vol_000.mrc, vol_001.mrc, ..."),
    box: Optional[int] = typer.Option(None, "--box", help="Output box (px); default: the training box."),
    apix: Optional[float] = typer.Option(None, "--apix", help="Output voxel size (Å); default: keep the training box extent."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint to load (default RUN/checkpoints/last.pt)."),
    device: str = typer.Option("auto", help="Torch device."),
) -> None:
    """Generate volumes at chosen latents with a trained density generator.

    Example: cryodyna sample-volumes runs/density --z runs/density/epoch-0020_step-0002500/z_pca_1.txt -o pc1_maps
    """
    from cryodyna.train.density import sample_volumes
    from cryodyna.train.run import load_latents

    paths = sample_volumes(run, None if z is None else load_latents(z), out, box, apix, checkpoint, device)
    console.print(f"wrote {len(paths)} volume(s) to {out}")


@app.command("fsc")
def fsc_cmd(
    map1: Path = typer.Argument(..., help="First map (MRC)."),
    map2: Path = typer.Argument(..., help="Second map (MRC), same box and voxel size."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Mask (MRC) applied to both maps."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the FSC curve as a PNG."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Write frequency (1/Å), resolution (Å) and FSC per shell."),
) -> None:
    """Fourier shell correlation of two maps: resolution at FSC 0.5 and 0.143, and the area under the curve.

    Example: cryodyna fsc vol_000.mrc truth.mrc --plot fsc.png
    """
    from cryodyna.analysis.fsc import map_fsc

    result = map_fsc(map1, map2, mask)
    console.print(f"FSC=0.5: {result.resolution(0.5):.2f} Å   FSC=0.143: {result.resolution(0.143):.2f} Å   "
                  f"FSC-AUC: {result.auc:.4f}   (voxel {result.apix:.3f} Å)")
    if plot is not None:
        from cryodyna.analysis.figures import fsc_plot

        fsc_plot(plot, result, f"{map1.name} vs {map2.name}")
        console.print(f"wrote {plot}")
    if csv is not None:
        result.to_csv(csv)
        console.print(f"wrote {csv}")


@app.command("analyze")
def analyze_cmd(
    run: Path = typer.Argument(..., help="A train-atom or train-cg run folder."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", help="Evaluation folder to analyse (default: the latest)."),
    k: int = typer.Option(10, "--k", help="Number of k-means clusters."),
    pcs: int = typer.Option(3, "--pcs", help="Principal components to traverse."),
    umap: bool = typer.Option(True, help="Add a UMAP panel when umap-learn is installed."),
) -> None:
    """Analyse a saved evaluation: structures with RMSF B-factors, plots, RUN/index.html.

    k-means and PC-trajectory structures (B-factor = RMSF), plots (PCA, UMAP, PC histograms, losses).

    Example: cryodyna analyze runs/adk --k 8
    """
    from cryodyna.analysis.report import analyze

    out = analyze(run, eval_dir, k=k, pcs=pcs, use_umap=umap)
    console.print(f"analysis written to {out}; overview: {Path(run) / 'index.html'}")


@app.command("cluster")
def cluster_cmd(
    run: Path = typer.Argument(..., help="A train-atom or train-cg run folder."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder for the subsets."),
    k: Optional[int] = typer.Option(None, "--k", help="k-means clusters (one subset each)."),
    pc: Optional[int] = typer.Option(None, "--pc", help="Select by the score on this principal component (1-based)..."),
    pc_range: Optional[str] = typer.Option(None, "--range", help="...between LOW,HIGH (with --pc)."),
    z_box: Optional[str] = typer.Option(None, "--zbox", help="Select latents inside a box in latent space: LOW1:HIGH1,LOW2:HIGH2,... (one range per z dimension, in latent units)."),
    z_box_old: Optional[str] = typer.Option(None, "--box", hidden=True, help="Deprecated name of --zbox."),
    indices: Optional[Path] = typer.Option(None, "--indices", help="Select the particles listed in this text file (0-based indices, one per line, e.g. exported from report.html)."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", help="Evaluation folder whose z.npy to use (default: the latest)."),
) -> None:
    """Export particle subsets by latent (k-means, PC range or z box) as STAR and index pickles.

    The RELION STAR subsets and cryoDRGN index pickles are ready for homogeneous refinement elsewhere.

    Example: cryodyna cluster runs/adk --k 4 -o runs/adk/clusters
    """
    import numpy as np

    from cryodyna.analysis.cluster import box_subset, kmeans_subsets, pc_range_subset, read_indices, run_particles, write_subsets
    from cryodyna.analysis.report import latest_evaluation

    z = np.load((eval_dir or latest_evaluation(run)) / "z.npy")
    if z_box_old is not None:
        warnings.warn("cluster --box is deprecated (every other --box is an image size in px): use --zbox", stacklevel=1)
        z_box = z_box if z_box is not None else z_box_old
    if sum(x is not None for x in (k, pc, z_box, indices)) != 1:
        raise CryodynaError("choose exactly one of --k, --pc/--range, --zbox or --indices")
    if k is not None:
        if not 2 <= k <= max(2, len(z) // 10):
            raise CryodynaError(f"--k {k}: choose 2 to {max(2, len(z) // 10)} clusters for {len(z)} particles "
                                "(at least ~10 particles per subset to refine)")
        subsets, prefix = kmeans_subsets(z, k), "cluster"
    elif pc is not None:
        if pc_range is None:
            raise CryodynaError("--pc needs --range LOW,HIGH")
        try:
            low, high = (float(v) for v in pc_range.split(","))
        except ValueError:
            raise CryodynaError(f"--range {pc_range!r}: expected two numbers LOW,HIGH (e.g. --range=-1.5,0.5)") from None
        if low >= high:
            raise CryodynaError(f"--range {pc_range}: LOW must be below HIGH")
        subsets, prefix = [pc_range_subset(z, pc, low, high)], f"pc{pc}_range"
    elif indices is not None:
        subsets, prefix = [read_indices(indices, len(z))], "selection"
    else:
        bounds = [tuple(float(v) for v in part.split(":")) for part in z_box.split(",")]
        if len(bounds) != z.shape[1]:
            raise CryodynaError(f"--zbox needs {z.shape[1]} LOW:HIGH ranges, one per latent dimension")
        subsets, prefix = [box_subset(z, np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds]))], "zbox"
    if not any(len(idx) for idx in subsets):
        raise CryodynaError("the selection holds no particle; nothing written (see the PC scores or latent ranges in the analysis)")
    written = write_subsets(run_particles(run), subsets, out, prefix)
    for star, idx in zip(written, [s for s in subsets if len(s)]):
        console.print(f"{star}: {len(idx)} particles")


@app.command("chimerax")
def chimerax_cmd(
    run: Path = typer.Argument(..., help="A run folder (or one of its evaluation/analysis folders)."),
    out: Path = typer.Option(Path("movie.cxc"), "-o", "--out", help="ChimeraX command script to write."),
    movie: str = typer.Option("movie.mp4", help="Movie file the script records."),
) -> None:
    """Write a ChimeraX script that plays the PC trajectories (and maps, if any) and records a movie.

    Uses RUN/analysis/<latest evaluation>/ (B-factor = RMSF) when `cryodyna analyze` has run.

    Example: cryodyna chimerax runs/adk -o adk.cxc   (then in ChimeraX: open adk.cxc)
    """
    from cryodyna.analysis.chimerax import chimerax_script
    from cryodyna.analysis.report import latest_evaluation

    if list(Path(run).glob("pca-*.pdb")):
        folder = run
    else:  # prefer the RMSF-coloured trajectories of `cryodyna analyze` when they exist
        latest = latest_evaluation(run)
        analysed = Path(run) / "analysis" / latest.name
        folder = analysed if analysed.is_dir() else latest
    out.write_text(chimerax_script(folder, out, movie))
    console.print(f"wrote {out} (trajectories from {folder})")


@app.command("mrc-info")
def mrc_info_cmd(path: Path = typer.Argument(..., help="MRC/MRCS file.")) -> None:
    """Print the shape, voxel size, origin and value range of an MRC file.

    Example: cryodyna mrc-info map.mrc
    """
    from cryodyna.io.summary import describe_mrc

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
    write_volume(out, model_density(read_structure(model), box, apix, sigma, atoms), apix)
    console.print(f"wrote {out}")


@app.command("split-models")
def split_models_cmd(
    pdb: Path = typer.Argument(..., help="Multi-model PDB/mmCIF (e.g. pca-1.pdb)."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output folder (default: next to the file, named after it)."),
) -> None:
    """Write each model of a multi-model file as its own PDB.

    Example: cryodyna split-models runs/adk/epoch-0010_step-0000290/pca-1.pdb
    """
    from cryodyna.analysis.maps import split_models

    paths = split_models(pdb, out or pdb.with_suffix(""))
    console.print(f"wrote {len(paths)} models to {paths[0].parent}")


@app.command("quicktest")
def quicktest_cmd(
    work_dir: Optional[Path] = typer.Option(None, help="Keep the dataset and run in this folder (default: a temporary one)."),
) -> None:
    """Train on a tiny simulated AdK path (under a minute) and check that the model learns and every
    output is written.

    Example: cryodyna quicktest
    """
    from cryodyna.quicktest import quicktest

    checks = quicktest(work_dir, report=console.print)
    console.print(f"[bold green]installation OK[/bold green]: {len(checks)} checks passed")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


class _ConsoleLog(logging.Handler):
    """The log's informational lines (resumes, evaluations, start-up facts) on the console."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(record.getMessage(), style="dim" if record.levelno < logging.WARNING else "yellow",
                          highlight=False, markup=False)


def main() -> None:
    """Console-script entry point: warnings print as one line; the log's lines appear on the console
    (rank 0 only); user errors print one line and exit with status 2; an interrupted training says
    how to resume and exits with status 130."""
    warnings.showwarning = _show_warning
    if os.environ.get("RANK", "0") == "0":
        log = logging.getLogger("cryodyna")
        log.setLevel(logging.INFO)
        log.addHandler(_ConsoleLog())
    try:
        app()
    except TrainingInterrupted as exc:
        err_console.print(f"[bold yellow]interrupted:[/bold yellow] {exc}", highlight=False)
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("[bold yellow]interrupted[/bold yellow] (outside the training steps: no checkpoint written; re-run the command to continue)")
        sys.exit(130)
    except CryodynaError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
