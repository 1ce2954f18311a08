"""Contrastive losses: InfoNCE, NT-Xent, SupCon, alignment and uniformity.

Every loss validates its input (``ValueError`` naming what is wrong) and computes
similarities and logits in float32, also under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_batch, check_matrix, check_pair, check_temperature
from .rng import RngSnapshot

__all__ = [
    "align_loss", "cached_info_nce", "cached_loss", "cosine_matrix", "info_nce", "info_nce_logits",
    "nt_xent", "supcon", "symmetric_info_nce", "uniform_loss",
]


def _no_autocast(x: Tensor):
    return torch.autocast(device_type=x.device.type, enabled=False)


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarities ``[N, M]`` between the rows of ``a`` ``[N, d]`` and ``b`` ``[M, d]``, in float32."""
    with _no_autocast(a):
        return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


# --------------------------------------------------------------------------- InfoNCE
def info_nce_logits(
    queries: Tensor,
    keys: Tensor,
    temperature: float = 0.05,
    negatives: Tensor | None = None,
    hard_negative_weight: float = 0.0,
) -> Tensor:
    """The logits ``[N, N + M]`` of :func:`info_nce`; the target of row ``i`` is column ``i``."""
    check_pair("queries", queries, "keys", keys)
    check_temperature(temperature)
    n, d = queries.shape
    check_batch(n)
    if hard_negative_weight and negatives is None:
        raise ValueError("hard_negative_weight needs row-aligned hard negatives of shape [N, d]; got negatives=None")
    with _no_autocast(queries):
        logits = cosine_matrix(queries, keys) / temperature  # [N, N]
        if negatives is not None:
            check_matrix("negatives", negatives)
            if negatives.shape[1] != d:
                raise ValueError(
                    f"negatives must have shape [M, {d}] to match the embedding size, got {tuple(negatives.shape)}"
                )
            neg = cosine_matrix(queries, negatives) / temperature  # [N, M]
            if hard_negative_weight:
                if negatives.shape[0] != n:
                    raise ValueError("hard_negative_weight needs row-aligned hard negatives of shape [N, d]")
                neg = neg + hard_negative_weight * torch.eye(n, device=neg.device, dtype=neg.dtype)
            logits = torch.cat([logits, neg], dim=1)  # [N, N + M]
    return logits


def info_nce(
    queries: Tensor,
    keys: Tensor,
    temperature: float = 0.05,
    negatives: Tensor | None = None,
    hard_negative_weight: float = 0.0,
) -> Tensor:
    r"""InfoNCE with in-batch negatives (van den Oord et al. 2018; SimCSE, Gao et al. 2021).

    .. math::

        \mathcal{L} = -\frac{1}{N}\sum_{i=1}^{N}
            \log \frac{e^{\cos(q_i, k_i)/\tau}}
                      {\sum_{j=1}^{N} e^{\cos(q_i, k_j)/\tau} + \sum_{m=1}^{M} e^{\cos(q_i, n_m)/\tau}}

    ``keys[i]`` is the positive of ``queries[i]``; every other key in the batch is a
    negative. ``negatives`` (shape ``[M, d]``) appends ``M`` extra columns that
    **every** query sees as negatives. One argument serves both common cases,
    because the arithmetic is the same:

    * hard negatives, row-aligned (``M == N``, ``negatives[i]`` mined for
      ``queries[i]``), as in supervised SimCSE and sentence-transformers'
      ``MultipleNegativesRankingLoss``: query ``i`` sees its own hard negative and
      the other rows' ones too;
    * a shared bank or MoCo queue of any size ``M``.

    ``hard_negative_weight`` (SimCSE's variant, needs ``M == N``) adds a constant
    to the logit of each query's own hard negative.

    Args:
        queries: ``[N, d]`` anchor embeddings.
        keys: ``[N, d]`` positive embeddings, row-aligned with ``queries``.
        temperature: ``τ > 0``; SimCSE uses 0.05.
        negatives: optional ``[M, d]`` extra negatives.
        hard_negative_weight: logit bonus on the row-aligned hard negatives.

    Returns:
        The mean loss, a float32 scalar.
    """
    logits = info_nce_logits(queries, keys, temperature, negatives, hard_negative_weight)
    targets = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, targets)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    r"""NT-Xent, SimCLR's symmetric loss over ``2N`` views (Chen et al. 2020).

    Stack the views into ``z = [z1; z2]`` (``2N`` rows). View ``a`` has exactly one
    positive, its partner ``p(a)``, and ``2N - 2`` negatives (every other view):

    .. math::

        \mathcal{L} = -\frac{1}{2N}\sum_{a=1}^{2N}
            \log \frac{e^{\cos(z_a, z_{p(a)})/\tau}}{\sum_{b \ne a} e^{\cos(z_a, z_b)/\tau}}

    Unlike :func:`info_nce`, the other views of the *same* side are negatives too.
    """
    check_pair("z1", z1, "z2", z2)
    check_temperature(temperature)
    n = z1.shape[0]
    check_batch(n)
    with _no_autocast(z1):
        z = torch.cat([z1, z2], dim=0)  # [2N, d]
        logits = cosine_matrix(z, z) / temperature  # [2N, 2N]
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(logits, targets)


