"""Reading run folders: run facts, configuration, evaluations, latents and weights.  Nothing here
writes, creates or re-computes anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from cryodyna.config.load import load_run_config
from cryodyna.errors import CryodynaError
from cryodyna.runs.checkpoint import load_model_state, read_checkpoint
from cryodyna.runs.layout import EVALUATION_GLOB, RunFolder, evaluation_file


def read_info(run_dir: Path) -> dict:
    """``run.json`` of a run folder ({} when absent)."""
    path = RunFolder(run_dir).info
    return json.loads(path.read_text()) if path.is_file() else {}


def read_run(run_dir: Path, tasks: tuple[str, ...]) -> tuple[dict, BaseModel]:
    """``run.json`` and the resolved config of a run folder written by one of ``tasks`` (e.g.
    ``("atom", "cg")``); a clear error for any other folder."""
    run = RunFolder(run_dir)
    if not run.root.is_dir():
        raise CryodynaError(f"{run.root}: no such run folder")
    info = read_info(run.root)
    if info.get("task") not in tasks:
        names = " or ".join(f"train-{t}" for t in tasks)
        raise CryodynaError(f"{run.root}: not a {names} run folder (run.json missing or from another command)")
    return info, load_run_config(f"train-{info['task']}", run.config)


def latest_evaluation(run_dir: Path) -> Path:
    """The last evaluation folder, or a clear error when the run has none."""
    run = RunFolder(run_dir)
    if not run.root.is_dir():
        raise CryodynaError(f"{run.root}: no such run folder (the -o folder of train-atom, train-cg or train-density)")
    folders = run.evaluations()
    if not folders:
        raise CryodynaError(f"{run.root}: no evaluation folder ({EVALUATION_GLOB}) yet; train first or use --eval-only")
    return folders[-1]


def newest_evaluation(run_dir: Path) -> Path | None:
    """The last evaluation folder, or None."""
    folders = RunFolder(run_dir).evaluations()
    return folders[-1] if folders else None


def load_latents(path: Path) -> np.ndarray:
    """Latent rows from ``.npy`` (2-D) or a whitespace-separated text file."""
    path = Path(path)
    if not path.is_file():
        raise CryodynaError(f"{path}: latent file not found")
    z = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2)
    z = np.asarray(z, dtype=np.float32)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2:
        raise CryodynaError(f"{path}: expected a 2-D array of latents (K, z_dim), found shape {z.shape}")
    return z


def evaluation_latents(run_dir: Path, eval_dir: Path | None = None) -> np.ndarray:
    """Per-particle latents ``z.npy`` of ``eval_dir`` (default: the run's last evaluation)."""
    return load_latents(evaluation_file(eval_dir or latest_evaluation(run_dir), "latents"))


def load_weights(model: torch.nn.Module, run_dir: Path, checkpoint: Path | None = None) -> None:
    """Load the model weights of ``checkpoint`` (default ``checkpoints/last.pt`` of ``run_dir``)."""
    ckpt = Path(checkpoint) if checkpoint else RunFolder(run_dir).last_checkpoint
    load_model_state(model, read_checkpoint(ckpt)["model"], ckpt)
