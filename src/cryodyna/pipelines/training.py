"""The training commands as users run them: the trainers of :mod:`cryodyna.train` with the
evaluation outputs of :mod:`cryodyna.analysis.evaluation` (structures or maps, figures, report)."""

from __future__ import annotations

from pathlib import Path

from cryodyna.analysis.evaluation import StructureOutputs, VolumeOutputs
from cryodyna.config.schema import TrainAtomConfig, TrainCGConfig, TrainDensityConfig
from cryodyna.train import density, run


def train_atom(particles: Path, model_path: Path, run_dir: Path, cfg: TrainAtomConfig, **options) -> Path | None:
    """Residue-level training (:func:`cryodyna.train.run.train_atom`) with every evaluation output."""
    return run.train_atom(particles, model_path, run_dir, cfg, hooks=[StructureOutputs(cfg.analysis)], **options)


def train_cg(particles: Path, model_path: Path, run_dir: Path, cfg: TrainCGConfig, **options) -> Path | None:
    """Bead-level training (:func:`cryodyna.train.run.train_cg`) with every evaluation output."""
    return run.train_cg(particles, model_path, run_dir, cfg, hooks=[StructureOutputs(cfg.analysis)], **options)


def train_density(particles: Path, z_path: Path | None, run_dir: Path, cfg: TrainDensityConfig, **options) -> Path | None:
    """The density generator (:func:`cryodyna.train.density.train_density`) with its maps and report."""
    return density.train_density(particles, z_path, run_dir, cfg, hooks=[VolumeOutputs(cfg.analysis)], **options)
