"""Decode latents into structures with a trained deformation model."""

from __future__ import annotations

import numpy as np
import torch

from cryodyna.errors import CryodynaError
from cryodyna.models.deformation import DeformationModel


@torch.no_grad()
def decode_latents(model: DeformationModel, z: np.ndarray, batch: int = 256) -> np.ndarray:
    """Node coordinates (K, N, 3) Å for latents (K, z_dim) (model switched to eval mode)."""
    model.eval()
    z_dim = model.encoder.out.out_features
    if z.shape[1] != z_dim:
        raise CryodynaError(f"latents have {z.shape[1]} columns but the model's z_dim is {z_dim}")
    device = model.reference.device
    zt = torch.as_tensor(z, dtype=torch.float32, device=device)
    return torch.cat([model.decode(zt[i : i + batch]).cpu() for i in range(0, len(zt), batch)]).numpy()
