"""GloVe: co-occurrence counts and the loss against naive loops; the recipe through run()."""

import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from cl_toolkit.glove import CooccurrenceBatches, GloVe, GloVeRecipe, cooccurrence, glove_loss, glove_weight
from cl_toolkit.run import run


def _naive_cooccurrence(ids, sent, window, n):
    X = defaultdict(float)
    for i in range(len(ids)):
        for j in range(max(0, i - window), min(len(ids), i + window + 1)):
            if j != i and sent[i] == sent[j] and ids[i] < n and ids[j] < n:
                X[ids[i], ids[j]] += 1.0 / abs(i - j)
    return X


@pytest.mark.parametrize("max_vocab", [None, 12])
def test_cooccurrence_matches_a_naive_loop(max_vocab):
    rng = np.random.default_rng(0)
    ids, sent = rng.integers(0, 20, 400), np.sort(rng.integers(0, 30, 400))
    X = cooccurrence(ids, sent, 20, window=4, max_vocab=max_vocab)
    n = 20 if max_vocab is None else max_vocab
    assert X.shape == (n, n)
    naive = _naive_cooccurrence(ids.tolist(), sent.tolist(), 4, n)
    dense = X.toarray()
    assert len(naive) == X.nnz
    assert all(math.isclose(dense[i, j], v) for (i, j), v in naive.items())
    assert np.allclose(dense, dense.T)  # symmetric window


def test_glove_weight():
    x = torch.tensor([1.0, 50.0, 100.0, 1e4])
    assert torch.allclose(glove_weight(x), torch.tensor([0.01**0.75, 0.5**0.75, 1.0, 1.0]))


def test_glove_loss_matches_a_naive_loop_and_checks_inputs():
    g = torch.Generator().manual_seed(0)
    w, wt = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    b, bt = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    x = torch.tensor([0.5, 3.0, 99.0, 150.0, 1.0], dtype=torch.float64)
    naive = sum(min(1.0, (x[i] / 100) ** 0.75) * (float(w[i] @ wt[i]) + b[i] + bt[i] - math.log(x[i])) ** 2
                for i in range(5)) / 5
    assert float(glove_loss(w, wt, b, bt, x)) == pytest.approx(float(naive), rel=1e-12)
    with pytest.raises(ValueError, match="must be > 0"):
        glove_loss(w, wt, b, bt, torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"b_tilde must be \(5,\)"):
        glove_loss(w, wt, b, bt[:3], x)


def test_batches_cover_every_entry_once_per_epoch():
    from scipy.sparse import csr_matrix

    X = csr_matrix(np.array([[0, 2.0, 0], [2.0, 0, 1.0], [0, 1.0, 5.0]]))
    batches = CooccurrenceBatches(X, batch_size=2, seed=0)
    seen = [(int(i), int(j), float(v)) for bi, bj, bx in batches for i, j, v in zip(bi, bj, bx)]
    assert sorted(seen) == [(0, 1, 2.0), (1, 0, 2.0), (1, 2, 1.0), (2, 1, 1.0), (2, 2, 5.0)]
    assert batches.batches_per_epoch() == 3


def test_glove_recipe_trains_through_run():
    recipe = GloVeRecipe(dim=8, max_sentences=1500, max_vocab=500, steps=40, batch_size=2048, seed=0)
    result = run(recipe)
    losses = result.result.losses
    assert len(losses) == 40 and np.mean(losses[-5:]) < np.mean(losses[:5])
    assert isinstance(result.model, GloVe) and result.model.w.weight.shape == (500, 8)
    assert len(recipe.word_vectors(result.model)) == 500
