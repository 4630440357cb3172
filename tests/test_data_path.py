"""Data path and compilation options: background loader processes, the image cache in worker
processes, torch.compile."""

import pickle
import warnings

import numpy as np
import pytest
import torch

from cryodyna.config import load_config
from cryodyna.data.batches import iterate_batches
from cryodyna.data.image_cache import ImageCache
from cryodyna.imaging.batches import CTFParams, PoseBatch
from cryodyna.data.particles import PreparedParticles
from cryodyna.pipelines.training import train_atom


def _train(tiny_adk, run, *overrides):
    from conftest import REPEATABLE, TINY_TRAIN_SETTINGS

    cfg = load_config("train-atom", None, TINY_TRAIN_SETTINGS + REPEATABLE + ["optim.epochs=1", "analysis.pcs=1", *overrides])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run, cfg)
    return torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]


def test_cached_images_travel_to_workers_by_name(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, np.random.default_rng(0).normal(size=(50, 8, 8)).astype(np.float32))
    data = PreparedParticles(ImageCache(path), PoseBatch(torch.eye(3).expand(50, 3, 3), torch.zeros(50, 2)),
                             CTFParams(*(torch.zeros(50, dtype=torch.float64) for _ in range(7))), 8, 1.0, 2.0)
    blob = pickle.dumps(data)
    assert len(blob) < 10_000  # the file name, not 12 kB of pixels per image
    idx = torch.tensor([7, 3, 41])
    torch.testing.assert_close(pickle.loads(blob).rows(idx)["images"], torch.from_numpy(np.load(path)[[7, 3, 41]]) * 2.0)
    batches = [torch.tensor([5, 1]), torch.tensor([9, 30, 2])]
    direct = list(iterate_batches(data, batches, torch.device("cpu")))
    background = list(iterate_batches(data, batches, torch.device("cpu"), workers=2))
    for a, b in zip(direct, background):
        torch.testing.assert_close(a["images"], b["images"])
        torch.testing.assert_close(a["poses"].rotations, b["poses"].rotations)
        torch.testing.assert_close(a["ctf"].defocus_u, b["ctf"].defocus_u)


@pytest.mark.slow
def test_loader_workers_and_compile_leave_training_unchanged(tiny_adk, tmp_path):
    plain = _train(tiny_adk, tmp_path / "plain")
    workers = _train(tiny_adk, tmp_path / "workers", "optim.loader_workers=2")
    for k in plain:
        torch.testing.assert_close(workers[k], plain[k], rtol=0, atol=0)
    compiled = _train(tiny_adk, tmp_path / "compiled", "optim.compile=true", "optim.compile_backend=aot_eager")
    for k in plain:
        torch.testing.assert_close(compiled[k], plain[k], rtol=1e-4, atol=1e-5)
