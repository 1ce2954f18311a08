"""Retrieval for question answering: BM25, dense retrieval (DPR), fusion and metrics.

* :func:`xquad_sentences` turns XQuAD's paragraphs into a sentence corpus whose gold
  for a question is the sentence that holds the answer span;
  :func:`split_by_article` splits questions by Wikipedia article, never by question.
* :class:`BM25` wraps ``rank_bm25.BM25Okapi`` (Robertson & Zaragoza 2009) with one tokenizer.
* :func:`retrieval_metrics` gives Recall@k and MRR from a ``[Q, N]`` score matrix;
  :func:`rrf_fusion` and :func:`zscore_fusion` combine rankers.
* :class:`DPR` is the recipe of dense passage retrieval (Karpukhin et al. 2020): a
  bi-encoder trained with in-batch negatives, optionally + one BM25 hard negative,
  optionally through the cached loss (GradCache) and with the lower layers frozen.
  :class:`AdapterDPR` is the same loss on frozen, cached vectors (a linear map is trained).
* :func:`exact_search` is exact inner-product top-k with ``faiss.IndexFlatIP``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from torch import nn

from .losses import cached_info_nce, info_nce
from .models import MINILM, Encoder
from .run import Recipe

__all__ = [
    "split_sentences",
    "xquad_sentences",
    "split_by_article",
    "tokenize",
    "BM25",
    "gold_ranks",
    "retrieval_metrics",
    "rrf_fusion",
    "zscore_fusion",
    "hard_negatives",
    "DPR",
    "AdapterDPR",
    "dense_scores",
    "exact_search",
]

_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"\w+")


# --------------------------------------------------------------------------- corpus
def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``.

    A sentence ends at ``.``, ``!`` or ``?`` followed by white space and an upper-case
    letter, a digit or an opening quote/bracket. Crude (``U.S. Army`` splits), but
    the spans tile the text, so every answer offset falls in exactly one sentence.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    spans, start = [], 0
    for m in _SENT_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if e > s]


def xquad_sentences(rows: Sequence[dict]) -> tuple[list[str], list[int], list[str]]:
    """The sentence-level retrieval task over the paragraphs of ``rows``.

    Returns ``(sentences, gold, titles)``: every sentence of every distinct paragraph
    (in order of first appearance), for each question the index of the sentence that
    holds its first answer's start offset, and each sentence's article title.
    """
    if not rows:
        raise ValueError("rows is empty; pass load_xquad_en() or a subset of it")
    sentences: list[str] = []
    titles: list[str] = []
    para_spans: dict[str, tuple[int, list[tuple[int, int]]]] = {}
    gold: list[int] = []
    for r in rows:
        ctx = r["context"]
        if ctx not in para_spans:
            spans = split_sentences(ctx)
            para_spans[ctx] = (len(sentences), spans)
            sentences += [ctx[s:e] for s, e in spans]
            titles += [r["title"]] * len(spans)
        first, spans = para_spans[ctx]
        start = r["answer_starts"][0]
        idx = next((i for i, (s, e) in enumerate(spans) if start < e), len(spans) - 1)
        gold.append(first + idx)
    return sentences, gold, titles


def split_by_article(rows: Sequence[dict], test_fraction: float = 1 / 3, seed: int = 0):
    """``(train_rows, test_rows)``: whole articles (``title``) go to one side only."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    titles = sorted({r["title"] for r in rows})
    if len(titles) < 2:
        raise ValueError(f"need at least 2 articles to split, got {len(titles)}")
    random.Random(seed).shuffle(titles)
    n_test = max(1, round(test_fraction * len(titles)))
    test = set(titles[:n_test])
    return [r for r in rows if r["title"] not in test], [r for r in rows if r["title"] in test]


