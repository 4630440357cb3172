"""``cryodyna quicktest``: the whole residue-level pipeline on a tiny simulated dataset (about a
minute on a CPU), checking every output a user relies on."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from cryodyna.analysis.cluster import kmeans_subsets, run_particles, write_subsets
from cryodyna.analysis.report import analyze
from cryodyna.analysis.sampling import decode_latents
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_models
from cryodyna.simulate.adk import write_adk_models
from cryodyna.simulate.simulator import SimulationSpec, simulate
from cryodyna.train.run import load_run, resolved_config, train_atom

SETTINGS = ["model.encoder_hidden=[128, 64]", "model.z_dim=4", "optim.batch_size=32", "analysis.kmeans=3",
            "data.lowpass=10"]


def quicktest(work_dir: Path | None = None, report=print) -> list[str]:
    """Run the pipeline in ``work_dir`` (a temporary folder by default); returns what was checked.
    Raises AssertionError naming the first failed check."""
    checks: list[str] = []

    def check(condition: bool, what: str) -> None:
        assert condition, f"quicktest failed: {what}"
        checks.append(what)
        report(f"  ok  {what}")

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = Path(work_dir or tmp)
        data = root / "data"
        _, closed, opened = write_adk_models(data)
        simulate([closed, opened], SimulationSpec(n_particles=300, box=32, apix=4.0, snr=1.0, seed=0), data)
        table = read_particles(data / "particles.star")
        check(len(table) == 300 and table.has_poses, "simulator writes a readable RELION 3.1 dataset (300 particles)")
        folder = train_atom(data / "particles.star", data / "reference.pdb", root / "run", resolved_config(None, SETTINGS, 3))
        z = np.load(folder / "z.npy")
        check(z.shape == (300, 4) and np.isfinite(z).all(), "train-atom trains and writes z.npy for every particle")
        check(len(read_models(folder / "pred.pdb")) == 3 and len(read_models(folder / "pca-1.pdb")) == 10,
              "k-means and PC trajectory structures are written")
        model, _ = load_run(root / "run")
        coords = decode_latents(model, z[:5])
        check(coords.shape == (5, 214, 3) and np.isfinite(coords).all(), "sample-structures decodes latents")
        out = analyze(root / "run", k=3)
        check((out / "pca-1.pdb").is_file() and (root / "run" / "index.html").is_file(), "analyze writes RMSF-coloured trajectories and index.html")
        stars = write_subsets(run_particles(root / "run"), kmeans_subsets(z, 3), root / "clusters")
        check(sum(len(read_particles(s)) for s in stars) == 300, "cluster exports STAR subsets covering every particle")
    return checks
