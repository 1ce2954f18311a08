"""The quick profile's pretrained starting point: the hub's small MLM BERT online
(tested on a local stand-in laid out as a hub-cache repository under its name),
fresh layers over all-MiniLM-L6-v2's input layer offline."""

from __future__ import annotations

import math

import pytest
import torch

from cl_toolkit import simcse
from cl_toolkit.models import Encoder
from cl_toolkit.run import run
from cl_toolkit.simcse import QUICK_PRETRAINED, SimCSE

SENTENCES = ["A man is playing a guitar.", "Two dogs run across the snowy field.",
             "A woman slices an onion.", "The stock market fell sharply.",
             "Children play in the park.", "It is raining in Paris."]


@pytest.fixture
def stand_in_hub(hub_cache):
    """A hub cache holding a tiny BERT under QUICK_PRETRAINED's name; the hub itself stays offline."""
    snap = hub_cache(QUICK_PRETRAINED)
    stand_in = Encoder.tiny(layers=1, hidden=48, heads=2, seed=0)
    stand_in.model.save_pretrained(snap)
    stand_in.tokenizer.save_pretrained(snap)
    return stand_in


def test_quick_profile_picks_the_mlm_bert_online(stand_in_hub, monkeypatch):
    # "online" for the recipe's choice only; the files still come from the (stand-in) cache
    with monkeypatch.context() as online:
        online.setattr("cl_toolkit.hub.is_offline", lambda: False)
        recipe = SimCSE.for_profile("quick", steps=2, eval_every=0, batch_size=8)
        assert recipe.model == QUICK_PRETRAINED
        assert SimCSE.for_profile("quick", supervised=True).model == QUICK_PRETRAINED
        assert SimCSE.for_profile("quick", model="tiny").model == "tiny"  # an explicit choice wins
    model = recipe.build_model()
    assert model.model.config.hidden_size == 48  # the stand-in, found by its hub name
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    for k, v in stand_in_hub.model.state_dict().items():
        assert torch.equal(before[k], v), k  # its pretrained weights, not a fresh init
    trained = run(recipe, data=SENTENCES * 4, device="cpu")
    assert trained.result.steps_done == 2 and all(math.isfinite(x) for x in trained.result.losses)
    changed = [k for k, v in trained.model.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed


def test_quick_profile_offline_is_fresh_layers_over_minilm_embeddings(monkeypatch):
    monkeypatch.setattr("cl_toolkit.hub.is_offline", lambda: True)
    recipe = SimCSE.for_profile("quick", seed=3)
    assert recipe.model == "minilm-emb" and simcse.quick_start_model() == "minilm-emb"
    model = recipe.build_model()
    reference = Encoder.over_embeddings(seed=3)
    assert model.model.config.num_hidden_layers == 2 and model.dim == 384
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(a, b), name
        assert a.requires_grad == (not name.startswith("model.embeddings.")), name