def symmetric_info_nce(a: Tensor, b: Tensor, temperature: float = 0.07) -> Tensor:
    r"""CLIP's symmetric loss (Radford et al. 2021): the mean of InfoNCE in both directions.

    .. math:: \mathcal{L} = \tfrac12\big(\mathrm{InfoNCE}(a \to b) + \mathrm{InfoNCE}(b \to a)\big)
    """
    return 0.5 * (info_nce(a, b, temperature) + info_nce(b, a, temperature))


def supcon(features: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    r"""Supervised contrastive loss, :math:`\mathcal{L}^{sup}_{out}` (Khosla et al. 2020, eq. 2).

    Every other example with the same label is a positive:

    .. math::

        \mathcal{L} = \frac{1}{|I'|}\sum_{i \in I'} \frac{-1}{|P(i)|} \sum_{p \in P(i)}
            \log \frac{e^{\cos(z_i, z_p)/\tau}}{\sum_{a \ne i} e^{\cos(z_i, z_a)/\tau}}

    where :math:`P(i)` are the indices ``≠ i`` sharing ``i``'s label and :math:`I'`
    the anchors with at least one positive (anchors without one are skipped).

    Args:
        features: ``[N, d]`` embeddings, or ``[N, V, d]`` with ``V`` views each
            (flattened to ``N·V`` anchors, a view's label being its example's).
        labels: ``[N]`` integer labels.
        temperature: ``τ > 0``.
    """
    if isinstance(features, Tensor) and features.dim() == 3:
        n, v, d = features.shape
        features = features.reshape(n * v, d)
        if isinstance(labels, Tensor):
            labels = labels.repeat_interleave(v)
    check_matrix("features", features)
    check_temperature(temperature)
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != features.shape[0]:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must have shape [{features.shape[0]}], got {shape}")
    n = features.shape[0]
    check_batch(n)
    with _no_autocast(features):
        logits = cosine_matrix(features, features) / temperature  # [N, N]
        self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # [N, N]
        pos = (labels[:, None] == labels[None, :]) & ~self_mask  # [N, N]
        n_pos = pos.sum(1)
        has_pos = n_pos > 0
        if not has_pos.any():
            raise ValueError("supcon needs at least one pair of examples with the same label")
        mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1)[has_pos] / n_pos[has_pos]
        return -mean_log_prob_pos.mean()


