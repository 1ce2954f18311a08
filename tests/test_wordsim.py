"""Word-similarity evaluation, against scipy and hand-made vectors."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cl_toolkit.wordsim import WordVectors, analogy, nearest_neighbours, rankdata, spearman, word_similarity


@pytest.mark.parametrize(
    "x, y",
    [
        ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]),
        ([1, 1, 2, 2, 3, 3], [3, 1, 2, 2, 1, 3]),  # ties on both sides
        ([0.1, -4, 2.5, 2.5, 7, 0.1, 3], [1, 2, 3, 4, 5, 6, 7]),
        (list(np.random.default_rng(0).normal(size=50)), list(np.random.default_rng(1).integers(0, 5, size=50))),
    ],
)
def test_spearman_matches_scipy(x, y):
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_errors_name_the_problem():
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="constant"):
        spearman([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        spearman([1], [1])


def _vectors():
    words = ["cat", "dog", "car", "truck", "banana"]
    vecs = torch.tensor([[1.0, 0.1, 0.0], [0.9, 0.3, 0.0], [0.0, 1.0, 0.2], [0.1, 0.9, 0.4], [0.2, -0.5, 1.0]])
    return WordVectors(words, vecs)


def test_word_similarity_on_hand_made_pairs_matches_scipy():
    wv = _vectors()
    pairs = [("cat", "dog", 9.0), ("Car", "TRUCK", 8.0), ("cat", "car", 2.0), ("dog", "banana", 1.0),
             ("banana", "truck", 1.5), ("cat", "unicorn", 5.0), ("dog", "truck", 3.0)]
    result = word_similarity(wv, pairs)
    assert (result.covered, result.total) == (6, 7)  # "unicorn" is out of vocabulary, "Car" is lower-cased
    covered = [p for p in pairs if p[1] != "unicorn"]
    unit = torch.nn.functional.normalize(wv.vectors, dim=-1).numpy()
    cos = [float(unit[wv.index[a.lower()]] @ unit[wv.index[b.lower()]]) for a, b, _ in covered]
    assert result.spearman == pytest.approx(100 * spearmanr(cos, [s for *_, s in covered]).statistic, abs=1e-9)


def test_word_similarity_with_nothing_covered_is_nan():
    result = word_similarity(_vectors(), [("x", "y", 1.0), ("y", "z", 2.0)])
    assert result.covered == 0 and np.isnan(result.spearman)


def test_nearest_neighbours_exclude_the_word_and_sort_by_cosine():
    nn = nearest_neighbours(_vectors(), "cat", k=2)
    assert [w for w, _ in nn] == ["dog", "truck"]
    assert nn[0][1] >= nn[1][1]


def test_analogy_3cosadd():
    words = ["man", "woman", "king", "queen", "apple"]
    g, r, f = torch.eye(3)  # gender, royalty, fruit directions
    vecs = torch.stack([g * 0 + 0.1 * f, g, r, r + g, f])
    vecs[0] = torch.tensor([0.0, 0.0, 0.1])
    wv = WordVectors(words, vecs)
    assert analogy(wv, "man", "woman", "king") == ["queen"]
    with pytest.raises(KeyError, match="prince"):
        analogy(wv, "man", "woman", "prince")


def test_word_vectors_check_their_input():
    with pytest.raises(ValueError, match="one vector row per word"):
        WordVectors(["a", "b"], torch.zeros(3, 2))
    with pytest.raises(ValueError, match="distinct"):
        WordVectors(["a", "a"], torch.zeros(2, 2))
    with pytest.raises(KeyError, match="not in the vocabulary"):
        _vectors()["zebra"]
