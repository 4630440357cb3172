"""Commands on trained runs: structures, paths, maps, FSC, analysis, subsets, ChimeraX scripts, back-mapping."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer

from cryodyna.cli.common import app, console
from cryodyna.config.schema import AnalysisConfig
from cryodyna.errors import CryodynaError
from cryodyna.io.outputs import check_output_file, check_output_folder
from cryodyna.runs.layout import RunFolder

ANALYSIS = AnalysisConfig()


@app.command("backmap")
def backmap_cmd(
    source: Path = typer.Argument(..., metavar="RUN_OR_PDB", help="A train-cg run folder (uses its latest pred.pdb) or a bead model PDB written by train-cg/analyze."),
    out: Path = typer.Option(..., "-o", "--out", help="All-atom multi-model PDB/mmCIF to write."),
    run: Optional[Path] = typer.Option(None, "--run", help="The train-cg run folder, when RUN_OR_PDB is a PDB outside it."),
    relax: bool = typer.Option(False, "--relax", help="Then minimise each model with OpenMM (Amber14, vacuum), heavy atoms restrained to the back-mapped positions; needs pip install -e \".[relax]\" in the cryodyna clone."),
    relax_iterations: int = typer.Option(500, "--relax-iterations", min=0, help="Minimiser iterations per model with --relax (0 = until converged)."),
    relax_restraint: float = typer.Option(10.0, "--relax-restraint", min=0.0, help="Harmonic restraint of each heavy atom to its back-mapped position with --relax (kJ mol^-1 Å^-2, the unit of cg-prep --restraint)."),
    restraint_nm: Optional[float] = typer.Option(None, "--restraint", min=0.0, hidden=True, help="Deprecated: --relax-restraint in kJ mol^-1 nm^-2."),
) -> None:
    """Rebuild all-atom models from bead models (per-residue superposition of the all-atom reference),
    optionally relaxed by a short restrained minimisation.

    Example: cryodyna backmap runs/adk_cg/latest/pca-1.pdb -o pca-1_allatom.pdb --relax
    """
    from cryodyna.analysis.backmap import backmap_run

    check_output_file(out)
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

    Example: cryodyna sample-structures runs/adk --z runs/adk/latest/z.npy --npy all.npy
    Example: cryodyna sample-structures runs/adk_cg --z runs/adk_cg/latest/z.npy --allatom -o all.pdb
    """
    from cryodyna.analysis.structures import sample_structures, write_structures_npy
    from cryodyna.runs.read import load_latents, read_info

    if (out is None) == (npy is None):
        raise CryodynaError("give exactly one of -o/--out (PDB/mmCIF) or --npy")
    latents = load_latents(z)
    row_bytes = (12 if npy is not None else 81) * read_info(run).get("n_nodes", 0) * (10 if allatom else 1)
    check_output_file(npy or out, len(latents) * row_bytes, "--npy" if npy is not None else "-o/--out")
    if npy is not None and not allatom:  # any number of structures: written in chunks, never all in memory
        shape = write_structures_npy(run, latents, npy, checkpoint, device)
        console.print(f"wrote {npy} {shape}")
        return
    sampled = sample_structures(run, latents, checkpoint, device, allatom)
    r = sampled.geometry
    if r is not None:
        console.print(f"back-mapped {len(sampled.coords)} models ({sampled.models_per_s:.0f} models/s): bond lengths RMS "
                      f"change {r.bond_rms_dev:.3f} Å, max {r.bond_max_dev:.2f} Å; atoms in clashes (< 2.2 Å): "
                      f"{100 * r.clash_fraction:.2f} %", highlight=False)
    sampled.save(out, npy)
    what = f"{sampled.coords.shape}" if npy is not None else f"({len(sampled.coords)} {'all-atom ' if allatom else ''}models)"
    console.print(f"wrote {npy or out} {what}")


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

    from cryodyna.analysis.traverse import latent_path, parse_end_point
    from cryodyna.assembly.stage import load_run
    from cryodyna.models.sampling import decode_latents
    from cryodyna.runs.read import evaluation_latents, read_info

    check_output_file(out, frames * 81 * read_info(run).get("n_nodes", 0))
    z = evaluation_latents(run, eval_dir)
    path, visited = latent_path(z, parse_end_point(start, z, "--from"), parse_end_point(end, z, "--to"), frames, neighbours)
    loaded = load_run(run)
    loaded.write_models(out, decode_latents(loaded.model, path))
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
    from cryodyna.pipelines.reconstruct import reconstruct_run
    from cryodyna.runs.read import load_latents, read_info

    latents = None if z is None else load_latents(z)
    info = read_info(run) or read_info(RunFolder(run).halves[0].root)  # a --halfsets run: its halves hold run.json
    maps = 7 + (0 if latents is None else len(latents))  # corrected, half maps, plain ones, mask; one per latent
    check_output_file(out, maps * 4 * (box or info.get("box", 0)) ** 3)
    s = reconstruct_run(run, out, box, eval_dir, width, batch, device, latents, particles_per_map)
    for name in ("corrected", "plain"):
        r = s[name]
        console.print(f"{name:9s} half-set FSC=0.5: {r['fsc_0.5']}   FSC=0.143: {r['fsc_0.143']}   "
                      f"AUC {r['fsc_auc']:.3f}", highlight=False)
    for m in s.get("latent_maps", []):
        console.print(f"{m['map']}: {m['particles']} particles (node RMSD <= {m['max_node_rmsd_a']:.2f} Å), "
                      f"FSC=0.143: {m['fsc_0.143']}", highlight=False)
    console.print(f"wrote {out} and its half maps, plain maps, mask and FSC ({s['particles'][0]} + {s['particles'][1]} "
                  f"particles, {s['half_sets']}; {s['particles_per_s']:.0f} particles/s)", highlight=False)


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

    Example: cryodyna sample-volumes runs/density --z runs/density/latest/z_pca_1.txt -o pc1_maps
    """
    from cryodyna.analysis.volumes import sample_volumes
    from cryodyna.runs.read import load_latents, read_info

    latents = None if z is None else load_latents(z)
    check_output_folder(out, (1 if latents is None else len(latents)) * 4 * (box or read_info(run).get("box", 0)) ** 3)
    paths = sample_volumes(run, latents, out, box, apix, checkpoint, device)
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

    for path, option in ((plot, "--plot"), (csv, "--csv")):
        if path is not None:
            check_output_file(path, option=option)
    result = map_fsc(map1, map2, mask)
    console.print(f"FSC=0.5: {result.describe(0.5)}   FSC=0.143: {result.describe(0.143)}   "
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
    k: int = typer.Option(ANALYSIS.kmeans, "--k", help="Number of k-means clusters."),
    pcs: int = typer.Option(ANALYSIS.pcs, "--pcs", help="Principal components to traverse."),
    umap: bool = typer.Option(ANALYSIS.umap, help="Add a UMAP panel when umap-learn is installed."),
) -> None:
    """Analyse a saved evaluation: structures with RMSF B-factors, plots, RUN/index.html.

    k-means and PC-trajectory structures (B-factor = RMSF), plots (PCA, UMAP, PC histograms, losses).

    Example: cryodyna analyze runs/adk --k 8
    """
    from cryodyna.analysis.report import analyze

    check_output_folder(RunFolder(run).analysis, option="run folder (or copy the run to a writable place)")
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
    from cryodyna.analysis.cluster import run_particles, select_subsets, write_subsets
    from cryodyna.runs.read import evaluation_latents, read_info

    check_output_folder(out, 600 * read_info(run).get("n_particles", 0))  # STAR rows and index pickles
    if z_box_old is not None:
        warnings.warn("cluster --box is deprecated (every other --box is an image size in px): use --zbox", stacklevel=1)
        z_box = z_box if z_box is not None else z_box_old
    subsets, prefix = select_subsets(evaluation_latents(run, eval_dir), k, pc, pc_range, z_box, indices)
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
    from cryodyna.analysis.chimerax import chimerax_script, trajectory_folder

    check_output_file(out)
    folder = trajectory_folder(run)
    out.write_text(chimerax_script(folder, out, movie))
    console.print(f"wrote {out} (trajectories from {folder})")
