"""Skip-gram with negative sampling: the losses against naive loops, word2vec.c and gensim."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cl_toolkit.run import run
from cl_toolkit.word2vec import (
    SGNS,
    PairSampler,
    SkipGram,
    Vocab,
    encode_corpus,
    keep_probabilities,
    noise_distribution,
    sgns_infonce_loss,
    sgns_loss,
    tokenize,
)


def _triplet(B=6, k=4, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    c, o, n = (torch.randn(s, generator=g, dtype=dtype) for s in ((B, d), (B, d), (B, k, d)))
    return c.requires_grad_(), o.requires_grad_(), n.requires_grad_()


def _naive_sgns(c, o, n):
    """The paper's objective, one pair at a time."""
    c, o, n = (t.detach() for t in (c, o, n))
    sig = lambda x: 1 / (1 + math.exp(-x))
    total = 0.0
    for b in range(len(c)):
        total -= math.log(sig(float(c[b] @ o[b])))
        for i in range(n.shape[1]):
            total -= math.log(sig(-float(c[b] @ n[b, i])))
    return total / len(c)


def _naive_infonce(c, o, n):
    c, o, n = (t.detach() for t in (c, o, n))
    total = 0.0
    for b in range(len(c)):
        scores = [float(c[b] @ o[b])] + [float(c[b] @ n[b, i]) for i in range(n.shape[1])]
        total -= scores[0] - math.log(sum(math.exp(s) for s in scores))
    return total / len(c)


def test_sgns_loss_matches_a_per_pair_loop():
    c, o, n = _triplet()
    assert float(sgns_loss(c, o, n).detach()) == pytest.approx(_naive_sgns(c, o, n), rel=1e-12)


def test_sgns_gradient_is_word2vec_c_update_rule():
    # word2vec.c: g = (label - sigmoid(f)); the input vector moves by g * u, each output vector by g * v.
    c, o, n = _triplet()
    sgns_loss(c, o, n).backward()
    B = len(c)
    pos = torch.sigmoid((c * o).sum(-1, keepdim=True)).detach()  # (B, 1)
    neg = torch.sigmoid(torch.einsum("bkd,bd->bk", n, c)).detach()  # (B, k)
    dc = -(1 - pos) * o.detach() + torch.einsum("bk,bkd->bd", neg, n.detach())
    assert torch.allclose(c.grad, dc / B, atol=1e-12)
    assert torch.allclose(o.grad, -(1 - pos) * c.detach() / B, atol=1e-12)
    assert torch.allclose(n.grad, neg.unsqueeze(-1) * c.detach().unsqueeze(1) / B, atol=1e-12)


def test_infonce_variant_matches_a_per_pair_loop_and_its_gradient():
    c, o, n = _triplet(seed=1)
    loss = sgns_infonce_loss(c, o, n)
    assert float(loss.detach()) == pytest.approx(_naive_infonce(c, o, n), rel=1e-12)
    # gradient against autograd through an independent expression (log-softmax by hand)
    c2, o2, n2 = (t.detach().clone().requires_grad_() for t in (c, o, n))
    logits = torch.cat([(c2 * o2).sum(-1, keepdim=True), torch.einsum("bkd,bd->bk", n2, c2)], 1)
    (-(logits[:, 0] - torch.logsumexp(logits, 1)).mean()).backward()
    loss.backward()
    for a, b in ((c, c2), (o, o2), (n, n2)):
        assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_with_one_negative_infonce_is_logistic_on_the_score_difference():
    c, o, n = _triplet(k=1, seed=2)
    diff = (c * o).sum(-1) - (c * n[:, 0]).sum(-1)
    assert torch.allclose(sgns_infonce_loss(c, o, n), -F.logsigmoid(diff).mean())
    # ... which is not the SGNS loss (that one scores each candidate on its own)
    assert not torch.allclose(sgns_infonce_loss(c, o, n), sgns_loss(c, o, n))


def test_losses_check_shapes_and_temperature():
    c, o, n = _triplet()
    with pytest.raises(ValueError, match=r"negatives must be \(B, k, d\)"):
        sgns_loss(c, o, n[:3])
    with pytest.raises(ValueError, match="center and context"):
        sgns_infonce_loss(c, o[:, :2], n)
    with pytest.raises(ValueError, match="temperature must be positive"):
        sgns_infonce_loss(c, o, n, temperature=0.0)


