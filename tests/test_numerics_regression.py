"""Numerics of the training step, the simulator, the density loss and the back-projection on one
fixed batch, against values recorded before the one-image-model redesign (commit 06f0333:
``tests/data/redesign_baseline.npz``).  Loss terms and outputs within 1e-6 relative; gradients as
four fixed random projections per parameter tensor, within 1e-6 of the gradient's scale.

The simulator and the back-projection are checked on an odd box: with an even box the old code
took the real part of a full complex FFT, the one image model takes the Hermitian half spectrum,
and the two differ in the unpaired Nyquist row and column (where a sub-pixel shift has no
symmetric meaning); everywhere else they agree."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cryodyna.assembly.model import build_model, residue_graph
from cryodyna.assembly.priors import build_priors
from cryodyna.config import load_config
from cryodyna.analysis.reconstruct import BackProjector
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.imaging.fft import fft2_center
from cryodyna.imaging.formation import FourierTransfer, ImageFormation
from cryodyna.imaging.image_model import ImageModel
from cryodyna.imaging.slicing import CentralSlice
from cryodyna.io.angles import euler_relion_to_matrix
from cryodyna.models.volume import VolumeDecoder
from cryodyna.simulate.simulator import render_images

BASELINE = np.load(Path(__file__).parent / "data" / "redesign_baseline.npz")
D, APIX, B = 32, 3.2, 4
ODD = 33  # box of the simulator and back-projection checks (see the module docstring)


@pytest.fixture(scope="module")
def adk():
    from cryodyna.simulate.adk import adk_states

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adk_states()[0]


def fixed_batch():
    g = torch.Generator().manual_seed(7)
    images = torch.randn(B, D, D, generator=g)
    eul = np.deg2rad([[10, 40, 70], [100, 80, -30], [-150, 120, 45], [60, 10, 200]])
    rot = torch.as_tensor(np.stack([euler_relion_to_matrix(*e) for e in eul]), dtype=torch.float32)
    shifts = torch.tensor([[0.5, -1.2], [2.0, 0.3], [-0.7, -0.4], [0.0, 1.5]])
    rows = torch.tensor([[15000., 14000., 0.3, 300., 2.7, 0.1, 0.0], [20000., 21000., 1.2, 300., 2.7, 0.1, 0.0],
                         [8000., 8500., -0.5, 200., 2.0, 0.07, 0.2], [25000., 24000., 2.0, 300., 2.7, 0.1, 0.0]],
                        dtype=torch.float64)
    return images, PoseBatch(rot, shifts), CTFParams(*rows.T)


def grad_projections(params) -> np.ndarray:
    g = torch.Generator().manual_seed(11)
    out = []
    for p in params:
        v = torch.randn(4, p.numel(), generator=g, dtype=torch.float64)
        out.append(v @ (torch.zeros(p.numel(), dtype=torch.float64) if p.grad is None else p.grad.double().flatten()))
    return torch.stack(out).numpy()


def summary(a: torch.Tensor, g: torch.Generator) -> np.ndarray:
    a = torch.as_tensor(a).double().flatten()
    return (torch.randn(4, a.numel(), generator=g, dtype=torch.float64) @ a).numpy()


def assert_relative(new, old, tol=1e-6):
    new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
    assert np.abs(new - old).max() <= tol * np.abs(old).max() + 1e-15, (new, old)


def test_step_simulator_density_backprojection_match_recorded_values(adk):
    torch.set_num_threads(1)
    cfg = load_config("train-atom", overrides=["model.displacement_scale=1"])  # the decoder output unit of the recorded code
    torch.manual_seed(0)
    graph = residue_graph(adk, cfg)
    model = build_model(graph, cfg, D)
    torch.nn.init.normal_(model.decoder.head[-1].weight, std=0.5)
    priors = build_priors(graph, cfg.loss)
    im = ImageModel(D, APIX, torch.as_tensor(graph.amplitudes), torch.as_tensor(graph.sigmas), 8.0,
                    cfg.data.lowpass_soft_width, cfg.data.loss_mask_radius, cfg.loss.legacy_correlation)
    images, poses, ctf = fixed_batch()
    priors.prepare(model.reference.unsqueeze(0), 0)
    _, coords = model(images, context=True)
    pred = im.predict(coords, poses, ctf)
    image_loss = im.loss(pred, im.target(images))
    total, terms = image_loss, {"image": image_loss}
    for name, (weight, value) in priors(coords).items():
        total, terms[name] = total + weight * value, value
    total.backward()
    assert list(BASELINE["terms_names"]) == sorted(terms)
    assert_relative([float(terms[k].detach()) for k in sorted(terms)], BASELINE["terms"])
    assert_relative(float(total), BASELINE["total"])
    assert_relative(grad_projections(list(model.parameters())), BASELINE["grad_proj"])
    assert_relative([float(pred.double().sum()), float(pred.double().square().sum())],
                    [BASELINE["pred_sum"], BASELINE["pred_sq"]], 1e-5)  # a sum of ~zero-mean pixels

    g = torch.Generator().manual_seed(5)
    amps, sig = torch.as_tensor(graph.amplitudes).float(), torch.as_tensor(graph.sigmas).float()
    damped = CTFParams(*[getattr(ctf, f) for f in ("defocus_u", "defocus_v", "astig_angle", "voltage", "cs",
                                                   "amp_contrast", "phase_shift")], bfactor=torch.full((B,), 50., dtype=torch.float64))
    sim = render_images(ImageFormation(ODD, APIX), torch.as_tensor(graph.coords).float().expand(B, -1, -1), amps, sig, poses, damped)
    assert_relative(summary(sim, g), BASELINE["sim"])

    torch.manual_seed(1)
    vol = VolumeDecoder(D, 2, 32, 2, 16, 0.5, None, 1.0, seed=3)
    sl = CentralSlice(D, 1.0)
    z = torch.tensor([[0.1, 0.2], [-0.3, 0.5], [0.7, -0.1], [0.0, 0.0]])
    model_f = sl.assemble(vol(sl.rotate(poses.rotations), z).to(torch.complex64)) * FourierTransfer(sl.frequencies, APIX)(poses, ctf)
    err = (sl.gather(fft2_center(images)) / D - model_f).abs().square().mean(dim=1)
    err.mean().backward()
    assert_relative(err.detach(), BASELINE["density_err"])
    assert_relative(grad_projections(list(vol.parameters())), BASELINE["density_grad_proj"])

    bp = BackProjector(graph.coords, ODD, APIX, 3.8)
    bp.add(0, torch.randn(B, ODD, ODD, generator=torch.Generator().manual_seed(8)), poses, ctf, coords.detach())
    for key, value in (("bp_plain", bp.plain[0]), ("bp_weight", bp.weight[0]), ("bp_near", bp.near[0])):
        assert_relative(summary(value, g), BASELINE[key])