# --------------------------------------------------------------------------- Wang & Isola
def align_loss(x: Tensor, y: Tensor, alpha: float = 2) -> Tensor:
    r"""Alignment (Wang & Isola 2020): :math:`\mathbb{E}\,\|f(x) - f(y)\|_2^{\alpha}` over positive pairs.

    ``x`` and ``y`` are row-aligned ``[N, d]`` embeddings; they are L2-normalised here.
    Lower is better.
    """
    check_pair("x", x, "y", y)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    with _no_autocast(x):
        x, y = F.normalize(x.float(), dim=-1), F.normalize(y.float(), dim=-1)
        return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniform_loss(x: Tensor, t: float = 2) -> Tensor:
    r"""Uniformity (Wang & Isola 2020): :math:`\log \mathbb{E}_{i<j}\, e^{-t\|f(x_i) - f(x_j)\|_2^2}`.

    ``x`` is ``[N, d]``; rows are L2-normalised here. Lower (more negative) is more uniform.
    """
    check_matrix("x", x)
    check_batch(x.shape[0])
    if not t > 0:
        raise ValueError(f"t must be positive, got {t!r}")
    with _no_autocast(x):
        x = F.normalize(x.float(), dim=-1)
        return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


# --------------------------------------------------------------------------- cached (GradCache) losses
# Gao, Zhang, Han & Callan (2021), "Scaling Deep Contrastive Learning Batch Size under Memory
# Limited Setup": the loss of a contrastive batch depends on the encoder only through the
# embeddings, so the backward pass can be cut at the embeddings and run one chunk at a time.
from collections.abc import Mapping  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402



def _rows(inputs: Any) -> int:
    if isinstance(inputs, Tensor):
        return inputs.shape[0]
    if isinstance(inputs, Mapping):
        return next(v.shape[0] for v in inputs.values() if isinstance(v, Tensor))
    return len(inputs)


