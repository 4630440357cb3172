"""The volume network of ``train-density``: built from a config, and reloaded from a run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cryodyna import distributed
from cryodyna.config.schema import TrainDensityConfig
from cryodyna.models.volume import VolumeDecoder
from cryodyna.runs.read import load_weights, read_run


def build_volume_model(cfg: TrainDensityConfig, d: int, z_dim: int, z: np.ndarray | None = None) -> VolumeDecoder:
    """A volume network for images of side ``d`` and latents of size ``z_dim``; training latents
    ``z`` (N, z_dim) set the input normalisation (centred, divided by their overall RMS), which a
    checkpoint otherwise restores."""
    m = cfg.model
    mean, scale = None, 1.0
    if z is not None:
        mean = torch.as_tensor(z.mean(0))
        scale = float(np.sqrt(((z - z.mean(0)) ** 2).sum(1).mean())) or 1.0
    return VolumeDecoder(d, z_dim, m.hidden, m.layers, m.pe_features, m.pe_sigma, mean, scale, seed=cfg.optim.seed)


def load_density_run(run_dir: Path, checkpoint: Path | None = None, device: str = "cpu") -> tuple[VolumeDecoder, dict]:
    """The trained volume network of a ``train-density`` run and its ``run.json`` (box, apix, z_dim)."""
    info, cfg = read_run(run_dir, ("density",))
    model = build_volume_model(cfg, int(info["box"]), int(info["z_dim"]))
    load_weights(model, run_dir, checkpoint)
    info["fourier_radius"] = cfg.data.fourier_radius
    return model.to(distributed.resolve_device(device)).eval(), info
