"""Retrieval: BM25 against the formula, metrics and fusion by hand, faiss against numpy."""

import math

import numpy as np
import pytest
import torch

from cl_toolkit.losses import info_nce
from cl_toolkit.retrieval import (
    BM25, DPR, exact_search, gold_ranks, hard_negatives, retrieval_metrics, rrf_fusion,
    split_by_article, split_sentences, tokenize, xquad_sentences, zscore_fusion,
)


def naive_bm25(docs, query, k1=1.5, b=0.75):
    """Okapi BM25 from Robertson & Zaragoza (2009), one document at a time."""
    toks = [tokenize(d) for d in docs]
    avg = sum(map(len, toks)) / len(toks)
    out = []
    for d in toks:
        s = 0.0
        for t in tokenize(query):
            n_t = sum(t in x for x in toks)
            idf = math.log((len(toks) - n_t + 0.5) / (n_t + 0.5))
            f = d.count(t)
            s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(d) / avg))
        out.append(s)
    return out


def test_bm25_matches_formula():
    docs = ["the cat sat on the mat", "a dog barked", "cats and dogs", "a bird sang",
            "the mat was red", "fish swim", "a cat, a cat!"]
    for q in ["cat mat", "dog bird", "red fish cat"]:  # every query term is in < half the docs
        np.testing.assert_allclose(BM25(docs).scores([q])[0], naive_bm25(docs, q), rtol=1e-9)


def test_metrics_by_hand():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.1, 0.9, 0.4]])
    gold = [0, 1, 1]  # ranks 1, 2, 1
    assert gold_ranks(scores, gold).tolist() == [1, 2, 1]
    m = retrieval_metrics(scores, gold, ks=(1, 2))
    assert m["R@1"] == pytest.approx(2 / 3) and m["R@2"] == 1.0
    assert m["MRR"] == pytest.approx((1 + 0.5 + 1) / 3)
    # a tie counts against the gold
    assert gold_ranks(np.array([[1.0, 1.0]]), [0]).tolist() == [2]


def test_fusion_by_hand():
    a = np.array([[3.0, 2.0, 1.0]])
    b = np.array([[1.0, 3.0, 2.0]])
    rrf = rrf_fusion(a, b, k=60)
    expected = [1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62]
    np.testing.assert_allclose(rrf[0], expected)
    z = zscore_fusion(a, b)
    za = (a - a.mean()) / a.std()
    zb = (b - b.mean()) / b.std()
    np.testing.assert_allclose(z, za + zb)
    with pytest.raises(ValueError, match="at least two"):
        rrf_fusion(a)


def test_sentences_tile_text_and_hold_answer():
    text = "Paris is big. It has 2 million people! Is it old? Yes. the end"
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["Paris is big.", "It has 2 million people!", "Is it old?",
                                             "Yes. the end"]
    rows = [{"context": text, "answer_starts": [text.index("2 million")], "title": "A", "answers": ["2 million"]},
            {"context": "One. Two.", "answer_starts": [5], "title": "B", "answers": ["Two"]}]
    sents, gold, titles = xquad_sentences(rows)
    assert gold == [1, 5] and sents[gold[1]] == "Two." and titles == ["A"] * 4 + ["B"] * 2


def test_split_by_article_keeps_articles_whole():
    rows = [{"title": t, "id": i} for i, t in enumerate("aabbccddeeff")]
    train, test = split_by_article(rows, test_fraction=1 / 3, seed=0)
    assert len(train) + len(test) == len(rows)
    assert not {r["title"] for r in train} & {r["title"] for r in test}
    assert len({r["title"] for r in test}) == 2
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_article(rows, test_fraction=1.5)


def test_hard_negative_is_best_non_gold():
    s = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.1]])
    assert hard_negatives(s, [0, 1]) == [1, 0]


