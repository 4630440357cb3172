import warnings

import numpy as np
import pytest
import torch

from cryodyna.models.encoder import ImageEncoder
from cryodyna.models.layers import DenseGATv2
from cryodyna.assembly.model import build_model, residue_graph
from cryodyna.config import load_config


@pytest.fixture(scope="module")
def adk_graph():
    from cryodyna.simulate.adk import adk_states

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        closed, _ = adk_states()
    return residue_graph(closed, load_config("train-atom"))


def test_graph_of_adk(adk_graph):
    g = adk_graph
    assert g.n_nodes == 214 and 10 < g.n_blocks < 60
    assert set(g.ss) <= {"H", "E", "C"} and (g.ss == "H").sum() > 50
    assert len(g.connect) == 213 and g.elastic_group.min() == 0


def gat_loop(layer, x, nbr, edge):
    """Edge-by-edge GATv2 for comparison."""
    h, c = layer.heads, layer.dim
    out = torch.zeros(x.shape[0], x.shape[1], c)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            logits, msgs = [], []
            for k, j in enumerate(nbr[i]):
                xj = layer.src(x[b, j]).view(h, c)
                xi = layer.dst(x[b, i]).view(h, c)
                e = layer.edge(edge[i, k].view(1)).view(h, c)
                logits.append((torch.nn.functional.leaky_relu(xj + xi + e, 0.2) * layer.att).sum(-1))
                msgs.append(xj)
            alpha = torch.softmax(torch.stack(logits), 0)  # (K, H)
            out[b, i] = (alpha.unsqueeze(-1) * torch.stack(msgs)).sum(0).mean(0) + layer.bias
    return out


def test_dense_gatv2_matches_edge_loop():
    torch.manual_seed(0)
    layer = DenseGATv2(8, heads=2)
    x = torch.randn(2, 5, 8)
    nbr = torch.tensor([[0, 1, 2], [1, 0, 3], [2, 4, 0], [3, 1, 4], [4, 2, 3]])
    edge = torch.rand(5, 3)
    torch.testing.assert_close(layer(x, nbr, edge), gat_loop(layer, x, nbr, edge), atol=1e-5, rtol=1e-5)


def test_zero_head_gives_reference_and_batched_equals_loop(adk_graph):
    torch.manual_seed(0)
    cfg = load_config("train-atom", overrides=["model.encoder_hidden=[64, 32]"])
    model = build_model(adk_graph, cfg, 16)
    z = torch.randn(5, cfg.model.z_dim)
    ref = torch.as_tensor(adk_graph.coords, dtype=torch.float32)
    torch.testing.assert_close(model.decode(z), ref.expand(5, -1, -1))  # exactly the reference
    torch.nn.init.normal_(model.decoder.head[-1].weight, std=0.1)
    batched = model.decode(z)
    assert (batched - ref).abs().max() > 1e-3
    for i in range(5):
        torch.testing.assert_close(model.decode(z[i : i + 1])[0], batched[i], atol=1e-5, rtol=1e-5)
    model.decode(z).square().sum().backward()
    missing = [n for n, p in model.decoder.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_cross_view_attention_registered_and_single_particle_mode():
    torch.manual_seed(0)
    enc = ImageEncoder(64, [32, 16], 4, attention_layers=2, heads=2)
    names = [n for n, _ in enc.named_parameters()]
    assert any(n.startswith("attention.1.q") for n in names) and "attention.0.norm.weight" in enc.state_dict()
    x = torch.randn(6, 8, 8)
    enc.eval()
    alone = torch.cat([enc(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(enc(x, context=False), alone, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(enc(x, context=True), alone, atol=1e-4)
    # the attention mixes only within a batch: permuting the batch permutes the output
    perm = torch.randperm(6)
    torch.testing.assert_close(enc(x[perm]), enc(x)[perm], atol=1e-5, rtol=1e-5)


def test_each_bead_has_its_own_freedom():
    """Bead level: a bead's own learned features change its displacement alone, not its residue's
    other beads (side chains are not tied rigidly to the residue features)."""
    from cryodyna.models.decoder import BlockGraphDecoder

    n_res, per_res = 12, 3
    rng = np.random.default_rng(0)
    res_coords = np.cumsum(rng.normal(0, 2.2, (n_res, 3)), 0)
    group = np.repeat(np.arange(n_res), per_res)
    coords = res_coords[group] + rng.normal(0, 1.5, (n_res * per_res, 3))
    block = np.repeat(np.arange(4), 3)
    centroids = np.stack([res_coords[block == b].mean(0) for b in range(4)])
    t = {"coords": torch.as_tensor(coords, dtype=torch.float32), "group_coords": torch.as_tensor(res_coords, dtype=torch.float32),
         "group": torch.as_tensor(group), "block": torch.as_tensor(block), "centroids": torch.as_tensor(centroids, dtype=torch.float32),
         "block_nbr": torch.arange(4).repeat(4, 1), "block_dist": torch.ones(4, 4),
         "link_idx": torch.as_tensor(block)[:, None], "link_mask": torch.ones(n_res, 1, dtype=torch.bool)}
    torch.manual_seed(0)
    decoder = BlockGraphDecoder(t, z_dim=4, dim=16, bead_features=8)
    assert decoder.bead_embedding.shape == (1, n_res * per_res, 8)
    z = torch.randn(2, 4)
    assert decoder(z).abs().max() == 0  # zero-initialised output: the reference at the start
    torch.nn.init.normal_(decoder.head[-1].weight)
    before = decoder(z).detach()
    with torch.no_grad():
        decoder.bead_embedding[0, 4] += 1.0  # the second bead of residue 1
    changed = (decoder(z).detach() - before).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [i == 4 for i in range(n_res * per_res)]
