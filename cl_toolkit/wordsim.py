"""Word vectors and how they are judged: word similarity, nearest neighbours, analogies.

* :class:`WordVectors` — a word list and a (V, d) matrix; built from any source (a trained
  table, gensim's ``KeyedVectors``, an encoder run on isolated words).
* :func:`spearman` — Spearman's rank correlation (average ranks for ties).
* :func:`word_similarity` — Spearman ×100 between cosine similarities and human scores on
  the pairs whose two words are in the vocabulary, with how many pairs that is.
* :func:`nearest_neighbours`, :func:`analogy` (3CosAdd, Mikolov et al. 2013c).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "WordVectors",
    "SimilarityResult",
    "rankdata",
    "spearman",
    "word_similarity",
    "nearest_neighbours",
    "analogy",
]


class WordVectors:
    """Words and their vectors; rows are unit-normalised once, for cosine look-ups."""

    def __init__(self, words: Sequence[str], vectors: Tensor | np.ndarray) -> None:
        vectors = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, Tensor) else vectors)
        vectors = vectors.detach().float().cpu()
        if vectors.dim() != 2 or len(words) != len(vectors):
            raise ValueError(f"need one vector row per word: {len(words)} words, vectors of shape {tuple(vectors.shape)}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("words must be distinct")
        self.vectors = vectors
        self.unit = F.normalize(vectors, dim=-1)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> Tensor:
        if word not in self.index:
            raise KeyError(f"{word!r} is not in the vocabulary ({len(self)} words)")
        return self.vectors[self.index[word]]

    def cosine(self, a: str, b: str) -> float:
        return float(self.unit[self.index[a]] @ self.unit[self.index[b]])


@dataclass
class SimilarityResult:
    spearman: float  # ×100, on the covered pairs
    covered: int  # pairs with both words in the vocabulary
    total: int

    def __str__(self) -> str:
        return f"{self.spearman:.1f} ({self.covered}/{self.total} pairs)"


def rankdata(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the average of their ranks."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1 .. end
            start = end
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the (tie-averaged) ranks."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"need at least 2 pairs, got {len(x)}")
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    if denom == 0:
        raise ValueError("one of the inputs is constant: Spearman's rho is undefined")
    return float((rx * ry).sum() / denom)


def word_similarity(vectors: WordVectors, pairs: Iterable[tuple[str, str, float]]) -> SimilarityResult:
    """Spearman ×100 of cosine similarity against the gold scores, on the pairs the vocabulary covers.

    Words are looked up lower-cased. Pairs with a missing word are left out (not scored as 0), so
    always report :attr:`SimilarityResult.covered` with the score.
    """
    pairs = list(pairs)
    got, gold = [], []
    for w1, w2, score in pairs:
        w1, w2 = w1.lower(), w2.lower()
        if w1 in vectors and w2 in vectors:
            got.append(vectors.cosine(w1, w2))
            gold.append(float(score))
    rho = 100 * spearman(got, gold) if len(got) >= 2 else float("nan")
    return SimilarityResult(rho, len(got), len(pairs))


def nearest_neighbours(vectors: WordVectors, word: str, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` words of highest cosine similarity to ``word``, itself excluded."""
    if word not in vectors:
        raise KeyError(f"{word!r} is not in the vocabulary ({len(vectors)} words)")
    sims = vectors.unit @ vectors.unit[vectors.index[word]]  # (V,)
    sims[vectors.index[word]] = -float("inf")
    top = torch.topk(sims, min(k, len(vectors) - 1))
    return [(vectors.words[i], float(s)) for s, i in zip(top.values, top.indices)]


def analogy(vectors: WordVectors, a: str, b: str, c: str, k: int = 1) -> list[str]:
    """``a : b :: c : ?`` by 3CosAdd: the words nearest to $\\hat b - \\hat a + \\hat c$, a, b and c excluded."""
    for w in (a, b, c):
        if w not in vectors:
            raise KeyError(f"{w!r} is not in the vocabulary")
    u, i = vectors.unit, vectors.index
    sims = u @ F.normalize(u[i[b]] - u[i[a]] + u[i[c]], dim=0)
    sims[[i[a], i[b], i[c]]] = -float("inf")
    return [vectors.words[j] for j in torch.topk(sims, k).indices]
