"""MoCo (He et al., CVPR 2020) for sentence embeddings: a queue of momentum-encoded keys.

MoCo is an *image* method: instance discrimination with a dictionary that is a
FIFO queue of keys produced by a slowly moving copy of the encoder. In text it
was adapted to sentence embeddings by ESimCSE (Wu et al., COLING 2022) and
MoCoSE (Cao et al., Findings of ACL 2022). This module holds the three parts:

* the **queue** — a ring buffer ``[K, d]`` with a pointer: enqueue the newest
  keys, overwrite the oldest (any batch size, also one that does not divide ``K``);
* the **momentum update** ``θ_k ← m·θ_k + (1−m)·θ_q`` of the key encoder;
* the **loss** — :func:`moco_loss`, InfoNCE whose negatives are the queue, with
  or without the in-batch keys (``in_batch_negatives``).

:class:`MoCo` wraps a query encoder, its key encoder and the queue (buffers), so
:func:`cl_toolkit.train.fit` checkpoints and restores all of them; the key
encoder and the queue never receive gradients. Two recipes share the code:

* ``positive="query"``, ``in_batch_negatives=True`` (the default; ESimCSE's
  momentum contrast without its word repetition): the positive is a second
  dropout pass through the query encoder, as in unsupervised SimCSE, and the
  negatives are the other in-batch positives **plus** the queue. With
  ``queue_size=0`` this is exactly unsupervised SimCSE.
* ``positive="key"``, ``in_batch_negatives=False`` (MoCo v1): the positive is the
  key encoder's encoding of the sentence and the only negatives are the queue:
  ``logits = [q·k⁺, q·queue] / τ``, label 0.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_matrix, check_pair, check_temperature
from .losses import cosine_matrix, info_nce_logits
from .models import Encoder
from .text_recipe import TextEncoderRecipe

__all__ = ["MoCo", "MoCoRecipe", "POSITIVES", "moco_logits", "moco_loss", "moco_step", "momentum_update"]

POSITIVES = ("query", "key")
QUEUE_INITS = ("empty", "random")


# --------------------------------------------------------------------------- the loss
def moco_logits(
    queries: Tensor,
    keys: Tensor,
    queue: Tensor | None = None,
    temperature: float = 0.05,
    in_batch_negatives: bool = True,
) -> tuple[Tensor, Tensor]:
    """The logits of :func:`moco_loss` and their targets.

    * ``in_batch_negatives=True``: ``[N, N + K]`` logits ``[q·k_j | q·queue] / τ``,
      target of row ``i`` is column ``i`` (as :func:`cl_toolkit.losses.info_nce`);
    * ``in_batch_negatives=False``: ``[N, 1 + K]`` logits ``[q·k⁺ | q·queue] / τ``,
      target 0 for every row (MoCo v1).

    Similarities are cosines (the vectors are L2-normalised here), in float32.
    """
    check_pair("queries", queries, "keys", keys)
    check_temperature(temperature)
    if queue is not None:
        check_matrix("queue", queue)
        if queue.shape[1] != queries.shape[1]:
            raise ValueError(f"queue must have shape [K, {queries.shape[1]}], got {tuple(queue.shape)}")
        if queue.shape[0] == 0:
            queue = None
    n = queries.shape[0]
    if in_batch_negatives:
        logits = info_nce_logits(queries, keys, temperature, negatives=queue)  # [N, N + K]
        return logits, torch.arange(n, device=logits.device)
    if queue is None:
        raise ValueError("in_batch_negatives=False needs a non-empty queue: without it there is no negative")
    with torch.autocast(device_type=queries.device.type, enabled=False):
        q = F.normalize(queries.float(), dim=-1)  # [N, d]
        k = F.normalize(keys.float(), dim=-1)  # [N, d]
        l_pos = (q * k).sum(-1, keepdim=True)  # [N, 1]
        l_neg = cosine_matrix(q, queue)  # [N, K]
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # [N, 1 + K]
    return logits, torch.zeros(n, dtype=torch.long, device=logits.device)


def moco_loss(
    queries: Tensor,
    keys: Tensor,
    queue: Tensor | None = None,
    temperature: float = 0.05,
    in_batch_negatives: bool = True,
) -> Tensor:
    r"""InfoNCE against a queue of keys (MoCo, He et al. 2020; ESimCSE, Wu et al. 2022).

    With ``in_batch_negatives=True`` (ESimCSE's loss) every query sees the
    ``N`` keys of the batch (its own positive and ``N-1`` negatives) and the ``K``
    queued keys:

    .. math::

        \ell_i = -\log \frac{e^{\cos(q_i, k_i)/\tau}}
            {\sum_{j=1}^{N} e^{\cos(q_i, k_j)/\tau} + \sum_{m=1}^{K} e^{\cos(q_i, u_m)/\tau}}

    which is :func:`cl_toolkit.losses.info_nce` ``(queries, keys, temperature, negatives=queue)``. With
    ``in_batch_negatives=False`` (MoCo v1, its Algorithm 1) the sum over
    ``j`` keeps only ``j = i``: the positive and the queue, ``K + 1`` terms.

    Gradients flow into ``queries`` and, if they carry any, ``keys``; pass the
    queue detached (:meth:`MoCo.negatives` does).

    Args:
        queries: ``[N, d]``.
        keys: ``[N, d]``, ``keys[i]`` the positive of ``queries[i]``.
        queue: ``[K, d]`` negatives (``None`` or ``K = 0``: none).
        temperature: ``τ > 0``.
        in_batch_negatives: whether the other rows' keys are negatives too.
    """
    logits, targets = moco_logits(queries, keys, queue, temperature, in_batch_negatives)
    return F.cross_entropy(logits, targets)


# --------------------------------------------------------------------------- momentum
@torch.no_grad()
def momentum_update(key_encoder: nn.Module, query_encoder: nn.Module, momentum: float) -> None:
    """``θ_k ← m·θ_k + (1−m)·θ_q`` for every parameter, in place (buffers untouched).

    Written as ``θ_k.lerp_(θ_q, 1 − m)``, which is exact at the ends: ``m = 1``
    leaves the key encoder as it is, ``m = 0`` copies the query encoder.
    """
    if not (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    pk, pq = list(key_encoder.named_parameters()), list(query_encoder.named_parameters())
    if [n for n, _ in pk] != [n for n, _ in pq]:
        raise ValueError("key and query encoders must have the same parameters (the key encoder is a copy)")
    for (name, k), (_, q) in zip(pk, pq):
        if k.shape != q.shape:
            raise ValueError(f"parameter {name}: key shape {tuple(k.shape)} != query shape {tuple(q.shape)}")
        k.lerp_(q.detach(), 1.0 - momentum)


# --------------------------------------------------------------------------- the module
class MoCo(nn.Module):
    """A query encoder, its momentum key encoder and a queue of keys.

    State (all in ``state_dict``, so :func:`~cl_toolkit.train.fit` checkpoints it):
    ``query.*`` (trained), ``key.*`` (momentum copy, ``requires_grad=False``),
    ``queue`` ``[K, d]`` (unit-norm keys), ``queue_ptr`` (next slot to write) and
    ``queue_len`` (how many slots hold a key; only filled slots are used as
    negatives). The queue starts empty (``queue_init="empty"``, ESimCSE) or full of
    random unit vectors (``"random"``, as MoCo's reference code); the default is
    ``"random"`` when the queue is the only source of negatives
    (``in_batch_negatives=False``, MoCo v1), so the first step has negatives.

    ``encode`` and ``forward`` are the query encoder's, so evaluation functions
    written for an :class:`~cl_toolkit.models.Encoder` take a ``MoCo`` as is.

    Args:
        encoder: the query encoder; the key encoder starts as a deep copy.
        queue_size: ``K`` (0: no queue).
        momentum: ``m`` in ``[0, 1]``; 0 makes the key encoder a copy of the query
            encoder after every step (no momentum encoder), 1 freezes it.
        temperature: ``τ``.
        positive: where the positive ``k⁺`` comes from: ``"query"`` (the query
            encoder, with gradients: a second dropout pass for a single sentence as in
            SimCSE / ESimCSE, or the paired sentence) or ``"key"`` (the key encoder,
            no gradient, MoCo v1).
        in_batch_negatives: whether the batch's other keys are negatives too.
        key_dropout: keep dropout on in the key encoder (ESimCSE turns it off).
        queue_init: ``"empty"`` or ``"random"`` (unit vectors from the current torch RNG);
            ``None``: ``"random"`` for MoCo v1 (``in_batch_negatives=False``), else ``"empty"``.
        track_texts: remember the sentence behind each queued key (a Python list,
            not part of the checkpoint) so that :meth:`queue_consistency` and
            :meth:`key_query_agreement` can re-encode it.
    """

    def __init__(
        self,
        encoder: Encoder,
        queue_size: int = 160,
        momentum: float = 0.995,
        temperature: float = 0.05,
        positive: str = "query",
        in_batch_negatives: bool = True,
        key_dropout: bool = False,
        queue_init: str | None = None,
        track_texts: bool = False,
    ):
        super().__init__()
        if queue_init is None:
            queue_init = "empty" if in_batch_negatives else "random"
        if queue_init not in QUEUE_INITS:
            raise ValueError(f"queue_init must be one of {QUEUE_INITS}, got {queue_init!r}")
        if not isinstance(queue_size, int) or queue_size < 0:
            raise ValueError(f"queue_size must be a non-negative int, got {queue_size!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        check_temperature(temperature)
        if positive not in POSITIVES:
            raise ValueError(f"positive must be one of {POSITIVES}, got {positive!r}")
        if not in_batch_negatives and queue_size == 0:
            raise ValueError("in_batch_negatives=False with queue_size=0 leaves no negatives")
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.positive = positive
        self.in_batch_negatives = in_batch_negatives
        self.key_dropout = key_dropout
        self.query = encoder
        self.key = copy.deepcopy(encoder)
        for p in self.key.parameters():
            p.requires_grad_(False)
        if not key_dropout:
            self.key.set_dropout(0.0)
        device = next(encoder.parameters()).device
        self.register_buffer("queue", torch.zeros(queue_size, encoder.dim, device=device))  # [K, d]
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long, device=device))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.long, device=device))
        self.track_texts = track_texts
        self.queue_texts: list[str | None] = [None] * queue_size
        if queue_init == "random" and queue_size > 0:
            self.queue.copy_(F.normalize(torch.randn(queue_size, encoder.dim), dim=-1))
            self.queue_len.fill_(queue_size)

    # ----------------------------------------------------------------- properties
    @property
    def queue_size(self) -> int:
        return int(self.queue.shape[0])

    @property
    def dim(self) -> int:
        return self.query.dim

    @property
    def device(self) -> torch.device:
        return self.queue.device

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.query(batch)

    def encode(self, sentences: Sequence[str], batch_size: int = 64, normalize: bool = False, **kwargs) -> Tensor:
        """The query encoder's embeddings (what is evaluated and saved)."""
        return self.query.encode(sentences, batch_size=batch_size, normalize=normalize, **kwargs)

    # ----------------------------------------------------------------- the queue
    @torch.no_grad()
    def enqueue(self, keys: Tensor, texts: Sequence[str] | None = None) -> None:
        """Write ``keys`` ``[B, d]`` (normalised, detached) at the pointer, overwriting the oldest.

        Slots are ``(ptr + i) mod K``, so a batch that does not divide ``K`` wraps
        around; a batch larger than ``K`` keeps its last ``K`` keys.
        """
        k = self.queue_size
        if k == 0:
            return
        check_matrix("keys", keys)
        if keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape [B, {self.dim}], got {tuple(keys.shape)}")
        keys = F.normalize(keys.detach().float(), dim=-1)[-k:]  # [b, d], b <= K
        b = keys.shape[0]
        ptr = int(self.queue_ptr)
        slots = (ptr + torch.arange(b, device=self.queue.device)) % k  # [b]
        self.queue[slots] = keys.to(self.queue.device, self.queue.dtype)
        self.queue_ptr.fill_((ptr + b) % k)
        self.queue_len.fill_(min(int(self.queue_len) + b, k))
        if self.track_texts and texts is not None:
            for slot, text in zip(slots.tolist(), list(texts)[-k:]):
                self.queue_texts[slot] = text

    def negatives(self) -> Tensor:
        """The filled part of the queue ``[min(len, K), d]``, detached (a copy: safe to enqueue after)."""
        return self.queue[: int(self.queue_len)].detach().clone()

    def ordered_queue(self) -> Tensor:
        """The queued keys from oldest to newest ``[len, d]``."""
        n = int(self.queue_len)
        if n < self.queue_size:
            return self.queue[:n].clone()
        return torch.roll(self.queue, -int(self.queue_ptr), dims=0).clone()

    def reset_queue(self) -> None:
        self.queue.zero_()
        self.queue_ptr.zero_()
        self.queue_len.zero_()
        self.queue_texts = [None] * self.queue_size

    # ----------------------------------------------------------------- keys and momentum
    @torch.no_grad()
    def encode_keys(self, batch: dict[str, Tensor]) -> Tensor:
        """The key encoder's ``[B, d]`` for a tokenised batch, without gradients.

        The key encoder runs in the query encoder's mode (so an MLP used only in
        training is applied to both) with its own dropout (off unless ``key_dropout``).
        """
        self.key.train(self.query.training)
        return self.key(batch)

    def momentum_update(self) -> None:
        """``θ_k ← m·θ_k + (1−m)·θ_q`` (:func:`momentum_update`)."""
        momentum_update(self.key, self.query, self.momentum)

    def _tracked(self) -> tuple[list[int], list[str]]:
        slots = [i for i, t in enumerate(self.queue_texts[: int(self.queue_len)]) if t is not None]
        if not slots:
            raise ValueError("no tracked sentences in the queue (make the MoCo with track_texts=True and train it)")
        return slots, [self.queue_texts[i] for i in slots]

    @torch.no_grad()
    def _rekey(self, texts: list[str], batch_size: int = 128) -> Tensor:
        """The key encoder's unit vectors for ``texts`` now, as :meth:`encode_keys` computes them."""
        was = self.key.training
        self.key.train(True)  # training-only heads apply; dropout is off unless key_dropout
        out = [self.key(self.key.tokenize(texts[i : i + batch_size])).float() for i in range(0, len(texts), batch_size)]
        self.key.train(was)
        return F.normalize(torch.cat(out), dim=-1)

    def queue_consistency(self) -> float:
        """How stale the queue is: the mean cosine between each queued key as it was enqueued and
        its sentence re-encoded by the key encoder now (1.0: perfectly fresh). Needs ``track_texts``."""
        slots, texts = self._tracked()
        old = self.queue[torch.tensor(slots, device=self.queue.device)]  # [n, d], unit norm
        return float((self._rekey(texts) * old).sum(-1).mean())

    def key_query_agreement(self) -> float:
        """How far the key encoder lags: the mean cosine between the key encoder's and the query
        encoder's (eval mode) vectors of the queued sentences, both computed now."""
        _, texts = self._tracked()
        q = self.query.encode(texts, batch_size=128, normalize=True).to(self.queue.device)  # [n, d]
        return float((self._rekey(texts) * q).sum(-1).mean())

    def extra_repr(self) -> str:
        return (
            f"queue_size={self.queue_size}, momentum={self.momentum}, temperature={self.temperature}, "
            f"positive={self.positive!r}, in_batch_negatives={self.in_batch_negatives}, key_dropout={self.key_dropout}"
        )


# --------------------------------------------------------------------------- training
def moco_step(model: MoCo, batch: Sequence) -> Tensor:
    """One training step's loss; enqueues the batch's keys afterwards.

    ``batch`` is a list of sentences (unsupervised: the positive of a sentence
    is the sentence itself) or of ``(anchor, positive, ...)`` tuples (pairs such
    as NLI premise and entailment; further fields are ignored).

    * ``positive="query"``: ``q`` and ``k⁺`` both come from the query encoder, with
      gradients — for sentences, two dropout views from one pass over the batch
      stacked on itself, exactly as unsupervised SimCSE's step, so with
      ``queue_size=0`` the two are the same computation;
    * ``positive="key"``: ``k⁺`` is the key encoder's output (no gradient).

    The key encoder encodes the positives (no gradient) and those keys are
    enqueued after the loss is computed, as in MoCo's Algorithm 1. It runs only
    when its keys are used.
    """
    if all(isinstance(x, str) for x in batch):
        anchors = positives = list(batch)
    else:
        anchors, positives = [x[0] for x in batch], [x[1] for x in batch]
    a = model.query.tokenize(anchors)
    p = a if positives is anchors else model.query.tokenize(positives)
    if model.positive == "query" and p is a:  # two dropout views in one pass, as unsup_simcse_loss
        q, k_pos = model.query({k: torch.cat([v, v]) for k, v in a.items()}).chunk(2)  # [B, d] each
    elif model.positive == "query":
        q, k_pos = model.query(a), model.query(p)  # [B, d] each
    else:
        q, k_pos = model.query(a), None  # [B, d]
    keys = model.encode_keys(p) if (model.queue_size > 0 or model.positive == "key") else None  # [B, d]
    if k_pos is None:
        k_pos = keys
    loss = moco_loss(q, k_pos, model.negatives(), model.temperature, model.in_batch_negatives)
    if keys is not None:
        model.enqueue(keys, positives)
    return loss


@dataclass
class MoCoRecipe(TextEncoderRecipe):
    """MoCo for sentence embeddings as a recipe (:mod:`cl_toolkit.run`).

    | data | positive | negatives |
    |---|---|---|
    | sentences | a second dropout view (``positive="query"``) or the key encoder's (``"key"``) | in-batch keys (optional) + the queue |
    | ``corpus=("nli",)`` | the entailment of the premise (the contradiction is unused) | the same |

    ``full`` is ESimCSE's momentum contrast for BERT-base (batch 64, K = 160,
    m = 0.995; Wu et al. 2022); ``quick`` is CPU-sized (K = 128, four batches of
    32, m = 0.99). Only the query encoder is optimised; the momentum update runs
    after each optimiser step; the queue is a buffer, so checkpoints carry it.
    """

    queue_size: int = 128
    momentum: float = 0.99
    temperature: float = 0.05
    positive: str = "query"
    in_batch_negatives: bool = True
    key_dropout: bool = False
    queue_init: str | None = None
    track_texts: bool = False
    batch_size: int = 32
    lr: float = 5e-4
    steps: int | None = 300

    name: ClassVar[str] = "moco"
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {},
        "full": dict(model="bert-base-uncased", pooling="cls", mlp_only_train=True, corpus=("wiki1m",),
                     batch_size=64, lr=3e-5, steps=None, epochs=1, eval_every=125, queue_size=160,
                     momentum=0.995),
    }

    def build_model(self) -> MoCo:
        return MoCo(
            super().build_model(), queue_size=self.queue_size, momentum=self.momentum,
            temperature=self.temperature, positive=self.positive, in_batch_negatives=self.in_batch_negatives,
            key_dropout=self.key_dropout, queue_init=self.queue_init, track_texts=self.track_texts,
        )

    def load_data(self) -> list:
        data = super().load_data()
        return [(t[0], t[1]) for t in data] if self.triplets else data

    def parameters(self, model: MoCo) -> list:
        return [p for p in model.query.parameters() if p.requires_grad]

    def step(self, model: MoCo, batch: Sequence) -> Tensor:
        return moco_step(model, batch)

    def on_step(self, model: MoCo, step: int) -> None:
        model.momentum_update()
