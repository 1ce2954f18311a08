"""Skip-gram with negative sampling (word2vec) and its InfoNCE form.

The pieces of Mikolov et al. (2013), each a function you can read on its own:

* :func:`tokenize`, :class:`Vocab`, :func:`encode_corpus` — words to ids;
* :func:`noise_distribution` — the unigram distribution raised to the power 3/4;
* :func:`keep_probabilities` — subsampling of frequent words;
* :class:`PairSampler` — (centre, context) pairs from a dynamic window, vectorised,
  plus the negatives drawn from the noise distribution;
* :func:`sgns_loss` — the logistic (negative-sampling) loss, and
  :func:`sgns_infonce_loss` — the same scores under a softmax over the positive
  and its k negatives, i.e. InfoNCE with k + 1 candidates;
* :class:`SkipGram` — two sparse embedding tables, whose optimiser is SparseAdam;
* :func:`load_corpus` — a tokenised corpus from :func:`cl_toolkit.data.load_text_corpus`;
* :class:`SGNS` — the recipe that trains it all through :func:`cl_toolkit.run.run`.

GloVe, which has no negatives at all, lives in :mod:`cl_toolkit.glove`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import TEXT_SOURCES, load_text_corpus
from .run import Recipe
from .wordsim import WordVectors

__all__ = [
    "TOKEN_PATTERN",
    "tokenize",
    "Vocab",
    "encode_corpus",
    "noise_distribution",
    "keep_probabilities",
    "PairSampler",
    "sgns_loss",
    "sgns_infonce_loss",
    "SkipGram",
    "Corpus",
    "load_corpus",
    "SGNS",
]

TOKEN_PATTERN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: ``"Don't stop!"`` -> ``['don', 't', 'stop']``."""
    return TOKEN_PATTERN.findall(text.lower())


@dataclass
class Vocab:
    """Words sorted by count (most frequent first, ties alphabetically) and their counts."""

    words: list[str]
    counts: np.ndarray  # (V,) int64

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("words must be distinct")
        if len(self.counts) != len(self.words):
            raise ValueError(f"counts has {len(self.counts)} entries for {len(self.words)} words")

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 5, max_size: int | None = None) -> "Vocab":
        """The words seen at least ``min_count`` times, at most ``max_size`` of them (the most frequent)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counter = Counter(w for s in sentences for w in s)
        items = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
        if max_size is not None:
            items = items[:max_size]
        if not items:
            raise ValueError(f"no word occurs {min_count} times or more; lower min_count")
        return cls([w for w, _ in items], np.array([c for _, c in items], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index


def encode_corpus(sentences: Iterable[Sequence[str]], vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the in-vocabulary words, flat, and the sentence id of each token.

    Out-of-vocabulary words are dropped before any window is drawn, as in word2vec.c and gensim.
    Returns ``(ids, sentence_ids)``, both ``(N,)`` int64.
    """
    ids: list[int] = []
    sent: list[int] = []
    index = vocab.index
    for k, sentence in enumerate(sentences):
        row = [index[w] for w in sentence if w in index]
        ids += row
        sent += [k] * len(row)
    return np.asarray(ids, dtype=np.int64), np.asarray(sent, dtype=np.int64)


def noise_distribution(counts: np.ndarray | Sequence[int], power: float = 0.75) -> np.ndarray:
    r"""The negative-sampling distribution $P_n(w) \propto \mathrm{count}(w)^{\alpha}$, $\alpha = 3/4$.

    $\alpha = 1$ is the unigram distribution, $\alpha = 0$ the uniform one (Mikolov et al. 2013b).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) == 0 or (counts <= 0).any():
        raise ValueError("counts must be a non-empty 1-D array of positive counts")
    p = counts**power
    return p / p.sum()


def keep_probabilities(counts: np.ndarray | Sequence[int], sample: float | None = 1e-3) -> np.ndarray:
    r"""The probability of keeping each occurrence of a word when subsampling frequent words.

    With $f(w)$ the word's share of the tokens and $t$ = ``sample``, word2vec.c (and gensim) keep a
    token with probability $\min\bigl(1, (\sqrt{f/t} + 1)\, t/f\bigr)$; the paper's formula
    discards it with probability $1 - \sqrt{t/f}$ — the same shape, the code's being a little
    gentler. ``sample=None`` or ``0`` keeps everything.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if not sample:
        return np.ones_like(counts)
    if sample < 0:
        raise ValueError(f"sample must be >= 0 (0 or None: no subsampling), got {sample}")
    f = counts / counts.sum()
    return np.minimum(1.0, (np.sqrt(f / sample) + 1.0) * sample / f)


