"""Priors and encoders are declared extension points: the developer guide's example prior works as
written, the configured names select them, and an unknown name is a one-line error."""

import re
import warnings
from pathlib import Path

import pytest
import torch
from pydantic import Field, create_model

from cryodyna.assembly import priors as prior_module
from cryodyna.assembly.model import ENCODERS, build_model, residue_graph
from cryodyna.config import load_config
from cryodyna.config.schema import LossConfig
from cryodyna.errors import CryodynaError

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "developer.md"


@pytest.fixture(scope="module")
def graph():
    from cryodyna.simulate.adk import adk_states

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return residue_graph(adk_states()[0], load_config("train-atom"))


def test_the_guide_s_new_prior_is_a_two_file_change(graph, monkeypatch):
    block = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    registry = dict(prior_module.PRIORS)
    monkeypatch.setattr(prior_module, "PRIORS", registry)
    exec(block.split("# config/schema.py")[0], vars(prior_module).copy())  # the prior file, as the guide writes it
    loss_with_rg = create_model("LossWithRg", __base__=LossConfig, rg_weight=(float, Field(2.0, ge=0)))  # the schema file
    loss = loss_with_rg(priors=["connect", "elastic", "clash", "rg"])
    priors = prior_module.build_priors(graph, loss)
    coords = torch.as_tensor(graph.coords).float()[None]
    terms = priors(coords)
    assert list(terms) == ["connect", "elastic", "clash", "rg"]
    assert terms["rg"][0] == 2.0 and float(terms["rg"][1]) == pytest.approx(0.0, abs=1e-6)  # the reference has its own Rg
    assert float(priors(1.1 * coords)["rg"][1]) > 0.1  # a swollen structure does not


def test_configured_priors_only_and_unknown_names_are_errors(graph):
    only = prior_module.build_priors(graph, LossConfig(priors=["elastic"]))
    assert list(only(torch.as_tensor(graph.coords).float()[None])) == ["elastic"]
    with pytest.raises(CryodynaError, match="loss.priors: unknown prior 'bogus'; known: .*clash"):
        prior_module.build_priors(graph, LossConfig(priors=["connect", "bogus"]))
    with pytest.raises(CryodynaError, match="'martini' needs MARTINI beads"):
        prior_module.build_priors(graph, LossConfig(priors=["martini"]))


@pytest.mark.parametrize("name,context", [("mlp", False), ("cross-attention", True)])
def test_encoders_declare_latent_size_and_context_use(graph, name, context):
    assert set(ENCODERS) == {"mlp", "cross-attention"}
    cfg = load_config("train-atom", overrides=[f"model.encoder={name}", "model.z_dim=3"])
    encoder = build_model(graph, cfg, 16).encoder
    assert encoder.z_dim == 3 and encoder.uses_context is context
    assert encoder(torch.randn(5, 16, 16), context=True).shape == (5, 3)
