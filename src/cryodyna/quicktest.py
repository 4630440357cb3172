"""``cryodyna quicktest``: the whole residue-level pipeline on a tiny simulated dataset (about a
minute on a CPU), checking that it learns (the latent orders the particles, the structures beat
the reference model) and every output a user relies on."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from cryodyna.analysis.cluster import kmeans_subsets, run_particles, write_subsets
from cryodyna.analysis.report import analyze
from cryodyna.models.sampling import decode_latents
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_models, read_structure
from cryodyna.simulate.ceiling import node_rmsd
from cryodyna.structure.nodes import residue_nodes
from cryodyna.simulate.adk import write_adk_models
from cryodyna.simulate.simulator import SimulationSpec, simulate
from cryodyna.assembly.stage import load_run
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom
from cryodyna.runs.layout import evaluation_file
from cryodyna.runs.read import load_latents

LEARNING_SETTINGS = ["model.encoder_hidden=[128, 64]", "model.z_dim=4", "optim.batch_size=8", "optim.warmup_steps=20",
                     "optim.epochs=12", "optim.eval_every=12", "analysis.kmeans=3", "analysis.umap=false", "data.lowpass=10"]
N_PARTICLES = 300


def learning_dataset(out: Path) -> Path:
    """300 AdK particles along the closed -> open path (32 px, 4 Å/px, residue density, CTF, SNR 1)
    with ``reference.pdb`` (closed) and ``ground_truth.npz``; returns ``out``."""
    _, closed, opened = write_adk_models(out)
    simulate([closed, opened], SimulationSpec(n_particles=N_PARTICLES, box=32, apix=4.0, snr=1.0, density="residue", seed=0), out)
    return out


def learning_scores(data: Path, run_dir: Path, z: np.ndarray) -> tuple[float, float, float]:
    """|Spearman(PC1 of z, true path coordinate)|, median CA RMSD (Å) of the decoded structures to
    the truth, and the same for the reference model."""
    gt = np.load(data / "ground_truth.npz")
    pc1 = PCA(n_components=1).fit_transform(z)[:, 0]
    model = load_run(run_dir).model
    learned = float(np.median(node_rmsd(decode_latents(model, z), gt["node_coords"])))
    reference = float(np.median(node_rmsd(residue_nodes(read_structure(data / "reference.pdb")).coords[None], gt["node_coords"])))
    return abs(float(spearmanr(pc1, gt["path_coordinate"]).statistic)), learned, reference


def quicktest(work_dir: Path | None = None, report=print) -> list[str]:
    """Run the pipeline in ``work_dir`` (a temporary folder by default; the run is ``work_dir/run``);
    returns what was checked.  Raises AssertionError naming the first failed check."""
    checks: list[str] = []

    def check(condition: bool, what: str) -> None:
        assert condition, f"quicktest failed: {what}"
        checks.append(what)
        report(f"  ok  {what}")

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = Path(work_dir or tmp)
        data = learning_dataset(root / "data")
        table = read_particles(data / "particles.star")
        check(len(table) == N_PARTICLES and table.has_poses, f"simulator writes a readable RELION 3.1 dataset ({N_PARTICLES} particles)")
        folder = train_atom(data / "particles.star", data / "reference.pdb", root / "run", resolved_config(None, LEARNING_SETTINGS, None))
        z = load_latents(evaluation_file(folder, "latents"))
        check(z.shape == (N_PARTICLES, 4) and np.isfinite(z).all(), "train-atom trains and writes z.npy for every particle")
        rho, learned, reference = learning_scores(data, root / "run", z)
        check(rho >= 0.9, f"the latent orders the particles along the path (|Spearman| {rho:.3f} >= 0.9)")
        check(learned <= 0.6 * reference, f"decoded structures beat the reference model (median CA RMSD {learned:.2f} Å "
                                          f"<= 0.6 x {reference:.2f} Å)")
        check(len(read_models(folder / "pred.pdb")) == 3 and len(read_models(folder / "pca-1.pdb")) == 10,
              "k-means and PC trajectory structures are written")
        out = analyze(root / "run", k=3)
        check((out / "pca-1.pdb").is_file() and (root / "run" / "index.html").is_file(), "analyze writes RMSF-coloured trajectories and index.html")
        stars = write_subsets(run_particles(root / "run"), kmeans_subsets(z, 3), root / "clusters")
        check(sum(len(read_particles(s)) for s in stars) == N_PARTICLES, "cluster exports STAR subsets covering every particle")
    return checks