def test_faiss_matches_numpy_topk():
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(200, 16)).astype(np.float32)
    qs = rng.normal(size=(30, 16)).astype(np.float32)
    scores, ids = exact_search(docs, qs, k=5)
    ref = np.argsort(-(qs @ docs.T), axis=1)[:, :5]
    assert (ids == ref).all()
    np.testing.assert_allclose(scores, np.take_along_axis(qs @ docs.T, ref, 1), rtol=1e-5)
    with pytest.raises(ValueError, match="k must be"):
        exact_search(docs, qs, k=0)


def test_dpr_step_is_info_nce_with_hard_negatives():
    from cl_toolkit.models import Encoder

    torch.manual_seed(0)
    enc = Encoder.tiny(pooling="mean", mlp=False).eval()
    batch = [("who is a", "a is b", "c is d"), ("where is x", "x is here", "y is there"), ("q", "p", "n")]
    loss = DPR(temperature=0.05).step(enc, batch)
    q = enc.encode([b[0] for b in batch])
    p = enc.encode([b[1] for b in batch])
    n = enc.encode([b[2] for b in batch])
    # by hand: row i of [q p^T | q n^T] / tau, target i
    cos = torch.nn.functional.normalize
    logits = torch.cat([cos(q, dim=1) @ cos(p, dim=1).T, cos(q, dim=1) @ cos(n, dim=1).T], 1) / 0.05
    ref = -torch.log_softmax(logits.double(), 1).diagonal().mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert DPR().step(enc, [b[:2] for b in batch]).item() == pytest.approx(info_nce(q, p, 0.05).item(), rel=1e-5)


def test_dpr_cached_loss_matches_plain_loss_and_gradients():
    from cl_toolkit.models import Encoder

    enc = Encoder.tiny(pooling="mean", mlp=False, seed=0).eval()  # no dropout: both see one network
    batch = [(f"question {i} about w{i}", f"w{i} is answer {i}", f"other w{i + 1}") for i in range(6)]
    grads = []
    for recipe in (DPR(), DPR(chunk_size=2)):
        enc.zero_grad()
        loss = recipe.step(enc, batch)
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in enc.parameters() if p.grad is not None]))
    (plain, g_plain), (cached, g_cached) = grads
    assert cached == pytest.approx(plain, rel=1e-5)
    assert len(g_plain) == len(g_cached) > 0
    for a, b in zip(g_plain, g_cached):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_freeze_lower_layers_trains_only_the_top():
    from cl_toolkit.models import Encoder

    enc = Encoder.tiny(layers=3, pooling="mean", mlp=False, seed=0)
    enc.freeze_lower_layers(1)
    trained = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trained and all(".layer.2." in n for n in trained)
    DPR().step(enc, [("a b", "b c"), ("d e", "e f")]).backward()
    assert all((p.grad is not None) == p.requires_grad for p in enc.parameters())
    with pytest.raises(ValueError, match="train_layers"):
        enc.freeze_lower_layers(4)


def test_adapter_dpr_starts_at_identity_and_learns():
    from cl_toolkit.retrieval import AdapterDPR
    from cl_toolkit.run import run

    g = torch.Generator().manual_seed(0)
    # a question and its passage share a random "topic" in dims 0-3; dims 4-11 are loud noise
    topics = torch.randn(64, 4, generator=g)
    noise = lambda: 3 * torch.randn(64, 8, generator=g)  # noqa: E731
    q, p = torch.cat([topics, noise()], 1), torch.cat([topics, noise()], 1)
    recipe = AdapterDPR(dim=12, steps=150, batch_size=32, lr=0.05)
    start = recipe.build_model()
    torch.testing.assert_close(start(q), q)
    assert recipe.step(start, recipe.collate(list(zip(q, p)))).item() == pytest.approx(
        info_nce(q, p, 0.05).item(), rel=1e-6)
    before = retrieval_metrics((q @ p.T).numpy(), range(64))["R@1"]
    w = run(recipe, data=list(zip(q, p))).model
    with torch.no_grad():
        after = retrieval_metrics((w(q) @ w(p).T).numpy(), range(64))["R@1"]
    assert after > before + 0.2