# --------------------------------------------------------------------------- BM25
def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``), the tokenizer BM25 uses here."""
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 (Robertson & Zaragoza 2009) over a list of documents, via ``rank_bm25``.

    .. math::

        s(q, d) = \\sum_{t \\in q} \\mathrm{idf}(t)\\,
            \\frac{f(t, d)(k_1 + 1)}{f(t, d) + k_1 (1 - b + b\\,|d| / \\overline{|d|})},
        \\qquad \\mathrm{idf}(t) = \\log\\frac{N - n_t + 0.5}{n_t + 0.5}
    """

    def __init__(self, documents: Sequence[str], k1: float = 1.5, b: float = 0.75):
        from rank_bm25 import BM25Okapi

        if not documents:
            raise ValueError("documents is empty; BM25 needs a corpus")
        self.bm25 = BM25Okapi([tokenize(d) for d in documents], k1=k1, b=b)
        self.n = len(documents)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """BM25 scores ``[Q, N]`` of every document for every query."""
        if isinstance(queries, str):
            raise ValueError("scores expects a list of queries, got a single string")
        return np.stack([self.bm25.get_scores(tokenize(q)) for q in queries]).astype(np.float64)


# --------------------------------------------------------------------------- metrics, fusion
def gold_ranks(scores: np.ndarray, gold: Sequence[int]) -> np.ndarray:
    """1-based rank of the gold document per query; ties count against the gold."""
    scores = np.asarray(scores)
    gold = np.asarray(gold)
    if scores.ndim != 2 or scores.shape[0] != len(gold):
        raise ValueError(f"scores must have shape [Q={len(gold)}, N], got {scores.shape}")
    g = scores[np.arange(len(gold)), gold][:, None]
    return 1 + (scores > g).sum(1) + ((scores == g).sum(1) - 1)


def retrieval_metrics(scores: np.ndarray, gold: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k (the gold is among the top ``k``) and MRR (mean of 1/rank)."""
    r = gold_ranks(scores, gold)
    out = {f"R@{k}": float((r <= k).mean()) for k in ks}
    out["MRR"] = float((1.0 / r).mean())
    return out


def _ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def rrf_fusion(*score_matrices: np.ndarray, k: float = 60.0) -> np.ndarray:
    """Reciprocal-rank fusion (Cormack et al. 2009): :math:`\\sum_m 1/(k + \\mathrm{rank}_m)`."""
    if len(score_matrices) < 2:
        raise ValueError("rrf_fusion needs at least two score matrices")
    return sum(1.0 / (k + _ranks(np.asarray(s))) for s in score_matrices)


def zscore_fusion(*score_matrices: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Sum of per-query standardised scores (each row to mean 0, std 1), optionally weighted."""
    if len(score_matrices) < 2:
        raise ValueError("zscore_fusion needs at least two score matrices")
    weights = weights or [1.0] * len(score_matrices)
    out = 0.0
    for w, s in zip(weights, score_matrices):
        s = np.asarray(s, dtype=np.float64)
        out = out + w * (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-12)
    return out


# --------------------------------------------------------------------------- DPR
def hard_negatives(bm25_scores: np.ndarray, gold: Sequence[int]) -> list[int]:
    """Per query, the highest-scoring BM25 document that is not its gold (DPR's hard negative)."""
    s = np.array(bm25_scores, dtype=np.float64, copy=True)
    s[np.arange(len(gold)), np.asarray(gold)] = -np.inf
    return [int(i) for i in s.argmax(1)]


@dataclass
class DPR(Recipe):
    """Dense passage retrieval (Karpukhin et al. 2020) as a recipe.

    | input (``data``) | positive | negatives |
    |---|---|---|
    | ``(question, gold passage)`` | the gold | every other gold in the batch |
    | ``(question, gold, hard negative)`` | the gold | other golds + every hard negative in the batch |

    The loss is :func:`~cl_toolkit.losses.info_nce` on mean-pooled MiniLM vectors
    (one shared encoder for questions and passages; DPR used two). Relations:
    ``MultipleNegativesRankingLoss`` of sentence-transformers is the same loss at
    ``scale = 1/temperature = 20``; supervised SimCSE is the same with NLI triplets.

    ``chunk_size``: compute the loss with :func:`~cl_toolkit.losses.cached_info_nce`
    (same gradients, activation memory of one chunk: for batches that do not fit).
    ``train_layers``: train only the top ``train_layers`` transformer layers (the
    embeddings and the layers below are frozen and get no backward pass).
    """

    model: str = MINILM
    max_length: int = 64
    temperature: float = 0.05
    steps: int | None = 30
    batch_size: int = 16
    lr: float = 2e-5
    warmup_steps: int = 3
    chunk_size: int | None = None
    train_layers: int | None = None

    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"steps": 20}, "full": {"steps": 100}}
    name: ClassVar[str] = "dpr"

    def build_model(self) -> Encoder:
        enc = Encoder.from_pretrained(self.model, pooling="mean", mlp=False, max_length=self.max_length)
        if self.train_layers is not None:
            enc.freeze_lower_layers(self.train_layers)
        return enc

    def load_data(self) -> list:
        raise ValueError("DPR has no default data: pass data=[(question, passage[, hard negative]), ...] to run()")

    def step(self, model: Encoder, batch: Sequence[tuple[str, ...]]):
        cols = list(zip(*batch))  # questions, passages[, hard negatives]

        def encode(texts):  # [n, d]
            return model(model.tokenize(list(texts)))

        if self.chunk_size is not None:
            neg = cols[2] if len(cols) > 2 else None
            return cached_info_nce(encode, cols[0], cols[1], self.temperature, negatives=neg,
                                   chunk_size=self.chunk_size)
        q, p, *n = (encode(col) for col in cols)
        return info_nce(q, p, self.temperature, negatives=n[0] if n else None)