class PairSampler:
    """(centre, context) pairs for one epoch, and negatives from the noise distribution.

    Per epoch, each token is kept with its :func:`keep_probabilities` (subsampling), then every
    kept token gets a window radius ``b`` drawn uniformly from ``1..window`` (word2vec's dynamic
    window, which weights near neighbours more) and is paired with the kept tokens of its own
    sentence at distance ``<= b``. The whole epoch is built with one NumPy pass per offset and
    shuffled, so iterating yields ``(centre, context, negatives)`` LongTensor batches of shapes
    ``(B,)``, ``(B,)`` and ``(B, k)``. Negatives are drawn by inverse-CDF sampling of the noise
    distribution (they may, as in word2vec, coincide with the context word).

    Iterating again starts the next epoch; everything is a function of ``seed`` and the epoch.
    """

    def __init__(
        self,
        ids: np.ndarray,
        sentence_ids: np.ndarray,
        counts: np.ndarray,
        *,
        window: int = 5,
        negatives: int = 5,
        batch_size: int = 4096,
        sample: float | None = 1e-3,
        power: float = 0.75,
        dynamic_window: bool = True,
        seed: int = 0,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if negatives < 1:
            raise ValueError(f"negatives must be >= 1 (use k = 1 or more noise words), got {negatives}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ids = np.asarray(ids, dtype=np.int64)
        sentence_ids = np.asarray(sentence_ids, dtype=np.int64)
        if ids.shape != sentence_ids.shape:
            raise ValueError(f"ids {ids.shape} and sentence_ids {sentence_ids.shape} must have the same shape")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(counts)):
            raise ValueError(f"ids must lie in [0, {len(counts)}) (the vocabulary size)")
        self.ids, self.sentence_ids = ids, sentence_ids
        self.window, self.negatives, self.batch_size = window, negatives, batch_size
        self.dynamic_window, self.seed, self.epoch = dynamic_window, seed, 0
        self.keep = keep_probabilities(counts, sample)
        self.noise = noise_distribution(counts, power)
        self._cdf = torch.from_numpy(np.cumsum(self.noise))
        self._cdf[-1] = 1.0 + 1e-9  # no draw falls past the last word

    def pairs(self, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """All (centre, context) id pairs of one epoch, shuffled: two ``(P,)`` int64 arrays."""
        rng = np.random.default_rng([self.seed, epoch])
        kept = rng.random(len(self.ids)) < self.keep[self.ids]
        tok, sent = self.ids[kept], self.sentence_ids[kept]
        n = len(tok)
        radius = rng.integers(1, self.window + 1, size=n) if self.dynamic_window else np.full(n, self.window)
        centres, contexts = [], []
        for o in range(1, self.window + 1):
            same = sent[:-o] == sent[o:]  # token i and token i + o share a sentence
            right = same & (radius[:-o] >= o)  # centre i, context i + o
            left = same & (radius[o:] >= o)  # centre i + o, context i
            centres += [tok[:-o][right], tok[o:][left]]
            contexts += [tok[o:][right], tok[:-o][left]]
        c, x = np.concatenate(centres), np.concatenate(contexts)
        order = rng.permutation(len(c))
        return c[order], x[order]

    def sample_negatives(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """Word ids drawn from the noise distribution, by inverse CDF."""
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        return torch.searchsorted(self._cdf, u)

    def batches_per_epoch(self) -> int:
        """Batches per epoch, expected (the pair count varies a little with the subsampling draw)."""
        return max(1, -(-self.expected_pairs() // self.batch_size))

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (the training loop calls this before each epoch)."""
        self.epoch = epoch

    def expected_pairs(self) -> int:
        """The expected number of pairs per epoch (ignoring sentence ends)."""
        kept = float(self.keep[self.ids].sum())
        mean_radius = (self.window + 1) / 2 if self.dynamic_window else self.window
        return int(2 * kept * mean_radius)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        centres, contexts = (torch.from_numpy(a) for a in self.pairs(epoch))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        for start in range(0, len(centres), self.batch_size):
            c = centres[start : start + self.batch_size]
            yield c, contexts[start : start + self.batch_size], self.sample_negatives((len(c), self.negatives), gen)


def _check_triplet(center: Tensor, context: Tensor, negatives: Tensor) -> None:
    if center.dim() != 2 or context.shape != center.shape:
        raise ValueError(f"center and context must both be (B, d); got {tuple(center.shape)} and {tuple(context.shape)}")
    if negatives.dim() != 3 or negatives.shape[0] != center.shape[0] or negatives.shape[2] != center.shape[1]:
        raise ValueError(f"negatives must be (B, k, d) = ({center.shape[0]}, k, {center.shape[1]}); got {tuple(negatives.shape)}")


def sgns_loss(center: Tensor, context: Tensor, negatives: Tensor) -> Tensor:
    r"""Skip-gram negative-sampling loss (Mikolov et al. 2013b), averaged over the batch.

    $$\mathcal{L} = -\log\sigma(u_o^\top v_c) - \sum_{i=1}^{k} \log\sigma(-u_{n_i}^\top v_c),$$

    with $v_c$ the centre word's input vector, $u_o$ the context word's output vector and
    $u_{n_i}$ the output vectors of $k$ words drawn from the noise distribution. It is logistic
    regression telling the observed pair from $k$ noise pairs — noise-contrastive estimation
    (Gutmann & Hyvärinen 2010) with the noise term of the logit dropped.

    Shapes: ``center`` (B, d), ``context`` (B, d), ``negatives`` (B, k, d); returns a scalar.
    """
    _check_triplet(center, context, negatives)
    pos = (center * context).sum(-1)  # (B,)
    neg = (negatives * center.unsqueeze(1)).sum(-1)  # (B, k); faster than bmm on CPU
    return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()


def sgns_infonce_loss(center: Tensor, context: Tensor, negatives: Tensor, temperature: float = 1.0) -> Tensor:
    r"""The same scores under a softmax: InfoNCE with the positive and $k$ negatives (k + 1 candidates).

    $$\mathcal{L} = -\log \frac{\exp(u_o^\top v_c/\tau)}{\exp(u_o^\top v_c/\tau) + \sum_{i=1}^{k} \exp(u_{n_i}^\top v_c/\tau)}$$

    (van den Oord et al. 2018, with word2vec's dot products as scores; $\tau = 1$ by default).
    Shapes: ``center`` (B, d), ``context`` (B, d), ``negatives`` (B, k, d); returns a scalar.
    """
    _check_triplet(center, context, negatives)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    pos = (center * context).sum(-1, keepdim=True)  # (B, 1)
    neg = (negatives * center.unsqueeze(1)).sum(-1)  # (B, k); faster than bmm on CPU
    logits = torch.cat([pos, neg], dim=1) / temperature  # (B, 1 + k), the positive in column 0
    return F.cross_entropy(logits, torch.zeros(len(center), dtype=torch.long, device=center.device))


class SkipGram(nn.Module):
    """Input (centre) and output (context) embedding tables, both sparse.

    Initialised as word2vec.c does: input vectors uniform in $\\pm 0.5/d$, output vectors zero.
    Train with :meth:`configure_optimizer` (SparseAdam: only the rows a batch touches are updated).
    The word vectors are the input table, :attr:`vectors`.
    """

    def __init__(self, vocab_size: int, dim: int = 100, seed: int = 0) -> None:
        super().__init__()
        if vocab_size < 2 or dim < 1:
            raise ValueError(f"need vocab_size >= 2 and dim >= 1, got {vocab_size} and {dim}")
        self.inp = nn.Embedding(vocab_size, dim, sparse=True)
        self.out = nn.Embedding(vocab_size, dim, sparse=True)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.inp.weight.uniform_(-0.5 / dim, 0.5 / dim, generator=gen)
            self.out.weight.zero_()

    def forward(self, centre: Tensor, context: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Ids (B,), (B,), (B, k) -> vectors (B, d), (B, d), (B, k, d).

        Each distinct output row is looked up once and then indexed: the same vectors as
        ``self.out(context)``, ``self.out(negatives)``, but the sparse gradient holds one row per
        distinct word instead of one per occurrence, which makes SparseAdam's step several times
        cheaper for large batches.
        """
        B, k = negatives.shape
        uniq, inv = torch.unique(torch.cat([context, negatives.reshape(-1)]), return_inverse=True)
        rows = self.out(uniq)  # (U, d)
        return self.inp(centre), rows[inv[:B]], rows[inv[B:]].view(B, k, -1)

    def configure_optimizer(self, lr: float = 1e-3) -> torch.optim.Optimizer:
        return torch.optim.SparseAdam(list(self.parameters()), lr=lr)

    @property
    def vectors(self) -> Tensor:
        return self.inp.weight.detach()


@dataclass
class Corpus:
    """A tokenised corpus: its vocabulary and the in-vocabulary token ids with their sentence ids."""

    vocab: Vocab
    ids: np.ndarray  # (N,) int64
    sentence_ids: np.ndarray  # (N,) int64
    sentences: int

    @property
    def tokens(self) -> int:
        return len(self.ids)

    def __str__(self) -> str:
        return f"{self.sentences:,} sentences, {self.tokens:,} in-vocabulary tokens, {len(self.vocab):,} words"

    def token_lists(self) -> list[list[str]]:
        """The in-vocabulary words of each non-empty sentence (e.g. to feed gensim the same text)."""
        cuts = np.flatnonzero(np.diff(self.sentence_ids)) + 1
        words = self.vocab.words
        return [[words[i] for i in part] for part in np.split(self.ids, cuts) if len(part)]


@lru_cache(maxsize=4)
def load_corpus(sources: tuple[str, ...] = TEXT_SOURCES, min_count: int = 5, max_sentences: int | None = None) -> Corpus:
    """:func:`cl_toolkit.data.load_text_corpus`, tokenised (:func:`tokenize`), with a vocabulary.

    ``max_sentences`` keeps the first that many texts. Cached: recipes that share the arguments
    share the corpus.
    """
    texts = load_text_corpus(tuple(sources))
    if max_sentences is not None:
        texts = texts[:max_sentences]
    sentences = [tokenize(t) for t in texts]
    vocab = Vocab.build(sentences, min_count=min_count)
    ids, sentence_ids = encode_corpus(sentences, vocab)
    return Corpus(vocab, ids, sentence_ids, len(sentences))


@dataclass
class SGNS(Recipe):
    """Skip-gram word vectors with negative sampling (``loss="sgns"``) or its InfoNCE form (``"infonce"``).

    ==========  ==========================================================================
    data        a text corpus (:func:`load_corpus` of ``sources``), turned into (centre,
                context) pairs by :class:`PairSampler` each epoch
    batch       ``(centre (B,), context (B,), negatives (B, k))`` word ids
    model       :class:`SkipGram`: two sparse embedding tables, SparseAdam
    schedule    the learning rate decays linearly to 0, as in word2vec.c
    ==========  ==========================================================================

    ``steps=None`` trains ``epochs`` passes over the pairs (the expected number of batches).
    Defaults are the paper's (Mikolov et al. 2013b): window 5, k = 5 negatives, noise
    distribution to the power 3/4, subsampling threshold ``1e-3`` (gensim's default; the
    paper used 1e-5 on a corpus a thousand times larger).
    The quick profile (one epoch) raises the learning rate to 3e-2: a single pass at 1e-2 leaves
    rare words barely trained.
    Related: :func:`cl_toolkit.losses.info_nce` (InfoNCE with in-batch negatives) and
    :class:`cl_toolkit.glove.GloVeRecipe` (no negatives at all).
    """

    dim: int = 100
    window: int = 5
    negatives: int = 5
    sample: float | None = 1e-3
    power: float = 0.75
    dynamic_window: bool = True
    loss: str = "sgns"
    temperature: float = 1.0
    min_count: int = 5
    sources: tuple[str, ...] = TEXT_SOURCES
    max_sentences: int | None = None
    steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 4096
    lr: float = 1e-2
    max_grad_norm: float | None = None

    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(dim=50, epochs=1.0, batch_size=4096, lr=3e-2),
        "full": dict(dim=300, epochs=5.0, batch_size=4096, negatives=10),
    }
    name: ClassVar[str] = "sgns"

    def __post_init__(self) -> None:
        if self.loss not in ("sgns", "infonce"):
            raise ValueError(f"loss must be 'sgns' or 'infonce', got {self.loss!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    def corpus(self) -> Corpus:
        return load_corpus(tuple(self.sources), self.min_count, self.max_sentences)

    def load_data(self) -> PairSampler:
        c = self.corpus()
        return PairSampler(
            c.ids, c.sentence_ids, c.vocab.counts, window=self.window, negatives=self.negatives,
            batch_size=self.batch_size, sample=self.sample, power=self.power,
            dynamic_window=self.dynamic_window, seed=self.seed,
        )

    def build_model(self) -> SkipGram:
        return SkipGram(len(self.corpus().vocab), self.dim, seed=self.seed)

    def configure_optimizers(self, model: SkipGram) -> torch.optim.Optimizer:
        return model.configure_optimizer(self.lr)

    def step(self, model: SkipGram, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        device = model.inp.weight.device
        centre, context, negatives = model(*(t.to(device) for t in batch))
        if self.loss == "sgns":
            return sgns_loss(centre, context, negatives)
        return sgns_infonce_loss(centre, context, negatives, self.temperature)

    def train_config(self, n_examples: int | None, out_dir: str | None = None, **overrides: Any):
        if self.steps is None:  # epochs over the pairs, which the data's length does not give
            overrides.setdefault("steps", max(1, round(self.epochs * self.load_data().batches_per_epoch())))
        return super().train_config(n_examples or 0, out_dir, **overrides)

    def word_vectors(self, model: SkipGram) -> WordVectors:
        """The trained input vectors with their words."""
        return WordVectors(self.corpus().vocab.words, model.vectors)
