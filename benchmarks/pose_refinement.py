"""Local pose refinement (``optim.refine_poses``) on the curved AdK set with imperfect poses.

The set is simulated once with the poses of its STAR file perturbed (``--pose-error-deg`` RMS
rotation, ``--shift-error-a`` RMS shift); a second STAR file beside it holds the true poses of the
same images.  Four runs of ``train-atom`` (equal epochs): true poses, true poses + refinement,
perturbed poses, perturbed poses + refinement.  Printed per run: |Spearman(PC1, path)|, median /
p90 CA RMSD to each particle's true structure, median angular and shift error of the poses used at
the end (given or refined) against the truth, and images/s (the cost of refinement).

Targets (issue 20): perturbed + refinement within 10 % of true poses on RMSD and Spearman, the
median angular error at least halved, and no loss of accuracy with exact poses.  The pose ceiling
printed first (:func:`pose_ceiling`) says how far any refinement of these images can go, the image-model
misfit (:func:`image_model_misfit`) how far exact poses are moved even with the true structures.

Example:
    python benchmarks/pose_refinement.py --particles 6000 --epochs 10 --snr 0.05
"""

from __future__ import annotations

import argparse
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy import structure_metrics
from accuracy_sets import build
from adk_data import images_per_s
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from cryodyna.models.sampling import decode_latents
from cryodyna.imaging.rotations import rotation_angle_deg
from cryodyna.io.read import read_particles
from cryodyna.io.star import write_star
from cryodyna.io.structure import read_structure
from cryodyna.structure.nodes import residue_nodes
from cryodyna.assembly.stage import load_run
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom


def pose_errors(star: Path, gt) -> tuple[float, float]:
    """Median rotation error (degrees) and shift error (Å) of a STAR file's poses."""
    t = read_particles(star)
    return (float(np.median(rotation_angle_deg(t.rotations, gt["rotations"]))),
            float(np.median(np.linalg.norm(t.shifts - gt["shifts"], axis=1))))


def _image_model(data: Path, star: Path, rows: np.ndarray):
    """Particles ``rows`` of ``star`` prepared for training, and the training image model of the
    set's reference nodes (2 Å Gaussians, default low-pass)."""
    import torch

    from cryodyna.data.particles import prepare_particles
    from cryodyna.imaging.filters import default_lowpass
    from cryodyna.imaging.image_model import ImageModel

    prepared = prepare_particles(read_particles(star).subset(rows), None, 1.0, False)
    nodes = residue_nodes(read_structure(data / "reference.pdb"))
    model = ImageModel(prepared.d, prepared.apix, torch.as_tensor(nodes.electrons).float(), torch.full((len(nodes.coords),), 2.0),
                       default_lowpass(prepared.apix), 2.0, 0.9375)
    return prepared, model


def pose_ceiling(data: Path, star: Path, n_queries: int = 60, n_candidates: int = 200, max_deg: float = 8.0,
                 seed: int = 0) -> float:
    """Median angular error (degrees) of the best-scoring rotation when everything else is known:
    each particle's true structure and shift, candidate rotations within ``max_deg`` of the truth
    (the truth among them), scored with the training image model.  No method can refine the poses
    of these images beyond this."""
    import torch

    from cryodyna.imaging.batches import PoseBatch
    from cryodyna.imaging.rotations import axis_angle_to_matrix

    gt = np.load(data / "ground_truth.npz")
    idx = np.linspace(0, len(read_particles(star)) - 1, n_queries).astype(int)
    prepared, model = _image_model(data, star, idx)
    rng = np.random.default_rng(seed)
    axes = rng.standard_normal((n_candidates, 3))
    rotvec = axes / np.linalg.norm(axes, axis=1, keepdims=True) * np.deg2rad(rng.uniform(0, max_deg, n_candidates))[:, None]
    rotvec[0] = 0.0
    batch = prepared.batch(torch.arange(len(idx)), "cpu")
    errors = []
    with torch.no_grad():
        target = model.target(batch["images"])
        for i, p in enumerate(idx):
            rot = torch.as_tensor(axis_angle_to_matrix(rotvec) @ gt["rotations"][p].astype(np.float64)).float()
            xyz = torch.as_tensor(gt["node_coords"][p]).float().expand(n_candidates, -1, -1)
            rows = [i] * n_candidates
            pred = model.predict(xyz, PoseBatch(rot, batch["poses"].origins[rows]), batch["ctf"][rows])
            best = int(model.loss(pred, target[i : i + 1].expand(n_candidates, -1, -1), reduce=False).argmin())
            errors.append(np.rad2deg(np.linalg.norm(rotvec[best])))
    return float(np.median(errors))


