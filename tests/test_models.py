import warnings

import pytest
import torch

from cryodyna.models.encoder import ImageEncoder
from cryodyna.models.layers import DenseGATv2
from cryodyna.train.run import build_model, residue_graph
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
