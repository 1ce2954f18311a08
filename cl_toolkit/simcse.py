"""SimCSE (Gao, Yao & Chen, EMNLP 2021): recipes, training steps, one-call training.

* Unsupervised: each sentence is encoded twice with dropout on; the two views
  are a positive pair, the other sentences of the batch are negatives.
* Supervised: (premise, entailment, contradiction) triplets; the entailment is
  the positive, every contradiction in the batch is an extra (hard) negative.

:class:`SimCSE` is the recipe (:mod:`cl_toolkit.run`): ``SimCSE.for_profile("full")``
is the paper's, ``"quick"`` a CPU-sized one; both run through the same code::

    from cl_toolkit.run import run
    trained = run(SimCSE.for_profile("quick", supervised=True), out_dir="runs/sup")

With ``chunk_size`` set, the step uses the cached (GradCache) loss of
:func:`cl_toolkit.losses.cached_info_nce`: same loss and gradients, memory of
one chunk — how the supervised recipe's batch of 512 fits one Colab GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor

from .distributed import gather, world_size
from .losses import cached_info_nce, info_nce
from .models import Encoder
from .rng import RngSnapshot
from .text_recipe import TextEncoderRecipe

__all__ = [
    "PAPER_RESULTS", "QUICK_PRETRAINED", "SimCSE", "cached_sup_simcse_loss", "cached_unsup_simcse_loss",
    "quick_start_model", "sup_simcse_loss", "unsup_simcse_loss",
]

PAPER_RESULTS = {
    # Table 5 of Gao et al. (2021): Spearman x100, "all" aggregation.
    "unsup-simcse-bert-base-uncased": {
        "sts12": 68.40, "sts13": 82.41, "sts14": 74.38, "sts15": 80.91, "sts16": 78.56, "stsb": 76.85, "sickr": 72.23, "avg": 76.25,
    },
    "sup-simcse-bert-base-uncased": {
        "sts12": 75.30, "sts13": 84.67, "sts14": 80.19, "sts15": 85.40, "sts16": 80.82, "stsb": 84.25, "sickr": 80.39, "avg": 81.57,
    },
}


# --------------------------------------------------------------------------- steps
def unsup_simcse_loss(
    encoder: Encoder, sentences: Sequence[str], temperature: float = 0.05, same_mask: bool = False
) -> Tensor:
    """Encode the batch twice (two dropout masks): InfoNCE with in-batch negatives.

    Both views come from ONE forward pass over the batch stacked on itself
    (``[x; x]``, ``2B`` rows), as SimCSE's own code does: each row draws its own
    dropout mask, and one pass over ``2B`` rows is faster than two over ``B``.
    ``same_mask=True`` instead runs two passes, the second replaying the first
    one's random numbers, so both views get the same mask (the paper's
    "fixed 0.1" ablation).
    """
    batch = encoder.tokenize(sentences)
    if same_mask:
        snapshot = RngSnapshot(*batch.values())
        z1 = encoder(batch)  # [B, d], dropout mask 1
        with snapshot.replay():
            z2 = encoder(batch)  # [B, d], the same mask again
        return info_nce(gather(z1), gather(z2), temperature)
    both = {k: torch.cat([v, v]) for k, v in batch.items()}  # [2B, L]
    z1, z2 = encoder(both).chunk(2)  # [B, d] each, independent dropout masks
    return info_nce(gather(z1), gather(z2), temperature)  # across processes: [W·B, d] each


def sup_simcse_loss(
    encoder: Encoder, triplets: Sequence[tuple[str, str, str]], temperature: float = 0.05, hard_negative_weight: float = 0.0
) -> Tensor:
    """(anchor, entailment, contradiction): positives and in-batch + hard negatives, one forward pass."""
    anchors, positives, negatives = (list(x) for x in zip(*triplets))
    z = encoder(encoder.tokenize(anchors + positives + negatives))  # [3B, d]
    z1, z2, z3 = (gather(x) for x in z.chunk(3))  # [B, d] each ([W·B, d] across processes)
    return info_nce(z1, z2, temperature, negatives=z3, hard_negative_weight=hard_negative_weight)


def cached_unsup_simcse_loss(
    encoder: Encoder, sentences: Sequence[str], temperature: float = 0.05, chunk_size: int = 64
) -> Tensor:
    """:func:`unsup_simcse_loss` with the cached (GradCache) loss: memory of ``chunk_size`` rows.

    Each view is encoded in chunks of ``chunk_size`` rows; the loss and gradients
    equal those of the plain loss on the same forward passes (same dropout masks).
    """
    batch = encoder.tokenize(sentences)
    return cached_info_nce(encoder, batch, batch, temperature, chunk_size=chunk_size)


def cached_sup_simcse_loss(
    encoder: Encoder,
    triplets: Sequence[tuple[str, str, str]],
    temperature: float = 0.05,
    hard_negative_weight: float = 0.0,
    chunk_size: int = 64,
) -> Tensor:
    """:func:`sup_simcse_loss` with the cached (GradCache) loss; the three columns are encoded chunk by chunk."""
    anchors, positives, negatives = (encoder.tokenize(list(x)) for x in zip(*triplets))
    return cached_info_nce(
        encoder, anchors, positives, temperature, negatives=negatives,
        hard_negative_weight=hard_negative_weight, chunk_size=chunk_size,
    )


# The quick profile's pretrained start when the hub is reachable: a 4-layer, 256-wide BERT
# pretrained with masked language modelling only (Turc et al., 2019), the paper's kind of start.
QUICK_PRETRAINED = "google/bert_uncased_L-4_H-256_A-4"


def quick_start_model() -> str:
    """The quick profile's starting point: :data:`QUICK_PRETRAINED` online, ``"minilm-emb"`` offline.

    Offline, ``"minilm-emb"`` is fresh transformer layers over all-MiniLM-L6-v2's
    input layer (:meth:`Encoder.over_embeddings`): pretrained word vectors, but from
    a model that was itself trained contrastively on sentence pairs.
    """
    from .hub import is_offline

    return "minilm-emb" if is_offline() else QUICK_PRETRAINED


@dataclass
class SimCSE(TextEncoderRecipe):
    """SimCSE as a recipe: unsupervised (dropout views) or supervised (NLI triplets).

    | data | positive | negatives |
    |---|---|---|
    | sentences (``corpus`` = wiki1m, stsb-train) | the same sentence, another dropout mask | the batch's other sentences |
    | ``corpus=("nli",)`` triplets | the entailment | the batch's entailments and every contradiction |

    Relations: with ``queue_size=0`` MoCo's recipe (:mod:`cl_toolkit.moco`) is the
    unsupervised step; the step is sentence-transformers' ``MultipleNegativesRankingLoss``
    on ``(x, x)`` pairs (unsupervised) or on triplets (supervised), at ``scale = 1/τ``.
    """

    supervised: bool = False
    temperature: float = 0.05
    hard_negative_weight: float = 0.0
    same_mask: bool = False  # ablation: both views with the same dropout mask (unsupervised only)
    chunk_size: int | None = None  # the cached (GradCache) loss, encoding this many rows at a time
    steps: int | None = 300
    lr: float = 5e-4

    name: ClassVar[str] = "simcse"
    gathers: ClassVar[bool] = True  # the steps all-gather the embeddings across processes
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {},
        # Gao et al. (2021), §3 and Appendix A: BERT-base, [CLS] with the MLP in training only,
        # batch 64, lr 3e-5, one epoch of wiki1m, STS-B dev every 125 steps.
        "full": dict(model="bert-base-uncased", pooling="cls", mlp_only_train=True, corpus=("wiki1m",),
                     batch_size=64, lr=3e-5, steps=None, epochs=1, eval_every=125),
    }
    supervised_profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(supervised=True, corpus=("nli",)),
        # §6.1: batch 512 of triplets, lr 5e-5, 3 epochs, [CLS] with the MLP. 1,536 sequences per
        # step fit one 16 GB GPU only with the cached loss; the authors split it over 4 GPUs.
        "full": dict(supervised=True, model="bert-base-uncased", pooling="cls", mlp_only_train=False, corpus=("nli",),
                     batch_size=512, lr=5e-5, steps=None, epochs=3, eval_every=125, chunk_size=128),
    }

    @classmethod
    def for_profile(cls, profile: str | None = None, supervised: bool = False, **overrides: Any) -> "SimCSE":
        """The paper's recipe (``full``) or the CPU-sized one (``quick``), then ``overrides``."""
        from .config import get_profile

        profile = get_profile(profile)
        extra = cls.supervised_profiles[profile] if supervised else {}
        if profile == "quick":
            extra = {"model": quick_start_model(), **extra}
        return super().for_profile(profile, **{**extra, **overrides})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.supervised != self.triplets:
            raise ValueError(f"supervised={self.supervised} needs corpus=('nli',) and unsupervised a sentence "
                             f"corpus, got corpus={self.corpus!r}")
        if self.same_mask and (self.supervised or self.chunk_size):
            raise ValueError("same_mask is an ablation of the plain unsupervised step (no supervised, no chunk_size)")

    def step(self, model: Encoder, batch: list) -> Tensor:
        t, w, chunk = self.temperature, self.hard_negative_weight, self.chunk_size
        if chunk and world_size() > 1:
            raise ValueError("chunk_size (the cached loss) runs on one process; across processes set "
                             "chunk_size=None and split the batch over the processes instead")
        if self.supervised:
            if chunk:
                return cached_sup_simcse_loss(model, batch, t, w, chunk)
            return sup_simcse_loss(model, batch, t, w)
        if chunk:
            return cached_unsup_simcse_loss(model, batch, t, chunk)
        return unsup_simcse_loss(model, batch, t, same_mask=self.same_mask)
