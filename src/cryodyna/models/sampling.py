"""Decode latents into structures (deformation model) or volumes (volume network)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from cryodyna.errors import CryodynaError
from cryodyna.imaging.slicing import volume_from_fourier
from cryodyna.models.deformation import DeformationModel
from cryodyna.models.volume import VolumeDecoder


@torch.no_grad()
def decoded_chunks(model: DeformationModel, z: np.ndarray, batch: int = 256) -> Iterator[np.ndarray]:
    """Node coordinates (b, N, 3) Å (float32) of successive chunks of ``batch`` latents of ``z``
    (K, z_dim), so that K x N may exceed the memory; the model is switched to eval mode."""
    model.eval()
    z_dim = model.encoder.z_dim
    if z.shape[1] != z_dim:
        raise CryodynaError(f"latents have {z.shape[1]} columns but the model's z_dim is {z_dim}")
    device = model.reference.device
    for i in range(0, len(z), batch):
        yield model.decode(torch.as_tensor(np.asarray(z[i : i + batch]), dtype=torch.float32, device=device)).cpu().numpy()


def decode_latents(model: DeformationModel, z: np.ndarray, batch: int = 256) -> np.ndarray:
    """Node coordinates (K, N, 3) Å (float32) for latents (K, z_dim), in memory."""
    chunks = list(decoded_chunks(model, z, batch))
    return np.concatenate(chunks) if chunks else np.zeros((0, len(model.reference), 3), np.float32)


@torch.no_grad()
def render_volume(decoder: VolumeDecoder, z: np.ndarray | None, apix_train: float, d_out: int | None = None,
                  apix_out: float | None = None, radius: float = 1.0) -> np.ndarray:
    """Real-space volume (D, D, D) ``[z, y, x]`` of a volume network at latent ``z`` (z_dim,) (None
    for a homogeneous network), on the training grid or on ``d_out`` px of ``apix_out`` Å."""
    decoder.eval()
    if (z is None) != (decoder.z_dim == 0) or (z is not None and len(z) != decoder.z_dim):
        raise CryodynaError(f"the volume network expects latents of size {decoder.z_dim}, got "
                            f"{'none' if z is None else len(z)}")
    device = decoder.z_scale.device
    zt = None if z is None else torch.as_tensor(np.asarray(z, np.float32), device=device)[None]
    vol = volume_from_fourier(lambda k: decoder(k, zt), decoder.d, apix_train, d_out or decoder.d,
                              apix_out or apix_train, radius, device=device)
    return vol.cpu().numpy()
