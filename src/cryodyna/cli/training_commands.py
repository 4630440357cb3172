"""The training commands: ``train-atom``, ``train-cg``, ``cg-prep``, ``train-density``, ``quicktest``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from cryodyna.cli.common import (CONFIG_OPT, CTF_OPT, EPOCHS_OPT, EVAL_ONLY_OPT, KEEP_OPT, PARTICLES_ARG, POSES_OPT,
                                     RESTART_OPT, RESUME_OPT, RUN_OUT, SET_OPT, TIME_LIMIT_OPT, app, console, with_keep)
from cryodyna.io.outputs import check_output_folder


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
        from cryodyna.config import resolved_config
        from cryodyna.pipelines import training

        cfg = resolved_config(config, with_keep(set_, keep_checkpoints), epochs, f"train-{kind}")
        train = training.train_atom if kind == "atom" else training.train_cg
        options = dict(eval_only=eval_only, resume=resume, restart=restart, time_limit_minutes=time_limit, poses=poses, ctf=ctf)
        if halfsets:
            from cryodyna.pipelines.halfsets import train_halfsets

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
    backbone_restraint: Optional[float] = typer.Option(None, help="Restraint of the backbone beads alone (kJ mol^-1 Å^-2; default: train-cg's martini.backbone_restraint_k)."),
) -> None:
    """Map a model to MARTINI beads (martinize2), write its topology and minimise it.

    Example: cryodyna cg-prep adk_example/reference.pdb -o adk_cg
    """
    from cryodyna.config import load_config
    from cryodyna.io.structure import read_structure
    from cryodyna.assembly.cg_prep import prepare_cg

    check_output_folder(out)
    cfg = load_config("train-cg", None, [f"martini.force_field={ff}", f"martini.nonbonded={nonbonded}",
                                         f"martini.minimize={'true' if steps > 0 else 'false'}",
                                         f"martini.minimize_steps={max(steps, 1)}", f"martini.restraint_k={restraint}",
                                         *([] if backbone_restraint is None else [f"martini.backbone_restraint_k={backbone_restraint}"])]).martini
    _, report = prepare_cg(read_structure(model), cfg, out, model)
    before, after = report["energy_before_kj_mol"], report["energy_after_kj_mol"]
    table = Table("term", "mapped (kJ/mol)", "minimised (kJ/mol)")
    for term in before:
        table.add_row(term, f"{before[term]:.1f}", f"{after[term]:.1f}")
    console.print(f"{report['beads']} beads for {report['residues']} residues ({report['force_field']}; non-bonded: {report['nonbonded']})")
    console.print(table)
    console.print(f"wrote {out}/cg.pdb, cg_min.pdb, *.itp, energies.json (minimised - mapped RMSD {report['rmsd_minimised_to_mapped_A']:.2f} Å)")


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

    Example: cryodyna train-density adk_example/particles.star --z adk_example/run/latest/z.npy -o adk_example/density
    """
    from cryodyna.config import resolved_config
    from cryodyna.pipelines.training import train_density

    cfg = resolved_config(config, with_keep(set_, keep_checkpoints), epochs, "train-density")
    folder = train_density(particles, z, out, cfg, eval_only=eval_only, resume=resume, restart=restart,
                           time_limit_minutes=time_limit, poses=poses, ctf=ctf)
    console.print(f"last evaluation: {folder}")
    console.print(f"next: maps in {folder}; cryodyna sample-volumes {out} --z Z.txt -o {out}/volumes (maps at chosen latents)",
                  highlight=False)


@app.command("quicktest")
def quicktest_cmd(
    work_dir: Optional[Path] = typer.Option(None, help="Keep the dataset and run in this folder (default: a temporary one)."),
) -> None:
    """Train on a tiny simulated AdK path (under a minute) and check that the model learns and every
    output is written.

    Example: cryodyna quicktest
    """
    from cryodyna.quicktest import quicktest

    if work_dir is not None:
        check_output_folder(work_dir, option="--work-dir")
    checks = quicktest(work_dir, report=console.print)
    console.print(f"[bold green]installation OK[/bold green]: {len(checks)} checks passed")
