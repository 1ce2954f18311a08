"""SimCSE: the training steps against sentence-transformers' MultipleNegativesRankingLoss,
the paper's recipe as the ``full`` profile, and that profile run end-to-end offline on
tiny stand-ins of ``bert-base-uncased`` and ``princeton-nlp/datasets-for-simcse``
laid out in the Hugging Face hub cache."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from cl_toolkit.losses import info_nce
from cl_toolkit.models import Encoder
from cl_toolkit.run import run
from cl_toolkit.simcse import PAPER_RESULTS, SimCSE, sup_simcse_loss, unsup_simcse_loss

SENTENCES = [
    "A man is playing a guitar.",
    "A woman slices an onion on a wooden board.",
    "Two dogs run across the snowy field.",
    "The stock market fell sharply on Monday.",
    "Children are playing football in the park.",
    "A cat sleeps on the warm windowsill.",
    "The chef is cooking pasta in a big pot.",
    "A plane takes off from the airport at night.",
]
TRIPLETS = [
    ("A man is playing a guitar.", "A man plays an instrument.", "A man is sleeping."),
    ("Two dogs run across the snowy field.", "Animals are outside.", "The dogs are asleep indoors."),
    ("The chef is cooking pasta.", "Someone is making food.", "Nobody is cooking."),
    ("Children are playing football.", "Kids play a sport.", "The children are reading."),
    ("A plane takes off at night.", "An aircraft departs.", "The plane is parked in daylight."),
]


def mnrl(scale: float = 20.0):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(nn.Identity(), scale=scale)  # the model is not used on embeddings


# --------------------------------------------------------------------------- MNRL on the same embeddings
@pytest.mark.parametrize("n,d,tau", [(2, 3, 0.05), (16, 32, 0.05), (9, 8, 0.1)])
def test_unsup_loss_equals_mnrl_on_the_same_embeddings(n, d, tau):
    g = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    ours = info_nce(z1, z2, tau)
    theirs = mnrl(1 / tau).compute_loss_from_embeddings([z1, z2], labels=None)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, mnrl(1.0).compute_loss_from_embeddings([z1, z2], None), atol=1e-3)  # scale matters


@pytest.mark.parametrize("n,d", [(4, 8), (16, 32)])
def test_sup_loss_equals_mnrl_with_hard_negatives(n, d):
    g = torch.Generator().manual_seed(7 + n)
    z1, z2, z3 = (torch.randn(n, d, generator=g, requires_grad=True) for _ in range(3))
    ours = info_nce(z1, z2, 0.05, negatives=z3)
    theirs = mnrl(20.0).compute_loss_from_embeddings([z1, z2, z3], labels=None)
    assert torch.allclose(ours, theirs, atol=1e-5)
    g_ours = torch.autograd.grad(ours, [z1, z2, z3])
    g_theirs = torch.autograd.grad(theirs, [z1, z2, z3])
    for a, b in zip(g_ours, g_theirs):
        assert torch.allclose(a, b, atol=1e-6)


# --------------------------------------------------------------------------- whole steps against MNRL on the model
@pytest.fixture
def pair(tmp_path):
    """A tiny encoder and the same weights as a SentenceTransformer (via Encoder.save)."""
    from sentence_transformers import SentenceTransformer

    enc = Encoder.tiny(layers=2, hidden=64, heads=2, pooling="mean", seed=0)
    st = SentenceTransformer(str(enc.save(tmp_path / "model")), device="cpu")
    return enc.train(), st.train()


def _st_params(st) -> dict[str, torch.Tensor]:
    return dict(st[0].auto_model.named_parameters())


def _compare_grads(enc: Encoder, st, tol: float = 1e-5) -> None:
    theirs = _st_params(st)
    ours = dict(enc.model.named_parameters())
    for name, p in ours.items():
        q = theirs[name]
        assert (p.grad - q.grad).abs().max().item() <= tol * max(1.0, p.grad.abs().max().item()), name
    # the only extra parameters are BERT's unused pooler, which gets no gradient
    assert all(theirs[name].grad is None for name in theirs.keys() - ours.keys())
    assert len(ours) > 30


def _no_dropout(enc, st) -> None:
    enc.set_dropout(0.0)
    for module in st.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def test_unsup_step_equals_mnrl_on_x_x_pairs(pair):
    """The one-pass step over [x; x] is MNRL on (x, x) pairs: same loss and gradients (dropout
    off, since MNRL's two separate passes draw other masks than one pass over both views)."""
    enc, st = pair
    _no_dropout(enc, st)
    ours = unsup_simcse_loss(enc, SENTENCES, 0.05)
    ours.backward()
    features = [st.preprocess(SENTENCES), st.preprocess(SENTENCES)]
    theirs = mnrl(20.0).__class__(st, scale=20.0)(features, labels=None)
    theirs.backward()
    assert abs(ours.item() - theirs.item()) < 1e-5
    _compare_grads(enc, st)


def test_unsup_step_views_have_their_own_dropout_masks():
    enc = Encoder.tiny(layers=1, hidden=32, heads=2, seed=0).train()
    torch.manual_seed(11)
    a = unsup_simcse_loss(enc, SENTENCES, 0.05)
    torch.manual_seed(11)
    assert unsup_simcse_loss(enc, SENTENCES, 0.05).item() == a.item()  # a function of the RNG state
    torch.manual_seed(12)  # other masks, another loss: the step is not deterministic by accident
    assert abs(unsup_simcse_loss(enc, SENTENCES, 0.05).item() - a.item()) > 1e-4
    enc.set_dropout(0.0)  # without dropout the two views coincide: the positive is trivial
    z = enc.encode(SENTENCES)
    assert torch.allclose(unsup_simcse_loss(enc, SENTENCES, 0.05), info_nce(z, z.clone(), 0.05), atol=1e-5)
    assert a.item() > unsup_simcse_loss(enc, SENTENCES, 0.05).item()


def test_sup_step_equals_mnrl_on_triplets_without_dropout(pair):
    """With dropout off, the one-pass supervised step equals MNRL on (anchor, positive, negative)."""
    enc, st = pair
    _no_dropout(enc, st)
    ours = sup_simcse_loss(enc, TRIPLETS, 0.05)
    ours.backward()
    features = [st.preprocess([t[i] for t in TRIPLETS]) for i in range(3)]
    theirs = mnrl(20.0).__class__(st, scale=20.0)(features, labels=None)
    theirs.backward()
    assert abs(ours.item() - theirs.item()) < 1e-5
    _compare_grads(enc, st)


def test_same_mask_ablation_makes_identical_views():
    enc = Encoder.tiny(layers=1, hidden=32, heads=2, seed=0).train()
    batch = enc.tokenize(SENTENCES)
    state = torch.get_rng_state()
    z1 = enc(batch)
    torch.set_rng_state(state)
    z2 = enc(batch)
    assert torch.equal(z1, z2)
    torch.manual_seed(0)
    same = unsup_simcse_loss(enc, SENTENCES, 0.05, same_mask=True)
    torch.manual_seed(0)
    z = enc(batch)
    # identical views: every positive logit is cos(z_i, z_i)/tau = 1/tau
    assert torch.allclose(same, info_nce(z, z.clone(), 0.05), atol=1e-5)
    torch.manual_seed(0)
    assert unsup_simcse_loss(enc, SENTENCES, 0.05).item() > same.item()  # different masks: a harder positive


# --------------------------------------------------------------------------- the recipe
def test_full_profile_is_the_papers_recipe():
    u = SimCSE.for_profile("full")
    assert (u.model, u.batch_size, u.lr, u.max_length, u.temperature, u.epochs, u.steps) == (
        "bert-base-uncased", 64, 3e-5, 32, 0.05, 1, None)
    assert (u.pooling, u.mlp_only_train, u.corpus, u.eval_every, u.supervised) == ("cls", True, ("wiki1m",), 125, False)
    s = SimCSE.for_profile("full", supervised=True)
    assert (s.model, s.batch_size, s.lr, s.epochs, s.pooling, s.mlp_only_train) == ("bert-base-uncased", 512, 5e-5, 3, "cls", False)
    assert s.chunk_size is not None and s.batch_size % s.chunk_size == 0
    q = SimCSE.for_profile("quick", lr=1e-3)
    assert q.model == "minilm-emb" and q.steps is not None and q.lr == 1e-3  # offline quick start
    with pytest.raises(ValueError, match="profile"):
        SimCSE.for_profile("medium")
    assert u.train_config(1_000_000).steps == 1_000_000 // 64
    assert s.train_config(275_601).steps == 3 * (275_601 // 512)


def test_paper_results_average():
    for name, row in PAPER_RESULTS.items():
        tasks = [v for k, v in row.items() if k != "avg"]
        assert len(tasks) == 7
        assert math.isclose(sum(tasks) / 7, row["avg"], abs_tol=0.006), name
    assert PAPER_RESULTS["unsup-simcse-bert-base-uncased"]["avg"] == 76.25
    assert PAPER_RESULTS["sup-simcse-bert-base-uncased"]["avg"] == 81.57


def test_step_choice():
    with pytest.raises(ValueError, match="same_mask"):
        SimCSE(supervised=True, corpus=("nli",), same_mask=True)
    with pytest.raises(ValueError, match="same_mask"):
        SimCSE(same_mask=True, chunk_size=8)
    with pytest.raises(ValueError, match="corpus"):
        SimCSE(supervised=True)  # supervised needs the triplets
    with pytest.raises(ValueError, match="corpus"):
        SimCSE(corpus=("wiki1m", "books"))


# --------------------------------------------------------------------------- the full profile, offline, end to end
@pytest.fixture
def simcse_hub(hub_cache):
    """A Hugging Face hub cache holding a tiny stand-in ``bert-base-uncased`` and a tiny
    ``princeton-nlp/datasets-for-simcse``, in the layout ``hf download`` leaves."""
    stand_in = Encoder.tiny(layers=1, hidden=32, heads=2, seed=0)
    snap = hub_cache("bert-base-uncased")
    stand_in.model.save_pretrained(snap)
    stand_in.tokenizer.save_pretrained(snap)

    snap = hub_cache("princeton-nlp/datasets-for-simcse", "datasets")
    wiki = [f"wiki sentence {i} about {SENTENCES[i % len(SENTENCES)].lower()}" for i in range(130)]
    (snap / "wiki1m_for_simcse.txt").write_text("\n".join(wiki) + "\n", encoding="utf-8")
    with open(snap / "nli_for_simcse.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sent0", "sent1", "hard_neg"])
        for i in range(1030):
            a, p, n = TRIPLETS[i % len(TRIPLETS)]
            w.writerow([f"{a} ({i})", p, f"{n}, {i}"])  # a comma: the csv quoting is exercised
    return {"wiki": wiki}


def test_full_unsup_profile_runs_offline_from_the_hub_cache(simcse_hub):
    cfg = SimCSE.for_profile("full")
    data = cfg.load_data()
    assert data == simcse_hub["wiki"]  # the hub file, not the local wiki1m head
    trained = run(cfg, device="cpu", stop_after=2)
    encoder, result = trained.model, trained.result
    assert result.steps_done == 2 and all(math.isfinite(x) for x in result.losses)
    assert encoder.pooling == "cls" and encoder.mlp is not None and encoder.mlp_only_train
    # at test time the MLP head is off: the embedding is the raw [CLS] vector (cls_before_pooler)
    encoder.eval()
    batch = encoder.tokenize(SENTENCES[:3])
    with torch.no_grad():
        cls = encoder.model(**batch).last_hidden_state[:, 0]
    assert torch.allclose(encoder.encode(SENTENCES[:3]), cls, atol=1e-5)


def test_full_sup_profile_runs_offline_with_the_cached_loss(simcse_hub):
    cfg = SimCSE.for_profile("full", supervised=True)
    data = cfg.load_data()
    assert len(data) == 1030 and data[1] == ("Two dogs run across the snowy field. (1)", "Animals are outside.", "The dogs are asleep indoors., 1")
    encoder = cfg.build_model()
    assert encoder.model.config.hidden_size == 32  # the stand-in, found by its hub name
    trained = run(cfg, device="cpu", model=encoder, data=data, stop_after=2)
    result = trained.result
    assert result.steps_done == 2 and all(math.isfinite(x) for x in result.losses)
    assert trained.config["chunk_size"] == cfg.chunk_size == 128
