"""The accuracy ceiling of a simulated dataset: the best any method can do, knowing the landscape.

For a sample of particles, every candidate true conformation (the true conformations of a random
sample of the dataset's particles, the queried particles' own among them) is rendered in the
particle's own pose, CTF and shift and scored against its image; the best-scoring candidate is the
estimate.  Two image models score the candidates:

* ``image``: the training image model (one Gaussian per residue, CTF, low-pass, masked
  correlation), i.e. the best a model of residue Gaussians can do;
* ``density``: the simulator's own forward model (every point of the simulated density) and the
  Gaussian log-likelihood of the image (least squares), i.e. the Bayes-optimal estimate.

Reported: |Spearman| between the estimate's and the truth's path coordinate, and the median /
90th-percentile node RMSD (Å, map frame) of the estimate to the particle's true conformation.  With
the ``density`` model also the posterior-mean estimates: the candidates (drawn from the dataset, so
equally likely a priori) weighted by their Gaussian likelihood, the noise variance taken from the
best candidate's residual; the posterior mean of the path coordinate is the best ordering any method
can give (the MAP candidate's is noisier), the posterior-mean structure the least squared error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from scipy.stats import spearmanr

from cryodyna.config.schema import DataConfig, ModelConfig
from cryodyna.data.dataset import ParticleDataset
from cryodyna.errors import InputError
from cryodyna.imaging.filters import default_lowpass
from cryodyna.imaging.formation import ImageFormation
from cryodyna.imaging.image_model import ImageModel
from cryodyna.io.read import read_particles
from cryodyna.simulate.landscape import Landscape
from cryodyna.simulate.simulator import render_images


@dataclass
class Ceiling:
    """Best achievable accuracy on ``n_queries`` particles with ``n_candidates`` candidates."""

    model: str
    spearman: float
    median_rmsd: float
    p90_rmsd: float
    n_queries: int
    n_candidates: int
    posterior_spearman: float = float("nan")
    posterior_median_rmsd: float = float("nan")


def node_rmsd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMSD (Å) between node sets (..., N, 3), no superposition."""
    return np.sqrt(((a - b) ** 2).sum(-1).mean(-1))


def displacement_gain(pred: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per structure (K,): the projection of the predicted displacement from ``reference`` (N, 3) on
    the true one, as a fraction of the true one (1 = the full motion, below 1 = a shrunk motion);
    ``pred`` and ``truth`` (K, N, 3) Å."""
    true_d = (truth - reference).reshape(len(truth), -1)
    pred_d = (pred - reference).reshape(len(pred), -1)
    return (pred_d * true_d).sum(1) / np.maximum((true_d**2).sum(1), 1e-12)


def accuracy_ceiling(data_dir: Path, model: Literal["image", "density"] = "image", n_queries: int = 200,
                     n_candidates: int = 600, seed: int = 0, lowpass: float | None = None, chunk: int = 100) -> Ceiling:
    """Ceiling of the dataset simulated into ``data_dir`` (``particles.star`` + ``ground_truth.npz``).

    lowpass [Å] of the ``image`` model (default: the training default for the pixel size); its
    residue widths, low-pass fall-off and loss mask are ``train-atom``'s defaults.
    """
    data_dir = Path(data_dir)
    if not (data_dir / "ground_truth.npz").is_file():
        raise InputError(data_dir, "no ground_truth.npz: expected the output folder of `cryodyna simulate`")
    gt = np.load(data_dir / "ground_truth.npz")
    landscape = Landscape.from_arrays(gt)
    params, truth = gt["params"], gt["node_coords"]
    ds = ParticleDataset(read_particles(data_dir / "particles.star"))
    n = len(ds)
    rng = np.random.default_rng(seed)
    cands = rng.choice(n, size=min(n_candidates, n), replace=False)
    queries = cands[: min(n_queries, len(cands))]
    apix = float(ds.apix[0])
    amps = torch.as_tensor(gt["point_amplitudes"], dtype=torch.float32)
    if model == "image":
        node_amps = torch.as_tensor(np.bincount(landscape.point_node, weights=gt["point_amplitudes"]), dtype=torch.float32)
        data_cfg = DataConfig()
        scorer = ImageModel(ds.box, apix, node_amps, torch.full_like(node_amps, ModelConfig().gaussian_sigma),
                            lowpass or default_lowpass(apix), data_cfg.lowpass_soft_width, data_cfg.loss_mask_radius)
        cand_coords = torch.as_tensor(truth[cands], dtype=torch.float32)
    else:
        sig = torch.as_tensor(gt["point_sigmas"], dtype=torch.float32)
        bfactor = float(gt["ctf_bfactor"])
        cand_coords = torch.as_tensor(landscape.points(params[cands]), dtype=torch.float32)
        formation = ImageFormation(ds.box, apix)
    best = np.zeros(len(queries), dtype=np.int64)
    weights = np.zeros((len(queries), len(cands)))  # posterior over the candidates (density model)
    with torch.no_grad():
        for qi, q in enumerate(queries):
            item = ds[int(q)]
            target = scorer.target(item["images"]) if model == "image" else item["images"]
            scores = []
            for start in range(0, len(cands), chunk):
                x = cand_coords[start : start + chunk]
                b = len(x)
                poses, ctf = item["poses"][[0] * b], item["ctf"][[0] * b]
                if model == "image":
                    pred = scorer.predict(x, poses, ctf)
                    scores.append(1 - scorer.loss(pred, target.expand(b, -1, -1), reduce=False))
                else:
                    bf = torch.full((b,), bfactor, dtype=torch.float64) if bfactor > 0 else None
                    pred = render_images(formation, x, amps, sig, poses, dataclasses.replace(ctf, bfactor=bf))
                    scores.append(-((pred - target) ** 2).sum((-2, -1)))
            score = torch.cat(scores).double()
            best[qi] = cands[int(score.argmax())]
            if model == "density":
                noise_var = max(float(-score.max()) / target.numel(), 1e-12)
                weights[qi] = torch.softmax(score / (2 * noise_var), 0).numpy()
    u = gt["path_coordinate"]
    rmsd = node_rmsd(truth[best], truth[queries])
    ceiling = Ceiling(model=model, spearman=_abs_spearman(u[best], u[queries]), median_rmsd=float(np.median(rmsd)),
                      p90_rmsd=float(np.percentile(rmsd, 90)), n_queries=len(queries), n_candidates=len(cands))
    if model == "density":
        mean_structure = np.einsum("qc,cnk->qnk", weights, truth[cands])
        ceiling.posterior_spearman = _abs_spearman(weights @ u[cands], u[queries])
        ceiling.posterior_median_rmsd = float(np.median(node_rmsd(mean_structure, truth[queries])))
    return ceiling


def _abs_spearman(estimate: np.ndarray, truth: np.ndarray) -> float:
    """|Spearman| of an estimate of the path coordinate against the truth (NaN without spread)."""
    return float(abs(spearmanr(estimate, truth).statistic)) if np.ptp(truth) > 0 else float("nan")