def _slice_rows(inputs: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a tensor, a list, or a tokenizer batch (a mapping of ``[N, L]`` tensors).

    For a tokenizer batch the trailing columns that are padding in *every* one of these
    rows are dropped, so that a chunk costs what its own longest sequence costs (exact:
    padded positions are masked out of attention and pooling).
    """
    if not isinstance(inputs, Mapping):
        return inputs[start:stop]
    rows = {k: (v[start:stop] if isinstance(v, Tensor) else v) for k, v in inputs.items()}
    mask = rows.get("attention_mask")
    if isinstance(mask, Tensor) and mask.dim() == 2 and mask.shape[1] > 0:
        length = mask.shape[1]
        real = mask.bool().any(dim=0).nonzero()
        width = int(real.max()) + 1 if len(real) else length
        if width < length:
            rows = {k: (v[:, :width] if isinstance(v, Tensor) and v.dim() >= 2 and v.shape[1] == length else v)
                    for k, v in rows.items()}
    return rows


class _CutAtEmbeddings(torch.autograd.Function):
    """Identity on the embeddings; its backward re-encodes chunk by chunk (GradCache's step 3)."""

    @staticmethod
    def forward(ctx, replay: Callable[[Sequence[Tensor | None]], None], *reps: Tensor):
        ctx.replay = replay
        return tuple(r.view_as(r) for r in reps)

    @staticmethod
    def backward(ctx, *grads: Tensor):
        ctx.replay(grads)
        return (None,) * (1 + len(grads))


def cached_loss(
    encode: Callable[[Any], Tensor],
    columns: Sequence[Any],
    loss_fn: Callable[..., Tensor],
    chunk_size: int = 64,
) -> Tensor:
    r"""Any loss of embeddings at a memory that does not grow with the batch (GradCache).

    ``loss_fn(encode(columns[0]), encode(columns[1]), ...)``, computed in three steps
    (Gao et al. 2021, GradCache):

    1. encode every column in chunks of ``chunk_size`` rows **without** a graph,
       saving the random-number state before each chunk;
    2. compute the loss on the (small) ``[N, d]`` embeddings, with autograd;
    3. when ``.backward()`` reaches the embeddings with :math:`g = \partial\mathcal{L}/\partial z`,
       re-encode each chunk from its saved random-number state — the *same dropout
       masks* — and back-propagate :math:`g` through that chunk alone.

    Since :math:`\partial\mathcal{L}/\partial\theta = \sum_i (\partial z_i/\partial\theta)^\top g_i`,
    the gradients equal those of the plain loss on the same forward passes; only
    one chunk's activations are alive at a time, at the price of one extra
    forward pass. The returned loss is an ordinary scalar: call ``.backward()``
    (or scale it, as ``GradScaler`` does) as with the plain loss.

    The dropout masks are those of a forward pass in chunks; a one-shot forward
    over the whole batch would draw other (equally random) masks. With one chunk
    per column (``chunk_size >= N``) the random numbers are drawn exactly as by
    ``loss_fn(encode(columns[0]), encode(columns[1]), ...)``.

    Args:
        encode: ``encode(rows) -> [n, d]`` embeddings with gradients (e.g. an ``Encoder``).
        columns: the model inputs of each column — tensors, tokenizer batches
            (dicts of ``[N, L]`` tensors) or lists — all with the same number of rows ``N``.
        loss_fn: ``loss_fn(*embeddings) -> scalar``.
        chunk_size: rows encoded at once.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if len(columns) < 1:
        raise ValueError("cached_loss needs at least one column of inputs")
    n = _rows(columns[0])
    if any(_rows(c) != n for c in columns):
        raise ValueError(f"every column must have the same number of rows, got {[_rows(c) for c in columns]}")
    ranges = [(i, min(i + chunk_size, n)) for i in range(0, n, chunk_size)]

    # 1. embeddings without a graph; one RNG snapshot per chunk
    snapshots: list[list[RngSnapshot]] = []
    reps: list[Tensor] = []
    with torch.no_grad():
        for column in columns:
            snaps, parts = [], []
            for start, stop in ranges:
                rows = _slice_rows(column, start, stop)
                snaps.append(RngSnapshot(*(rows.values() if isinstance(rows, Mapping) else [rows])))
                parts.append(encode(rows))  # [chunk, d]
            snapshots.append(snaps)
            reps.append(torch.cat(parts))  # [N, d]
    device_type = reps[0].device.type
    amp = (torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))

    # 3. (run by backward) re-encode each chunk with its saved masks, push the cached gradient through it
    def replay(grads: Sequence[Tensor | None]) -> None:
        with torch.enable_grad(), torch.autocast(device_type, dtype=amp[1], enabled=amp[0]):
            for column, snaps, grad in zip(columns, snapshots, grads):
                if grad is None:
                    continue
                for (start, stop), snap in zip(ranges, snaps):
                    with snap.replay():
                        z = encode(_slice_rows(column, start, stop))  # [chunk, d]
                    torch.autograd.backward(z, grad[start:stop].to(z.dtype))

    # 2. the loss on the cached embeddings, cut from the encoder's graph
    leaves = [r.detach().requires_grad_(True) for r in reps]
    return loss_fn(*_CutAtEmbeddings.apply(replay, *leaves))


def cached_info_nce(
    encode: Callable[[Any], Tensor],
    queries: Any,
    keys: Any,
    temperature: float = 0.05,
    negatives: Any | None = None,
    hard_negative_weight: float = 0.0,
    chunk_size: int = 64,
) -> Tensor:
    """:func:`info_nce` of ``encode(queries)``, ``encode(keys)`` (and ``encode(negatives)``) via :func:`cached_loss`.

    Same value and gradients as the plain loss on the same forward passes, at
    the memory of one chunk of ``chunk_size`` rows (plus the ``[N, d]``
    embeddings and the ``[N, N + M]`` logits).
    """
    check_temperature(temperature)
    columns = [queries, keys] + ([negatives] if negatives is not None else [])

    def loss_fn(q: Tensor, k: Tensor, neg: Tensor | None = None) -> Tensor:
        return info_nce(q, k, temperature, negatives=neg, hard_negative_weight=hard_negative_weight)

    return cached_loss(encode, columns, loss_fn, chunk_size)
