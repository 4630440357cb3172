"""Latents: independent of the batch size, and their posterior means per particle."""

import warnings

import numpy as np
import torch
from conftest import TINY_TRAIN_SETTINGS

from cryodyna.config import load_config
from cryodyna.data.dataset import ParticleDataset
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_structure
from cryodyna.structure.nodes import residue_nodes
from cryodyna.imaging.image_model import ImageModel
from cryodyna.train.latent_posterior import draw_candidates, posterior_latents
from cryodyna.assembly.stage import load_run
from cryodyna.pipelines.training import train_atom

class LinearDecoder(torch.nn.Module):
    """z (B, 4) -> displacements (B, N, 3): four fixed random motions of ~2 Å RMS per unit of z."""

    def __init__(self, n: int):
        super().__init__()
        self.lin = torch.nn.Linear(4, n * 3, bias=False)
        with torch.no_grad():
            self.lin.weight.normal_(0, 2.0)

    def forward(self, z):
        return self.lin(z).view(len(z), -1, 3)


ATTENTION = ["model.encoder=cross-attention", "model.attention_layers=1"]


def _eval_z(tiny_adk, out, extra):
    cfg = load_config("train-atom", None, TINY_TRAIN_SETTINGS + ATTENTION + extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", out, cfg, eval_only=True)
    return np.load(folder / "z.npy"), folder


def test_latents_do_not_depend_on_batch_size(tiny_adk, tmp_path):
    a, _ = _eval_z(tiny_adk, tmp_path / "a", ["optim.batch_size=7"])
    b, _ = _eval_z(tiny_adk, tmp_path / "b", ["optim.batch_size=64"])
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_posterior_mean_recovers_latents_and_is_independent_of_the_chunking(tiny_adk, tmp_path):
    """Noisy images rendered from known latents of a deforming decoder, encoder latents perturbed:
    the posterior mean over candidates drawn from the dataset's latents lands near the truth,
    whatever the chunk size."""
    _, folder = _eval_z(tiny_adk, tmp_path / "r", [])
    model = load_run(tmp_path / "r", folder / "ckpt.pt").model
    torch.manual_seed(0)
    n = model.reference.shape[0]
    model.decoder = LinearDecoder(n)  # a decoder whose output depends strongly (and smoothly) on z
    ds = ParticleDataset(read_particles(tiny_adk / "particles.star"))
    nodes = residue_nodes(read_structure(tiny_adk / "reference.pdb"))
    im = ImageModel(ds.box, float(ds.apix[0]), torch.as_tensor(nodes.electrons), torch.full((len(nodes),), 2.0), 10.0, 2.0,
                    0.9375)
    rows30 = ds.batch(np.arange(30))
    z_true = torch.randn(30, 4)
    with torch.no_grad():
        clean = im.predict(model.decode(z_true), rows30["poses"], rows30["ctf"])
    images = clean + clean.std() * torch.randn_like(clean)
    start = z_true + 0.5 * torch.randn(30, 4)

    def batch(rows):
        return {"images": images[rows], "poses": rows30["poses"][rows], "ctf": rows30["ctf"][rows]}

    small, effective = posterior_latents(model, im, start, z_true, batch, chunk=7)
    large, _ = posterior_latents(model, im, start, z_true, batch, chunk=30)
    assert (small - z_true).norm(dim=1).median() < 0.3 * (start - z_true).norm(dim=1).median()
    assert ((effective >= 1) & (effective <= 31)).all()
    torch.testing.assert_close(small, large, atol=1e-5, rtol=1e-5)
    picked = draw_candidates(z_true, 8, seed=3)
    assert len(picked) == 8 and torch.equal(picked, draw_candidates(z_true, 8, seed=3))


def test_training_on_a_subset_still_gives_every_particle_a_latent(tiny_adk, tmp_path):
    """optim.train_particles: a seeded subset is trained on, all particles get (posterior-mean) latents."""
    import json

    cfg = load_config("train-atom", None, TINY_TRAIN_SETTINGS + ["optim.train_particles=100", "optim.epochs=1"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "s", cfg)
    assert json.loads((tmp_path / "s" / "run.json").read_text())["n_trained_on"] == 100
    z, z_encoder = np.load(folder / "z.npy"), np.load(folder / "z_encoder.npy")
    assert z.shape == z_encoder.shape == (200, 4) and np.isfinite(z).all() and not np.allclose(z, z_encoder)
