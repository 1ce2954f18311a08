"""Evaluation as SimCSE does it: Spearman ×100 of cosine similarity against gold.

STS12–16 use SimCSE's ``all`` aggregation: the subsets of a year are
concatenated and one Spearman correlation is computed over all of them (SentEval's
default ``wmean`` instead averages per-subset correlations weighted by size;
the two differ because a pooled correlation also rewards getting the *relative*
scale of different subsets right).

Every sentence is encoded whole, as SimCSE's evaluation does (padding, no
truncation): a cl_toolkit :class:`~cl_toolkit.models.Encoder` is run at its full
input length (:func:`~cl_toolkit.models.full_length`) whatever ``max_length`` it
was trained with, so a score does not depend on the training length. A
``SentenceTransformer`` keeps its own ``max_seq_length``.

Alignment and uniformity use STS-B *dev* by default (:func:`alignment_uniformity`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from .data import STS_TASKS, STSPairs, load_sts, load_stsb
from .losses import align_loss, uniform_loss
from .models import Encoder, full_length

__all__ = [
    "SupportsEncode",
    "CachedEncoder",
    "alignment_uniformity",
    "at_full_length",
    "embed",
    "format_table",
    "spearman_cosine",
    "sts",
    "sts_table",
    "sts_wmean",
]


class SupportsEncode(Protocol):
    def encode(self, sentences: Sequence[str], batch_size: int = ...): ...


@contextmanager
def at_full_length(encoder: SupportsEncode) -> Iterator[SupportsEncode]:
    """Within the block, a cl_toolkit ``Encoder`` truncates at its full input length.

    ``encoder.max_length`` (the training length, 32 in SimCSE's recipe) is restored
    on exit, also after an error. Any other object passes through unchanged.
    """
    if not isinstance(encoder, Encoder):
        yield encoder
        return
    trained = encoder.max_length
    encoder.max_length = full_length(encoder)
    try:
        yield encoder
    finally:
        encoder.max_length = trained


def embed(encoder: SupportsEncode, sentences: Sequence[str], batch_size: int = 128) -> torch.Tensor:
    """Encode whole sentences with a cl_toolkit ``Encoder`` (at its full length) or a
    ``SentenceTransformer``; float32 ``[n, d]``."""
    with at_full_length(encoder):
        out = encoder.encode(list(sentences), batch_size=batch_size)
    return torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out).float().cpu()


def _pair_embeddings(encoder: SupportsEncode, pairs: STSPairs, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    unique = pairs.sentences()
    index = {s: i for i, s in enumerate(unique)}
    emb = embed(encoder, unique, batch_size)  # [U, d]
    a = emb[torch.tensor([index[s] for s in pairs.sentences1])]
    b = emb[torch.tensor([index[s] for s in pairs.sentences2])]
    return a, b


def spearman_cosine(encoder: SupportsEncode, pairs: STSPairs, batch_size: int = 128) -> float:
    """Spearman ×100 between cosine similarity and gold scores over ``pairs``."""
    if len(pairs) < 2:
        raise ValueError("need at least 2 scored pairs for a correlation")
    a, b = _pair_embeddings(encoder, pairs, batch_size)
    cos = F.cosine_similarity(a, b, dim=-1).numpy()
    return float(spearmanr(cos, np.asarray(pairs.scores)).correlation * 100)


def sts(encoder: SupportsEncode, name: str = "stsb", split: str = "test", batch_size: int = 128) -> float:
    """Spearman ×100 on one STS task (:data:`cl_toolkit.data.STS_TASKS`), ``all`` aggregation."""
    if name not in STS_TASKS:
        raise ValueError(f"unknown STS task {name!r}; choose one of {STS_TASKS}")
    return spearman_cosine(encoder, load_sts(name, split), batch_size)


def sts_wmean(encoder: SupportsEncode, name: str, batch_size: int = 128) -> float:
    """SentEval's ``wmean`` for STS12–16: per-subset Spearman averaged, weighted by subset size."""
    pairs = load_sts(name, "test")
    total, acc = 0, 0.0
    for subset in dict.fromkeys(pairs.subsets):
        part = pairs.subset(subset)
        acc += spearman_cosine(encoder, part, batch_size) * len(part)
        total += len(part)
    return acc / total


def sts_table(encoder: SupportsEncode, tasks: Sequence[str] = STS_TASKS, batch_size: int = 128) -> dict[str, float]:
    """Spearman ×100 on each task plus their average (key ``avg``), SimCSE's 7-task table."""
    scores = {task: sts(encoder, task, "test", batch_size) for task in tasks}
    scores["avg"] = float(np.mean(list(scores.values())))
    return scores


def format_table(rows: dict[str, dict[str, float]], tasks: Sequence[str] | None = None) -> str:
    """Rows of ``{task: score}`` as a fixed-width text table with 2 decimals."""
    if not rows:
        return ""
    tasks = list(tasks or next(iter(rows.values())).keys())
    width = max(len(name) for name in rows) + 2
    header = "model".ljust(width) + "".join(t.upper().rjust(8) for t in tasks)
    lines = [header, "-" * len(header)]
    for name, scores in rows.items():
        cells = "".join((f"{scores[t]:8.2f}" if t in scores and scores[t] is not None else "       -") for t in tasks)
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)


def alignment_uniformity(
    encoder: SupportsEncode, split: str = "dev", threshold: float = 4.0, batch_size: int = 128
) -> tuple[float, float]:
    """(alignment, uniformity) on STS-B, as SimCSE computes them (Gao et al. 2021, §3, footnote 3).

    Alignment: :func:`~cl_toolkit.losses.align_loss` over the pairs with gold score
    > ``threshold`` (positive pairs). Uniformity: :func:`~cl_toolkit.losses.uniform_loss`
    over all distinct sentences of the split. Lower is better for both. SimCSE's
    footnote says "STS-B pairs" without naming a split; the default here is the
    development split (1,500 pairs), so that the analysis never touches test data.
    """
    pairs = load_stsb(split)
    a, b = _pair_embeddings(encoder, pairs, batch_size)
    pos = torch.tensor([s > threshold for s in pairs.scores])
    if pos.sum() < 1:
        raise ValueError(f"no pair with gold score > {threshold}")
    everything = embed(encoder, pairs.sentences(), batch_size)
    return float(align_loss(a[pos], b[pos])), float(uniform_loss(everything))


class CachedEncoder:
    """Wrap an encoder so that each distinct sentence is encoded once.

    Evaluations that see the same sentences again (Spearman, then alignment and
    uniformity, then a table) reuse the stored vectors. Only for a frozen encoder:
    the cache does not know when weights change.
    """

    def __init__(self, encoder: SupportsEncode, batch_size: int = 128):
        self.encoder = encoder
        self.batch_size = batch_size
        self._cache: dict[str, torch.Tensor] = {}

    def encode(self, sentences: Sequence[str], batch_size: int | None = None, **kwargs) -> torch.Tensor:
        sentences = list(sentences)
        missing = list(dict.fromkeys(s for s in sentences if s not in self._cache))
        if missing:
            emb = embed(self.encoder, missing, batch_size or self.batch_size)
            self._cache.update(zip(missing, emb))
        if not sentences:
            return torch.empty(0)
        out = torch.stack([self._cache[s] for s in sentences])
        return F.normalize(out, dim=-1) if kwargs.get("normalize") else out

    def __len__(self) -> int:
        return len(self._cache)
