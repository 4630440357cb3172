"""Per-particle latent refinement: after amortised encoding, each particle's latent is optimised on its
own image with the decoder frozen (closing the encoder's amortisation gap).

The loss of a chunk is the *sum* of its per-image losses, so the gradient on a latent depends on its
own image only, and Adam is element-wise: a particle's refined latent does not depend on which other
particles share its chunk.  The step size is relative to the spread of each latent dimension over
all particles, and every particle keeps the best latent seen, so refinement never raises a
particle's image loss.
"""

from __future__ import annotations

import torch

from cryodyna.models.deformation import DeformationModel
from cryodyna.imaging.image_model import ImageModel


def refine_latents(model: DeformationModel, image_model: ImageModel, z: torch.Tensor, batch_fn, steps: int,
                   lr: float, scale: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refine latents ``z`` (P, z_dim) of the particles whose rows ``batch_fn`` serves.

    batch_fn(rows) -> batch dict with ``images``, ``poses``, ``ctf`` of rows
    ``rows`` (indices into ``z``); steps: Adam iterations; lr: step size in units of ``scale``
    (z_dim,), the spread of each latent dimension over all particles of the dataset.  Returns
    (refined z (P, z_dim), image loss before (P,), after (P,)).
    """
    model.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    out, before, after = [], [], []
    try:
        for start in range(0, len(z), chunk):
            idx = torch.arange(start, min(start + chunk, len(z)))
            batch = batch_fn(idx)
            target = image_model.target(batch["images"])
            u = torch.zeros_like(z[idx], requires_grad=True)  # z = z0 + scale * u
            opt = torch.optim.Adam([u], lr=lr)
            best_u, best_loss = u.detach().clone(), None
            for it in range(steps + 1):
                coords = model.decode(z[idx] + scale * u)
                pred = image_model.predict(coords, batch["poses"], batch["ctf"])
                loss = image_model.loss(pred, target, reduce=False)
                with torch.no_grad():
                    if best_loss is None:
                        best_loss, first = loss.clone(), loss.clone()
                    better = loss < best_loss
                    best_loss = torch.where(better, loss, best_loss)
                    best_u = torch.where(better[:, None], u, best_u)
                if it == steps:
                    break
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
            out.append((z[idx] + scale * best_u).detach())
            before.append(first)
            after.append(best_loss)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return torch.cat(out), torch.cat(before), torch.cat(after)
