"""GloVe (Pennington et al. 2014): weighted least squares on log co-occurrence counts.

* :func:`cooccurrence` — the symmetric, distance-weighted co-occurrence matrix $X$ (sparse);
* :func:`glove_weight` — the weighting $f(x) = \\min(1, (x/x_{\\max})^{\\alpha})$;
* :func:`glove_loss` — the objective on one batch of non-zero entries;
* :class:`GloVe` — the two sparse tables and their biases, optimised with sparse Adagrad;
* :class:`CooccurrenceBatches` — the non-zero entries of $X$, shuffled per epoch, in batches;
* :class:`GloVeRecipe` — the recipe that trains it through :func:`cl_toolkit.run.run`.

There are no negatives: every term is a regression of a dot product onto an observed count.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from .data import TEXT_SOURCES
from .run import Recipe
from .word2vec import load_corpus
from .wordsim import WordVectors

# torch's Adagrad warns on every sparse step that it skips invariant checks (its own tensors are valid).
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

__all__ = ["cooccurrence", "glove_weight", "glove_loss", "GloVe", "CooccurrenceBatches", "GloVeRecipe"]


def cooccurrence(ids: np.ndarray, sentence_ids: np.ndarray, vocab_size: int, window: int = 10, max_vocab: int | None = None):
    """$X_{ij} = \\sum 1/\\text{distance}$ over occurrences of word $j$ within ``window`` words of $i$.

    Symmetric (left and right context both count), within sentences, on the token ids of
    :func:`cl_toolkit.word2vec.encode_corpus`, as GloVe's ``cooccur`` tool computes it with
    ``symmetric=1``. Only words with id ``< max_vocab`` (the most frequent ones) get a row and a
    column; the distances are those of the full token stream. Returns a ``scipy.sparse.csr_matrix``
    of shape ``(n, n)``, ``n = min(vocab_size, max_vocab)``.
    """
    from scipy.sparse import coo_matrix

    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    ids, sentence_ids = np.asarray(ids, dtype=np.int64), np.asarray(sentence_ids, dtype=np.int64)
    if ids.shape != sentence_ids.shape:
        raise ValueError(f"ids {ids.shape} and sentence_ids {sentence_ids.shape} must have the same shape")
    n = vocab_size if max_vocab is None else min(vocab_size, max_vocab)
    rows, cols, vals = [], [], []
    for o in range(1, window + 1):
        a, b = ids[:-o], ids[o:]
        keep = (sentence_ids[:-o] == sentence_ids[o:]) & (a < n) & (b < n)
        a, b = a[keep], b[keep]
        w = np.full(len(a), 1.0 / o)
        rows += [a, b]
        cols += [b, a]
        vals += [w, w]
    X = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return X.tocsr()  # sums duplicate entries


def glove_weight(x: Tensor, x_max: float = 100.0, alpha: float = 0.75) -> Tensor:
    r"""$f(x) = (x/x_{\max})^{\alpha}$ for $x < x_{\max}$, else 1 (the paper's $x_{\max}=100$, $\alpha=3/4$)."""
    return torch.clamp(x / x_max, max=1.0) ** alpha


def glove_loss(
    w: Tensor, w_tilde: Tensor, b: Tensor, b_tilde: Tensor, x: Tensor, x_max: float = 100.0, alpha: float = 0.75
) -> Tensor:
    r"""GloVe's weighted least-squares objective (Pennington et al. 2014), averaged over the batch.

    $$J = \sum_{i,j:\,X_{ij}>0} f(X_{ij})\,\bigl(w_i^\top \tilde w_j + b_i + \tilde b_j - \log X_{ij}\bigr)^2$$

    — a regression onto log counts, with no negative examples and no contrast between candidates.
    (The paper sums over all non-zero entries; the mean over a batch differs by a constant factor,
    which Adagrad, the paper's optimiser, does not see.)

    Shapes: ``w``, ``w_tilde`` (B, d); ``b``, ``b_tilde``, ``x`` (B,) with ``x > 0``; returns a scalar.
    """
    if w.dim() != 2 or w_tilde.shape != w.shape:
        raise ValueError(f"w and w_tilde must both be (B, d); got {tuple(w.shape)} and {tuple(w_tilde.shape)}")
    for name, t in (("b", b), ("b_tilde", b_tilde), ("x", x)):
        if t.shape != (w.shape[0],):
            raise ValueError(f"{name} must be ({w.shape[0]},), got {tuple(t.shape)}")
    if (x <= 0).any():
        raise ValueError("x holds co-occurrence counts and must be > 0 (log 0 is undefined): pass only non-zero entries")
    diff = (w * w_tilde).sum(-1) + b + b_tilde - torch.log(x)  # (B,)
    return (glove_weight(x, x_max, alpha) * diff**2).mean()


class GloVe(nn.Module):
    """Word vectors $W$, context vectors $\\tilde W$ and their biases, as sparse tables.

    Initialised as glove.c does, uniform in $\\pm 0.5/d$ (biases too). The word vectors reported
    are $W + \\tilde W$, the paper's choice (:attr:`vectors`).
    """

    def __init__(self, vocab_size: int, dim: int = 100, seed: int = 0) -> None:
        super().__init__()
        if vocab_size < 2 or dim < 1:
            raise ValueError(f"need vocab_size >= 2 and dim >= 1, got {vocab_size} and {dim}")
        self.w = nn.Embedding(vocab_size, dim, sparse=True)
        self.w_tilde = nn.Embedding(vocab_size, dim, sparse=True)
        self.b = nn.Embedding(vocab_size, 1, sparse=True)
        self.b_tilde = nn.Embedding(vocab_size, 1, sparse=True)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-0.5 / dim, 0.5 / dim, generator=gen)

    def forward(self, i: Tensor, j: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Row ids (B,), column ids (B,) -> $w_i$, $\\tilde w_j$ (B, d), $b_i$, $\\tilde b_j$ (B,)."""
        return self.w(i), self.w_tilde(j), self.b(i).squeeze(-1), self.b_tilde(j).squeeze(-1)

    def configure_optimizer(self, lr: float = 0.05) -> torch.optim.Optimizer:
        """Adagrad, as in the paper (initial learning rate 0.05); it accepts sparse gradients."""
        return torch.optim.Adagrad(list(self.parameters()), lr=lr)

    @property
    def vectors(self) -> Tensor:
        return (self.w.weight + self.w_tilde.weight).detach()


class CooccurrenceBatches:
    """The non-zero entries ``(i, j, X_ij)`` of a sparse matrix, reshuffled each epoch, in batches.

    Iterating yields ``(i, j, x)`` with shapes ``(B,)``, ``(B,)``, ``(B,)`` (float32 counts).
    """

    def __init__(self, X, batch_size: int = 4096, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        coo = X.tocoo()
        self.i = torch.from_numpy(coo.row.astype(np.int64))
        self.j = torch.from_numpy(coo.col.astype(np.int64))
        self.x = torch.from_numpy(coo.data.astype(np.float32))
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def batches_per_epoch(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (the training loop calls this before each epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.x), generator=gen)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.i[idx], self.j[idx], self.x[idx]


@lru_cache(maxsize=2)
def _corpus_cooccurrence(sources: tuple[str, ...], min_count: int, max_sentences: int | None, window: int, max_vocab: int | None):
    c = load_corpus(sources, min_count, max_sentences)
    return cooccurrence(c.ids, c.sentence_ids, len(c.vocab), window=window, max_vocab=max_vocab)


@dataclass
class GloVeRecipe(Recipe):
    """GloVe word vectors (Pennington et al. 2014) on the corpus of :func:`cl_toolkit.word2vec.load_corpus`.

    ==========  ==========================================================================
    data        the non-zero entries of the co-occurrence matrix (:func:`cooccurrence`,
                symmetric window, weights 1/distance), shuffled each epoch
    batch       ``(i (B,), j (B,), X_ij (B,))``
    model       :class:`GloVe`: $W$, $\\tilde W$ and biases as sparse tables, Adagrad
    ==========  ==========================================================================

    Defaults are the paper's: window 10, $x_{\\max} = 100$, $\\alpha = 3/4$, Adagrad with
    learning rate 0.05, vectors $W + \\tilde W$; ``steps=None`` trains ``epochs`` passes over
    the non-zero entries (the paper: 50 for vectors under 300 dimensions, 100 otherwise).
    The quick profile raises the learning rate to 0.25: in a batch, a word's row gets one summed
    update where the paper's per-entry Adagrad gives it one per entry, and five epochs at 0.05 leave
    the vectors far from trained.
    Related: :class:`cl_toolkit.word2vec.SGNS`, which contrasts each pair with sampled noise words.
    """

    dim: int = 100
    window: int = 10
    x_max: float = 100.0
    alpha: float = 0.75
    max_vocab: int | None = None
    min_count: int = 5
    sources: tuple[str, ...] = TEXT_SOURCES
    max_sentences: int | None = None
    steps: int | None = None
    epochs: float = 50.0
    batch_size: int = 16384
    lr: float = 0.05
    max_grad_norm: float | None = None

    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(dim=50, epochs=5.0, lr=0.25),
        "full": dict(dim=300, epochs=50.0, batch_size=65536),
    }
    name: ClassVar[str] = "glove"

    def corpus(self):
        return load_corpus(tuple(self.sources), self.min_count, self.max_sentences)

    def cooccurrence(self):
        return _corpus_cooccurrence(tuple(self.sources), self.min_count, self.max_sentences, self.window, self.max_vocab)

    def load_data(self) -> CooccurrenceBatches:
        return CooccurrenceBatches(self.cooccurrence(), self.batch_size, seed=self.seed)

    def build_model(self) -> GloVe:
        return GloVe(self.cooccurrence().shape[0], self.dim, seed=self.seed)

    def configure_optimizers(self, model: GloVe) -> torch.optim.Optimizer:
        return model.configure_optimizer(self.lr)

    def step(self, model: GloVe, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        device = model.w.weight.device
        i, j, x = (t.to(device) for t in batch)
        return glove_loss(*model(i, j), x, self.x_max, self.alpha)

    def train_config(self, n_examples: int | None, out_dir: str | None = None, **overrides: Any):
        if self.steps is None:  # epochs over the non-zero entries
            overrides.setdefault("steps", max(1, round(self.epochs * self.load_data().batches_per_epoch())))
        return super().train_config(n_examples or 0, out_dir, **overrides)

    def word_vectors(self, model: GloVe) -> WordVectors:
        """$W + \\tilde W$ with their words (the first ``max_vocab`` words of the vocabulary)."""
        words = self.corpus().vocab.words[: self.cooccurrence().shape[0]]
        return WordVectors(words, model.vectors)