def image_model_misfit(data: Path, star: Path, n: int = 1500) -> tuple[float, float]:
    """The error spread (degrees per rotation axis, Å per shift axis) that the pose refinement
    measures when the structures are right: poses of ``n`` particles (given exactly by ``star``)
    fitted, twice over, with each particle's TRUE structure in the training image model.  What is left
    is the pose-like misfit between that model (residue Gaussians) and the images, which the split
    halves share and no refinement can tell from a pose error."""
    import torch

    from cryodyna.config.schema import OptimConfig
    from cryodyna.train.poses import PoseCorrections, image_model_spectra

    gt = np.load(data / "ground_truth.npz")
    n = min(n, len(read_particles(star)))
    prepared, model = _image_model(data, star, np.arange(n))
    poses = PoseCorrections(n, OptimConfig(refine_poses=True), prepared.apix, torch.device("cpu"))
    with torch.no_grad():
        for _ in range(2):
            for start in range(0, n, 100):
                idx = torch.arange(start, min(n, start + 100))
                batch = prepared.batch(idx, "cpu")
                truth = torch.as_tensor(gt["node_coords"][idx.numpy()]).float()
                poses.update(batch, image_model_spectra(model, truth, batch["images"], batch["ctf"]))
    tau = poses.prior_widths()[0].numpy()
    return float(np.rad2deg(tau[0])), float(tau[3] * prepared.apix)


def step_cost(rounds: int = 6, steps: int = 5, batch: int = 16) -> tuple[float, float]:
    """Training-step time (ms) of train-atom on AdK at 64 px without and with pose refinement,
    measured in alternating rounds in one process so that machine load affects both alike."""
    from throughput import measure

    from cryodyna.simulate.adk import adk_states

    closed = adk_states()[0]
    settings = {False: [], True: ["optim.refine_poses=true", "optim.pose_warmup_epochs=0"]}
    times = {False: [], True: []}
    for _ in range(rounds):
        for refine in (False, True):
            times[refine].append(measure("atom", closed, None, 64, batch, "cpu", steps, settings[refine])["step_ms"])
    return float(np.median(times[False])), float(np.median(times[True]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--particles", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--pose-error-deg", type=float, default=3.0)
    p.add_argument("--shift-error-a", type=float, default=0.8)
    p.add_argument("--set", action="append", default=[], help="config override for every run")
    p.add_argument("--runs", nargs="+", default=["true", "true+refine", "given", "given+refine"])
    p.add_argument("--out", default="bench_runs/poses")
    p.add_argument("--step-cost", action="store_true", help="only time training steps without / with refinement")
    args = p.parse_args()
    if args.step_cost:
        plain, refined = step_cost()
        print(f"train-atom step (AdK, 64 px, batch 16): {plain:.1f} ms without, {refined:.1f} ms with pose refinement "
              f"({refined / plain:.2f}x)")
        return
    out = Path(args.out) / f"adk-curved_snr{args.snr}_n{args.particles}_err{args.pose_error_deg}"
    data = build("adk-curved", out / "data", args.particles, args.snr, 0, args.pose_error_deg, args.shift_error_a)
    gt = np.load(data / "ground_truth.npz")
    given = read_particles(data / "particles.star")
    if not (data / "particles_true.star").is_file():
        write_star(data / "particles_true.star", replace(given, rotations=gt["rotations"].astype(np.float64),
                                                         shifts=gt["shifts"].astype(np.float64)))
    reference = residue_nodes(read_structure(data / "reference.pdb")).coords
    print(f"pose ceiling: the best-scoring rotation, knowing each particle's structure and shift, is "
          f"{pose_ceiling(data, data / 'particles_true.star'):.2f} degrees from the truth (median of 60 particles); "
          f"the given poses are {pose_errors(data / 'particles.star', gt)[0]:.2f} degrees off", flush=True)
    misfit_deg, misfit_a = image_model_misfit(data, data / "particles_true.star")
    print(f"image-model misfit: fitting the exact poses with the true structures, the refinement measures an error spread of "
          f"{misfit_deg:.2f} degrees per axis and {misfit_a:.2f} Å per axis (what it cannot tell from a pose error)", flush=True)
    rows = []
    for name in args.runs:
        star = data / ("particles_true.star" if name.startswith("true") else "particles.star")
        refine = name.endswith("+refine")
        cfg = resolved_config(None, args.set + [f"optim.refine_poses={str(refine).lower()}"], args.epochs)
        run_dir = out / f"run-{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folder = train_atom(star, data / "reference.pdb", run_dir, cfg)
        z = np.load(folder / "z.npy")
        pc1 = PCA(n_components=1).fit_transform(z)[:, 0]
        model = load_run(run_dir).model
        final = folder / "particles_refined.star" if refine else star
        angle, shift = pose_errors(final, gt)
        rows.append({"run": name, "spearman_pc1": abs(spearmanr(pc1, gt["path_coordinate"]).statistic),
                     **structure_metrics(decode_latents(model, z), gt["node_coords"], reference),
                     "pose_error_deg": angle, "shift_error_a": shift, "images_per_s": images_per_s(run_dir)})
        print(pd.DataFrame([rows[-1]]).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print("\nsummary")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