def test_skipgram_forward_equals_plain_lookups():
    model = SkipGram(50, 8, seed=0)
    with torch.no_grad():
        model.out.weight.normal_()
    c, x, n = torch.tensor([1, 2, 3]), torch.tensor([4, 4, 7]), torch.tensor([[4, 9], [1, 1], [7, 0]])
    v, u, un = model(c, x, n)
    assert torch.equal(v, model.inp.weight[c]) and torch.equal(u, model.out.weight[x]) and torch.equal(un, model.out.weight[n])
    sgns_loss(v, u, un).backward()
    assert model.out.weight.grad.is_sparse  # SparseAdam's input


def test_noise_distribution_powers():
    counts = np.array([8, 4, 2, 1])
    assert np.allclose(noise_distribution(counts, 1.0), counts / 15)
    assert np.allclose(noise_distribution(counts, 0.0), 0.25)
    p = noise_distribution(counts)
    assert p.sum() == pytest.approx(1.0) and np.allclose(p, counts**0.75 / (counts**0.75).sum())
    with pytest.raises(ValueError, match="positive counts"):
        noise_distribution([3, 0])


def _gensim_corpus():
    words = [f"w{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    p = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    return [[words[a], words[b]] for a, b in rng.choice(6, size=(20_000, 2), p=p) if a != b]


def test_keep_probabilities_match_gensim():
    gensim = pytest.importorskip("gensim")
    sentences = [s for s in _gensim_corpus()] + [["rare", "word"]] * 3
    model = gensim.models.Word2Vec(vector_size=4, min_count=1, sample=1e-2, workers=1)
    model.build_vocab(sentences)
    counts = np.array([model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key])
    theirs = np.array([model.wv.get_vecattr(w, "sample_int") for w in model.wv.index_to_key]) / 2**32
    assert np.allclose(keep_probabilities(counts, 1e-2), theirs, atol=1e-9)
    assert keep_probabilities(counts, None).tolist() == [1.0] * len(counts)


_exact_log_sigmoid = F.logsigmoid


def _gensim_log_sigmoid(x):
    """log sigmoid as gensim's word2vec_inner.pyx reads it from LOG_TABLE.

    The table holds log sigmoid((2 i / 1000 - 1) * 6) for i < 1000, and the index is
    int((x + 6) * (1000 / 6 / 2)) in C integer arithmetic, i.e. int((x + 6) * 83).
    """
    i = torch.floor((x + 6) * 83)
    return _exact_log_sigmoid((2 * i / 1000 - 1) * 6)


@pytest.mark.parametrize("power, should_match", [(0.75, True), (1.0, False)])
def test_sgns_loss_is_gensims_objective_on_fixed_vectors(power, should_match, monkeypatch):
    """gensim's running loss on frozen vectors equals the expectation of sgns_loss over its negatives.

    Two-word sentences, window 1, no subsampling: every sentence gives the pairs (a, b) and (b, a).
    Input vectors are locked, the learning rate is ~0, so gensim only *measures* its loss. It skips a
    negative equal to the target word, so the expectation leaves that word out. gensim reads
    log sigmoid from a table (a bias of ~2 % here), so sgns_loss is evaluated with that table in
    place of F.logsigmoid. The control (power 1: the wrong noise distribution) shows that the
    comparison can fail.
    """
    gensim = pytest.importorskip("gensim")
    monkeypatch.setattr(F, "logsigmoid", _gensim_log_sigmoid)
    sentences = _gensim_corpus()
    k, d = 3, 4
    model = gensim.models.Word2Vec(vector_size=d, window=1, min_count=1, sample=0, sg=1, hs=0, negative=k,
                                   ns_exponent=0.75, workers=1, seed=0, alpha=1e-10, min_alpha=1e-10)
    model.build_vocab(sentences)
    V = len(model.wv)
    g = torch.Generator().manual_seed(0)
    inp, out = (0.4 * torch.randn(V, d, generator=g, dtype=torch.float64) for _ in range(2))
    model.wv.vectors[:] = inp.numpy()
    model.syn1neg[:] = out.numpy()
    model.wv.vectors_lockf = np.zeros(V, dtype=np.float32)  # input vectors frozen
    model.train(sentences, total_examples=len(sentences), epochs=1, compute_loss=True,
                start_alpha=1e-10, end_alpha=1e-10)
    pairs = [(model.wv.key_to_index[a], model.wv.key_to_index[b]) for s in sentences for a, b in (s, s[::-1])]
    gensim_per_pair = model.get_latest_training_loss() / len(pairs)

    counts = np.array([model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key])
    noise = torch.from_numpy(noise_distribution(counts, power))
    expected = 0.0
    for (ci, oi), m in Counter(pairs).items():  # centre = input vector, context = output vector
        v, u = inp[ci : ci + 1], out[oi : oi + 1]
        pos = sgns_loss(v, u, torch.zeros(1, 0, d, dtype=torch.float64))
        neg = torch.stack([sgns_loss(v, u, out[n].view(1, 1, d)) - pos for n in range(V)])  # softplus(u_n . v)
        mask = torch.ones(V, dtype=torch.bool)
        mask[oi] = False  # gensim skips a negative equal to the target
        expected += m * float(pos + k * (noise[mask] * neg[mask]).sum())
    expected /= len(pairs)
    assert (abs(gensim_per_pair - expected) / expected < 0.006) == should_match, (gensim_per_pair, expected)


def test_vocab_and_encoding():
    sentences = [tokenize("The cat sat. The cat ran!"), tokenize("A dog ran.")]
    vocab = Vocab.build(sentences, min_count=2)
    assert vocab.words == ["cat", "ran", "the"] and vocab.counts.tolist() == [2, 2, 2]
    ids, sent = encode_corpus(sentences, vocab)
    assert ids.tolist() == [2, 0, 2, 0, 1, 1] and sent.tolist() == [0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="lower min_count"):
        Vocab.build(sentences, min_count=10)


def _naive_pairs(ids, sent, window):
    out = Counter()
    for i in range(len(ids)):
        for j in range(max(0, i - window), min(len(ids), i + window + 1)):
            if j != i and sent[i] == sent[j]:
                out[ids[i], ids[j]] += 1
    return out


def test_pair_sampler_gives_the_naive_window_pairs():
    rng = np.random.default_rng(0)
    ids, sent = rng.integers(0, 30, 500), np.sort(rng.integers(0, 40, 500))
    counts = np.bincount(ids, minlength=30) + 1
    sampler = PairSampler(ids, sent, counts, window=3, sample=None, dynamic_window=False, seed=0)
    c, x = sampler.pairs(0)
    assert Counter(zip(c.tolist(), x.tolist())) == _naive_pairs(ids.tolist(), sent.tolist(), 3)


def test_pair_sampler_dynamic_window_and_subsampling():
    rng = np.random.default_rng(1)
    ids, sent = rng.integers(0, 30, 5000), np.repeat(np.arange(100), 50)
    counts = np.bincount(ids, minlength=30)
    full = sum(_naive_pairs(ids.tolist(), sent.tolist(), 5).values())
    dyn = PairSampler(ids, sent, counts, window=5, sample=None, seed=0)
    c, x = dyn.pairs(0)
    # a radius uniform in 1..5 keeps on average (5 + 1) / 2 of the 5 offsets on each side
    assert len(c) / full == pytest.approx(3 / 5, rel=0.03)
    assert set(zip(c.tolist(), x.tolist())) <= set(_naive_pairs(ids.tolist(), sent.tolist(), 5))
    assert not np.array_equal(dyn.pairs(1)[0], c)  # a new draw per epoch
    assert np.array_equal(PairSampler(ids, sent, counts, window=5, sample=None, seed=0).pairs(0)[0], c)


def test_pair_sampler_negatives_follow_the_noise_distribution():
    counts = np.array([1000, 300, 100, 10, 1])
    sampler = PairSampler(np.arange(5), np.zeros(5, dtype=int), counts, negatives=5, seed=0)
    draws = sampler.sample_negatives((200_000,), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    assert torch.allclose(freq, torch.from_numpy(sampler.noise), atol=3e-3)


def test_pair_sampler_batches_and_errors():
    ids, sent = np.arange(20) % 7, np.zeros(20, dtype=int)
    sampler = PairSampler(ids, sent, np.full(7, 3), window=2, negatives=3, batch_size=8, sample=None)
    batches = list(sampler)
    assert all(c.shape == x.shape and n.shape == (len(c), 3) for c, x, n in batches)
    assert sum(len(c) for c, _, _ in batches) == len(sampler.pairs(0)[0])
    with pytest.raises(ValueError, match="window must be >= 1"):
        PairSampler(ids, sent, np.full(7, 3), window=0)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\)"):
        PairSampler(ids, sent, np.full(5, 3))


def test_sgns_recipe_trains_through_run():
    recipe = SGNS(dim=16, max_sentences=2000, steps=30, batch_size=1024, lr=1e-2, seed=0)
    result = run(recipe)
    losses = result.result.losses
    assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5])
    wv = recipe.word_vectors(result.model)
    assert len(wv) == len(recipe.corpus().vocab) and "the" in wv
    with pytest.raises(ValueError, match="loss must be 'sgns' or 'infonce'"):
        SGNS(loss="nce")