@dataclass
class AdapterDPR(Recipe):
    """DPR's loss on frozen, precomputed vectors: only a linear map, started at the identity, is trained.

    | input (``data``) | positive | negatives |
    |---|---|---|
    | ``(question vector, gold vector[, hard negative vector])`` | the gold | as in :class:`DPR` |

    Every step costs a few matrix products, so batch sizes and seeds can be swept on a
    CPU; what it cannot do is change the encoder's features, only re-weight them.
    """

    dim: int = 384
    temperature: float = 0.05
    steps: int | None = 100
    batch_size: int = 16
    lr: float = 1e-3

    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {}}
    name: ClassVar[str] = "adapter_dpr"

    def build_model(self) -> nn.Module:
        linear = nn.Linear(self.dim, self.dim, bias=False)
        nn.init.eye_(linear.weight)
        return linear

    def load_data(self):
        raise ValueError("pass data=[(question vector, gold vector[, hard negative vector]), ...] to run()")

    def collate(self, examples):
        return [torch.stack(col) for col in zip(*examples)]

    def step(self, model: nn.Module, batch):
        q, p, *n = (model(col) for col in batch)
        return info_nce(q, p, self.temperature, negatives=n[0] if n else None)


def dense_scores(encoder: Encoder, queries: Sequence[str], documents: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Cosine similarities ``[Q, N]`` between encoded queries and documents."""
    q = encoder.encode(queries, batch_size=batch_size, normalize=True)
    d = encoder.encode(documents, batch_size=batch_size, normalize=True)
    return (q @ d.T).numpy().astype(np.float64)


def exact_search(documents: np.ndarray | torch.Tensor, queries: np.ndarray | torch.Tensor, k: int = 10):
    """Exact inner-product top-``k`` with ``faiss.IndexFlatIP``: ``(scores [Q, k], ids [Q, k])``.

    Normalise the vectors first for cosine similarity.
    """
    import faiss

    docs = np.ascontiguousarray(np.asarray(documents, dtype=np.float32))
    qs = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
    if docs.ndim != 2 or qs.ndim != 2 or docs.shape[1] != qs.shape[1]:
        raise ValueError(f"documents [N, d] and queries [Q, d] must share d, got {docs.shape} and {qs.shape}")
    if not 1 <= k <= len(docs):
        raise ValueError(f"k must be in [1, {len(docs)}], got {k}")
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs)
    return index.search(qs, k)
