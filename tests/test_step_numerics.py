"""The training step's fast paths against plain formulations (decoder link messages, half-spectrum
image model, node-major priors), the static-shape step under ``torch.compile(fullgraph=True)``, and
the Verlet neighbour list against brute force."""

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import plain_particle_images

from cryodyna.config import load_config
from cryodyna.assembly.model import build_model, residue_graph
from cryodyna.assembly.priors import build_priors
from cryodyna.data.particles import PreparedParticles
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.imaging.fft import fft2_center, fourier_crop, ifft2_center
from cryodyna.imaging.filters import lowpass_filter
from cryodyna.imaging.image_model import ImageModel
from cryodyna.imaging.projection import project_gaussians
from cryodyna.physics.restraints import ElasticRelease, distance_deviation, elastic_energy, pair_distances
from cryodyna.physics.verlet import VerletList
from cryodyna.train.trainer import DeformationTrainer


@pytest.fixture(scope="module")
def adk():
    from cryodyna.simulate.adk import adk_states

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adk_states()[0]


def assert_close_to_scale(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    """|a - b| <= tol * max|b| everywhere (float32 sums in another order differ at that level)."""
    assert float((a - b).detach().abs().max()) <= tol * float(b.detach().abs().max()) + 1e-12


def plain_round(r, h, d):
    """One decoder round on (B, N, C) features with the padded (B, N, L, C) link messages."""
    b = h.shape[0]
    offset = d.offset.expand(b, -1, -1)
    u = r.node(torch.cat([h, offset], -1))
    m = torch.zeros(b, len(d.counts), u.shape[-1]).index_add(1, d.block, u) / d.counts[:, None]
    m = r.gat(m, d.block_nbr, d.block_dist)
    own = m[:, d.block]
    gate = torch.sigmoid(r.gate(torch.cat([u, own, -offset], -1)))
    linked = m[:, d.link_idx]  # (B, N, L, C)
    pre = r.msg_block(m)[:, d.link_idx] + r.msg_node(u).unsqueeze(2) + r.msg_vec(d.link_vec)
    msg = torch.sigmoid(r.msg_out(pre))
    mask = d.link_mask.float()[None, :, :, None]
    agg = (msg * linked * mask).sum(2) / d.link_mask.sum(1).clamp(min=1)[None, :, None]
    return r.out(u + gate * own + agg)


def test_decoder_matches_padded_link_formula(adk):
    torch.manual_seed(0)
    graph = residue_graph(adk, load_config("train-atom"))
    model = build_model(graph, load_config("train-atom"), 32)
    d = model.decoder
    torch.nn.init.normal_(d.head[-1].weight, std=0.1)
    z = torch.randn(5, d.expand.in_features)
    fast = d(z)
    h = d.expand(z).view(5, d.n_nodes, d.dim)
    for r in d.rounds:
        h = plain_round(r, h, d)
    plain = d.head(h) * d.displacement_scale  # output unit (Å)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    weights = torch.randn_like(plain)
    g_fast = torch.autograd.grad((fast * weights).sum(), list(d.parameters()))
    g_plain = torch.autograd.grad((plain * weights).sum(), list(d.parameters()))
    for a, b in zip(g_fast, g_plain):
        assert_close_to_scale(a, b, 1e-4)  # gradients: float32 sums over other index orders


@pytest.mark.parametrize("d", [64, 65])
def test_image_model_matches_centred_full_spectrum(d):
    """rfft layout, cached CTF basis and phase-ramp frequencies == centred complex FFT composition."""
    torch.manual_seed(0)
    b, n, apix = 6, 40, 1.5
    model = ImageModel(d, apix, torch.rand(n) + 0.5, torch.full((n,), 2.0), 4.0, 2.0, 0.9)
    coords = (10 * torch.randn(b, n, 3)).requires_grad_()
    rotations = torch.linalg.qr(torch.randn(b, 3, 3))[0]
    shifts = (3 * torch.randn(b, 2)).requires_grad_()
    rows = torch.tensor([15000.0, 14000.0, 0.3, 300.0, 2.7, 0.1, 0.2], dtype=torch.float64).repeat(b, 1)
    rows[:, 0] += torch.linspace(0, 20000, b, dtype=torch.float64)
    ctf = CTFParams(*rows.T)
    fast = model.predict(coords, PoseBatch(rotations, shifts), ctf)
    image = project_gaussians(coords, model.amplitudes, model.sigmas, rotations, d, apix)
    plain = ifft2_center(fft2_center(plain_particle_images(image, shifts, ctf, apix)) * lowpass_filter(d, apix, 4.0, 2.0)).real
    assert_close_to_scale(fast, plain, 1e-6)
    w = torch.randn_like(plain)
    g_fast = torch.autograd.grad((fast * w).sum(), [coords, shifts])
    g_plain = torch.autograd.grad((plain * w).sum(), [coords, shifts])
    for a, b_ in zip(g_fast, g_plain):
        assert_close_to_scale(a, b_, 1e-4)
    images = torch.randn(b, d, d)
    torch.testing.assert_close(model.target(images), ifft2_center(fft2_center(images) * lowpass_filter(d, apix, 4.0, 2.0)).real,
                               rtol=0, atol=1e-5)


def test_band_limited_image_model_is_the_fourier_crop_of_the_full_one():
    """Same field of view on the smallest box holding the low-pass: its images equal the full
    model's Fourier-cropped images (origins scaled to the new pixels)."""
    torch.manual_seed(0)
    b, n, d, apix = 4, 50, 64, 1.6
    model = ImageModel(d, apix, torch.rand(n) + 0.5, torch.full((n,), 2.0), 6.0, 2.0, 0.9375)
    small, box = model.band_limited()
    assert box == 42 and small.d == 42 and small.apix == pytest.approx(apix * d / box)
    coords = 8 * torch.randn(b, n, 3)
    poses = PoseBatch(torch.linalg.qr(torch.randn(b, 3, 3))[0], 3 * torch.randn(b, 2))
    rows = torch.tensor([15000.0, 14000.0, 0.3, 300.0, 2.7, 0.1, 0.2], dtype=torch.float64).repeat(b, 1)
    ctf = CTFParams(*rows.T)
    cropped = fourier_crop(model.predict(coords, poses, ctf), box)
    assert_close_to_scale(small.predict(coords, PoseBatch(poses.rotations, poses.origins * box / d), ctf), cropped, 1e-2)
    assert ImageModel(d, apix, torch.ones(n), torch.ones(n), None, 2.0, 0.9).band_limited()[1] == d


def test_coarse_to_fine_lowpass_sharpens_to_the_models_own_over_the_ramp():
    """optim.lowpass_start_factor: the loss's low-pass goes from that multiple of the model's own
    resolution to it, linearly in spatial frequency (12 -> 6 Å over 2 epochs: 8 Å after one), then stays there; the
    resolution the model is built for (posterior box, gradient encoder) does not change."""
    from types import SimpleNamespace

    from cryodyna.config.schema import DeformationOptimConfig

    def filter_at(resolution: float) -> torch.Tensor:
        return ImageModel(32, 2.0, torch.ones(5), torch.ones(5), resolution, 2.0, 0.9).formation.filter

    model = ImageModel(32, 2.0, torch.ones(5), torch.ones(5), 6.0, 2.0, 0.9)
    final = model.formation.filter.clone()
    trainer = SimpleNamespace(cfg=DeformationOptimConfig(lowpass_start_factor=2.0, lowpass_ramp_epochs=2), image_model=model,
                              steps_per_epoch=10, step=0)
    for step, resolution in ((0, 12.0), (10, 8.0), (20, 6.0), (35, 6.0)):
        trainer.step = step
        DeformationTrainer._coarse_to_fine(trainer)
        torch.testing.assert_close(model.formation.filter, filter_at(resolution), rtol=0, atol=1e-6)
    assert not torch.equal(filter_at(12.0), final) and torch.equal(model.formation.filter, final)
    assert model.lowpass == 6.0 and model.band_limited()[1] == 2 * math.ceil(32 * 2.0 / 6.0 + 2.0) + 2
    trainer.cfg, trainer.steps_per_epoch = DeformationOptimConfig(lowpass_start_factor=2.0, lowpass_ramp_epochs=1.5), 5
    for step in (7, 8):  # a ramp of 7.5 steps ends at the model's own low-pass
        trainer.step = step
        DeformationTrainer._coarse_to_fine(trainer)
    assert torch.equal(model.formation.filter, final)
    with pytest.raises(ValueError, match="lowpass_start_factor"):
        DeformationOptimConfig(lowpass_start_factor=0.5)  # a start finer than the training low-pass
    trainer.cfg = DeformationOptimConfig()  # off by default: the filter is never touched
    model.formation.filter.fill_(0.5)
    DeformationTrainer._coarse_to_fine(trainer)
    assert (model.formation.filter == 0.5).all()


def test_priors_match_direct_indexing():
    torch.manual_seed(0)
    x = torch.randn(4, 30, 3, requires_grad=True)
    pairs = torch.randint(0, 30, (50, 2))
    direct = (x[:, pairs[:, 0]] - x[:, pairs[:, 1]]).norm(dim=-1)
    torch.testing.assert_close(pair_distances(x, pairs), direct)
    group = torch.randint(-1, 3, (50,))
    reference = direct[0].detach() * 0.9
    err = distance_deviation(x, pairs, reference)
    release = ElasticRelease(group, 0.7)
    keep = release.weights(err) > 0
    assert release.n_kept == int(keep.sum())
    torch.testing.assert_close(elastic_energy(x, pairs, reference, release), err[:, keep].mean())


def tiny_trainer(priors, graph, cfg, tmp_path, batch=4, box=32):
    n = 2 * batch
    data = PreparedParticles(
        images=torch.randn(n, box, box), poses=PoseBatch(torch.linalg.qr(torch.randn(n, 3, 3))[0], torch.randn(n, 2)),
        ctf=CTFParams(*torch.tensor([15000.0, 14000.0, 0.3, 300.0, 2.7, 0.1, 0.0], dtype=torch.float64).repeat(n, 1).T),
        d=box, apix=2 * float(np.abs(graph.coords).max()) / box, scale=1.0)
    model = build_model(graph, cfg, box)
    torch.nn.init.normal_(model.decoder.head[-1].weight, std=0.05)
    image_model = ImageModel(box, data.apix, torch.as_tensor(graph.amplitudes), torch.as_tensor(graph.sigmas), 3 * data.apix, 2.0, 0.9)
    trainer = DeformationTrainer(priors, graph, model, image_model, data, cfg.optim, tmp_path, encoder_input=cfg.model.encoder_input)
    return trainer, data.batch(torch.arange(batch), trainer.device)


def compiled_matches_eager(trainer, batch):
    view = trainer.encoder_view(batch["images"], batch["poses"], batch["ctf"])  # computed outside the compiled function
    args = (view, batch["images"], batch["poses"], batch["ctf"], True)
    trainer.priors.prepare(trainer.model.reference.unsqueeze(0), 0)
    params = list(trainer.model.parameters())
    eager_total, eager_values, _ = trainer._loss_terms(*args)
    eager_grads = torch.autograd.grad(eager_total, params, allow_unused=True)
    compiled = torch.compile(trainer._loss_terms, fullgraph=True, dynamic=False, backend="aot_eager")
    total, values, _ = compiled(*args)  # fullgraph: any graph break (host sync, data-dependent shape) raises
    grads = torch.autograd.grad(total, params, allow_unused=True)
    torch.testing.assert_close(total, eager_total, rtol=1e-5, atol=1e-7)
    assert values.keys() == eager_values.keys()
    for a, b in zip(grads, eager_grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close_to_scale(a, b, 1e-4)


@pytest.mark.parametrize("encoder_input", ["image", "residual", "gradient"])
def test_residue_step_compiles_whole_and_matches_eager(adk, tmp_path, encoder_input):
    torch.manual_seed(0)
    torch._dynamo.reset()
    cfg = load_config("train-atom", overrides=["optim.holdout_fraction=0", "model.z_dim=4", f"model.encoder_input={encoder_input}"])
    graph = residue_graph(adk, cfg)
    trainer, batch = tiny_trainer(build_priors(graph, cfg.loss), graph, cfg, tmp_path)
    compiled_matches_eager(trainer, batch)


@pytest.mark.slow
def test_bead_step_compiles_whole_and_matches_eager(adk, tmp_path):
    from cryodyna.structure.martini import martinize
    from cryodyna.assembly.cg_prep import forcefield_of
    from cryodyna.assembly.model import bead_graph

    torch.manual_seed(0)
    torch._dynamo.reset()
    cfg = load_config("train-cg", overrides=["optim.holdout_fraction=0", "model.z_dim=4"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cg = martinize(adk)
        graph = bead_graph(adk, cg, cfg)
        priors = build_priors(graph, cfg.loss, forcefield_of(cg, cfg.martini))
    compiled_matches_eager(*tiny_trainer(priors, graph, cfg, tmp_path))


def brute_force_pairs(x: np.ndarray, cutoff: float, excluded: np.ndarray) -> set[tuple[int, int]]:
    """Pairs i < j within ``cutoff`` in any structure of x (B, N, 3), from all N^2 distances."""
    excluded = {(min(i, j), max(i, j)) for i, j in excluded}
    found = set()
    for frame in x:
        d = np.linalg.norm(frame[:, None] - frame[None], axis=-1)
        i, j = np.nonzero(np.triu(d < cutoff, 1))
        found |= set(zip(i.tolist(), j.tolist()))
    return found - excluded


def test_verlet_list_is_exact_within_half_the_skin_and_catches_larger_moves():
    rng = np.random.default_rng(0)
    n, cutoff, skin = 300, 5.0, 2.0
    frames = rng.uniform(0, 25, (3, n, 3))
    excluded = np.stack([np.arange(n - 1), np.arange(1, n)], 1)  # chain bonds
    verlet = VerletList(n, cutoff, excluded, skin=skin, interval=8)
    verlet.refresh(torch.as_tensor(frames, dtype=torch.float32), step=0)
    listed = {tuple(p) for p in verlet.pairs[verlet.weight > 0].tolist()}
    assert listed == brute_force_pairs(frames, cutoff + skin, excluded)
    assert len(verlet.pairs) >= len(listed) and len(verlet.pairs) & (len(verlet.pairs) - 1) == 0  # padded to 2^k
    # every bead within skin/2 of its place in one of the frames: nothing within the cut-off is missing
    step = rng.normal(size=(3, n, 3))
    moved = frames + 0.99 * (skin / 2) * step / np.linalg.norm(step, axis=-1, keepdims=True)
    assert brute_force_pairs(moved, cutoff, excluded) <= listed
    assert verlet.missing(torch.as_tensor(moved, dtype=torch.float32)) == 0
    assert not verlet.due(7) and verlet.due(8)
    # beads moved far: the check at the next refresh counts the missed pairs and halves the interval
    far = frames + rng.normal(0, 4.0, frames.shape)
    missed = len(brute_force_pairs(far, cutoff, excluded) - listed)
    assert missed > 0
    assert verlet.missing(torch.as_tensor(far, dtype=torch.float32)) == missed
    verlet.refresh(torch.as_tensor(far, dtype=torch.float32), step=8)
    assert verlet.interval == 4 and verlet.missed_total == missed


def test_residual_encoder_input_removes_what_the_reference_explains(adk, tmp_path):
    """model.encoder_input=residual: the encoder sees each image minus the reference model's
    prediction in its pose and CTF, scaled per image; an image that is a multiple of that
    prediction leaves nothing, a deformation leaves its difference; =image passes images through."""
    torch.manual_seed(0)
    cfg = load_config("train-atom", overrides=["optim.holdout_fraction=0", "model.z_dim=4"])
    graph = residue_graph(adk, cfg)
    trainer, batch = tiny_trainer(build_priors(graph, cfg.loss), graph, cfg, tmp_path)
    poses, ctf = batch["poses"], batch["ctf"]
    ref = trainer.image_model.predict(trainer.model.reference.expand(len(poses.rotations), -1, -1), poses, ctf)
    images = torch.tensor([2.5, -1.0, 0.3, 7.0])[:, None, None] * ref
    assert trainer.encoder_view(images, poses, ctf) is images  # the default
    trainer.encoder_input = "residual"
    assert trainer.encoder_view(images, poses, ctf).abs().max() < 1e-5 * images.abs().max()
    moved = trainer.model.reference.clone()
    moved[:40] += 3.0
    deformed = trainer.image_model.predict(moved.expand(len(images), -1, -1), poses, ctf)
    residual = trainer.encoder_view(deformed, poses, ctf)
    assert residual.square().sum() > 0.01 * deformed.square().sum()
    torch.testing.assert_close((residual * ref).sum((-2, -1)), torch.zeros(len(images)), atol=1e-3 * ref.square().sum().item(), rtol=0)


def test_gradient_encoder_input_is_a_per_image_pull_on_the_reference_nodes(adk, tmp_path):
    """model.encoder_input=gradient: the encoder sees (B, 3N) per image, unit RMS, the same for an
    image encoded alone or in a batch, pointing along the deformation the images show."""
    torch.manual_seed(0)
    cfg = load_config("train-atom", overrides=["optim.holdout_fraction=0", "model.z_dim=4", "model.encoder_input=gradient"])
    graph = residue_graph(adk, cfg)
    trainer, batch = tiny_trainer(build_priors(graph, cfg.loss), graph, cfg, tmp_path)
    poses, ctf = batch["poses"], batch["ctf"]
    reference = trainer.model.reference
    move = torch.zeros_like(reference)
    move[:40] = torch.tensor([3.0, -2.0, 1.0])
    images = trainer.image_model.predict((reference + move).expand(len(poses.rotations), -1, -1), poses, ctf)
    view = trainer.encoder_view(images, poses, ctf)
    assert view.shape == (len(images), 3 * len(reference)) == (len(images), trainer.model.encoder.mlp[0].in_features)
    torch.testing.assert_close(view.square().mean(1), torch.ones(len(images)))
    alone = trainer.encoder_view(images[1:2], poses[1:2], ctf[1:2])
    torch.testing.assert_close(alone[0], view[1], rtol=1e-4, atol=1e-5)
    assert (torch.nn.functional.cosine_similarity(view, move.flatten()[None], dim=1) > 0.05).all()
