"""SimCSE (Gao, Yao & Chen, EMNLP 2021): recipes, training steps, one-call training.

* Unsupervised: each sentence is encoded twice with dropout on; the two views
  are a positive pair, the other sentences of the batch are negatives.
* Supervised: (premise, entailment, contradiction) triplets; the entailment is
  the positive, every contradiction in the batch is an extra (hard) negative.

:meth:`SimCSEConfig.for_profile` gives the paper's recipe as the ``full``
profile and a CPU-sized one as ``quick``; both run through the same code.
With ``chunk_size`` set, the step uses the cached (GradCache) loss of
:func:`cl_toolkit.losses.cached_info_nce`: same loss and gradients, memory of
one chunk — how the supervised recipe's batch of 512 fits one Colab GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor

from .losses import cached_info_nce, info_nce
from .models import Encoder
from .train import StepFn, TrainConfig, TrainResult, fit

PAPER_RESULTS = {
    # Table 5 of Gao et al. (2021): Spearman x100, "all" aggregation.
    "unsup-simcse-bert-base-uncased": {
        "sts12": 68.40, "sts13": 82.41, "sts14": 74.38, "sts15": 80.91, "sts16": 78.56, "stsb": 76.85, "sickr": 72.23, "avg": 76.25,
    },
    "sup-simcse-bert-base-uncased": {
        "sts12": 75.30, "sts13": 84.67, "sts14": 80.19, "sts15": 85.40, "sts16": 80.82, "stsb": 84.25, "sickr": 80.39, "avg": 81.57,
    },
}


@dataclass
class SimCSEConfig:
    """One SimCSE run: the model, the data and the optimisation."""

    supervised: bool = False
    model: str = "tiny"  # "tiny" (random 2-layer BERT) or a hub name / local path
    pooling: str = "mean"
    mlp_only_train: bool = False
    corpus: tuple[str, ...] = ("wiki1m", "stsb-train")  # unsupervised corpora (see data.load_sentences)
    max_examples: int | None = None
    batch_size: int = 64
    lr: float = 5e-4
    max_length: int = 32
    temperature: float = 0.05
    dropout: float = 0.1
    hard_negative_weight: float = 0.0
    same_mask: bool = False  # ablation: both views with the same dropout mask (unsupervised only)
    chunk_size: int | None = None  # set: the cached (GradCache) loss, encoding this many rows at a time
    steps: int | None = 300  # None: `epochs` passes over the data
    epochs: float = 1.0
    eval_every: int = 100
    warmup_steps: int = 0
    seed: int = 0

    @classmethod
    def for_profile(cls, profile: str, supervised: bool = False, **overrides) -> "SimCSEConfig":
        """The paper's recipe (``full``) or the CPU-sized one (``quick``), then ``overrides``."""
        if profile == "full":
            if supervised:
                # Batch 512 of triplets = 1,536 sequences per step: on one 16 GB GPU only with the
                # cached loss (an extra forward pass per step); the authors' script splits it over 4 GPUs.
                base = cls(
                    supervised=True, model="bert-base-uncased", pooling="cls", mlp_only_train=False,
                    corpus=("nli",), batch_size=512, lr=5e-5, steps=None, epochs=3, eval_every=125,
                    chunk_size=128,
                )
            else:
                base = cls(
                    supervised=False, model="bert-base-uncased", pooling="cls", mlp_only_train=True,
                    corpus=("wiki1m",), batch_size=64, lr=3e-5, steps=None, epochs=1, eval_every=125,
                )
        elif profile == "quick":
            if supervised:
                base = cls(supervised=True, corpus=("nli",), steps=300, lr=5e-4, eval_every=100)
            else:
                base = cls(supervised=False, corpus=("wiki1m", "stsb-train"), steps=300, lr=5e-4, eval_every=100)
        else:
            raise ValueError(f"unknown profile {profile!r}; choose 'quick' or 'full'")
        return replace(base, **overrides)

    def train_config(self, n_examples: int, out_dir: str | None = None, **overrides) -> TrainConfig:
        steps = self.steps or max(1, int(self.epochs * (n_examples // self.batch_size)))
        kwargs = dict(
            steps=steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
            eval_every=self.eval_every, out_dir=out_dir, seed=self.seed,
            save_every=self.eval_every if out_dir else 0, desc="sup-simcse" if self.supervised else "unsup-simcse",
        )
        kwargs.update(overrides)
        return TrainConfig(**kwargs)


# --------------------------------------------------------------------------- steps
def unsup_simcse_loss(
    encoder: Encoder, sentences: Sequence[str], temperature: float = 0.05, same_mask: bool = False
) -> Tensor:
    """Encode the batch twice (two dropout masks): InfoNCE with in-batch negatives.

    ``same_mask=True`` replays the first pass's random numbers for the second one,
    so both views get the same dropout mask (the paper's "fixed 0.1" ablation).
    """
    batch = encoder.tokenize(sentences)
    if same_mask:
        state = torch.get_rng_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    z1 = encoder(batch)  # [B, d], dropout mask 1
    if same_mask:
        torch.set_rng_state(state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
    z2 = encoder(batch)  # [B, d], dropout mask 2 (or 1 again)
    return info_nce(z1, z2, temperature)


def sup_simcse_loss(
    encoder: Encoder, triplets: Sequence[tuple[str, str, str]], temperature: float = 0.05, hard_negative_weight: float = 0.0
) -> Tensor:
    """(anchor, entailment, contradiction): positives and in-batch + hard negatives, one forward pass."""
    anchors, positives, negatives = (list(x) for x in zip(*triplets))
    z = encoder(encoder.tokenize(anchors + positives + negatives))  # [3B, d]
    z1, z2, z3 = z.chunk(3)
    return info_nce(z1, z2, temperature, negatives=z3, hard_negative_weight=hard_negative_weight)


def cached_unsup_simcse_loss(
    encoder: Encoder, sentences: Sequence[str], temperature: float = 0.05, chunk_size: int = 64
) -> Tensor:
    """:func:`unsup_simcse_loss` with the cached (GradCache) loss: memory of ``chunk_size`` rows.

    With ``chunk_size >= len(sentences)`` it draws the same dropout masks as
    :func:`unsup_simcse_loss` and returns the same loss and gradients.
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


def simcse_step(cfg: "SimCSEConfig") -> StepFn:
    """The training step ``step(encoder, batch) -> loss`` that ``cfg`` asks for."""
    t, w, chunk = cfg.temperature, cfg.hard_negative_weight, cfg.chunk_size
    if cfg.supervised:
        if cfg.same_mask:
            raise ValueError("same_mask is an ablation of unsupervised SimCSE")
        if chunk:
            return lambda m, batch: cached_sup_simcse_loss(m, batch, t, w, chunk)
        return lambda m, batch: sup_simcse_loss(m, batch, t, w)
    if chunk:
        if cfg.same_mask:
            raise ValueError("same_mask is not available with the cached loss (chunk_size)")
        return lambda m, batch: cached_unsup_simcse_loss(m, batch, t, chunk)
    return lambda m, batch: unsup_simcse_loss(m, batch, t, same_mask=cfg.same_mask)


# --------------------------------------------------------------------------- memory
class _Held:
    """A tensor autograd saved for backward; tells the meter when autograd lets go of it."""

    __slots__ = ("meter", "ptr", "tensor")

    def __init__(self, meter: "_SavedMeter", ptr: int, tensor: Tensor):
        self.meter, self.ptr, self.tensor = meter, ptr, tensor

    def __del__(self) -> None:
        self.meter.release(self.ptr)


class _SavedMeter:
    def __init__(self, exclude: Iterable[Tensor]):
        self.skip = {t.untyped_storage().data_ptr() for t in exclude}
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, references]
        self.now = self.peak = 0

    def pack(self, t: Tensor):
        storage = t.untyped_storage()
        ptr, size = storage.data_ptr(), storage.nbytes()
        if ptr in self.skip or size == 0:
            return t
        entry = self.live.setdefault(ptr, [size, 0])
        if entry[1] == 0:
            self.now += size
            self.peak = max(self.peak, self.now)
        entry[1] += 1
        return _Held(self, ptr, t)

    @staticmethod
    def unpack(held):
        return held.tensor if isinstance(held, _Held) else held

    def release(self, ptr: int) -> None:
        entry = self.live[ptr]
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[ptr]


def saved_activation_bytes(fn: Callable[[], Any], exclude: Iterable[Tensor] = ()) -> int:
    """Peak bytes of the tensors that autograd keeps for the backward pass while ``fn()`` runs.

    Every tensor that an operation saves for backward goes through
    ``torch.autograd.graph.saved_tensors_hooks``; this counts each distinct storage
    from the moment it is saved until autograd frees it, and returns the peak.
    Tensors in ``exclude`` (pass the parameters: they live anyway) are not counted.
    It is the part of training memory that grows with the batch — the activations —
    and leaves out parameters, gradients, optimiser state and short-lived temporaries.
    Deterministic and device-independent, unlike a process's resident memory.
    ``fn`` should run the forward *and* the backward pass (e.g. ``lambda: loss_fn().backward()``).
    """
    meter = _SavedMeter(list(exclude))
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        fn()
    return meter.peak


# --------------------------------------------------------------------------- data and model
def load_training_data(cfg: SimCSEConfig) -> list:
    """Sentences (unsupervised) or triplets (supervised), as the config asks."""
    from .data import load_nli_triplets, load_sentences

    if cfg.supervised:
        data: list = load_nli_triplets()
    else:
        data = []
        for name in cfg.corpus:
            data += load_sentences(name)
    if cfg.max_examples is not None:
        data = data[: cfg.max_examples]
    return data


def build_encoder(cfg: SimCSEConfig, device: torch.device | str | None = None) -> Encoder:
    if cfg.model == "tiny":
        enc = Encoder.tiny(pooling=cfg.pooling, mlp_only_train=cfg.mlp_only_train, max_length=cfg.max_length, seed=cfg.seed)
    else:
        enc = Encoder.from_pretrained(cfg.model, pooling=cfg.pooling, mlp_only_train=cfg.mlp_only_train, max_length=cfg.max_length)
    enc.set_dropout(cfg.dropout)
    return enc.to(device) if device is not None else enc


def stsb_dev_eval(encoder: Encoder) -> dict[str, float]:
    """STS-B dev Spearman ×100, SimCSE's model-selection metric."""
    from .evaluate import sts

    return {"score": sts(encoder, "stsb", "dev")}


def train_simcse(
    cfg: SimCSEConfig,
    out_dir: str | None = None,
    device: torch.device | str | None = None,
    data: list | None = None,
    encoder: Encoder | None = None,
    eval_fn=stsb_dev_eval,
    on_step=None,
    **train_overrides,
) -> tuple[Encoder, TrainResult]:
    """Train SimCSE as ``cfg`` says; returns the (best) encoder and the run's record.

    ``eval_fn(encoder) -> float | dict`` runs every ``cfg.eval_every`` steps (the
    best weights by its ``"score"`` are kept); ``train_overrides`` go to
    :class:`~cl_toolkit.train.TrainConfig` (e.g. ``stop_after=2``).
    """
    from .config import get_device, seed_everything

    seed_everything(cfg.seed)  # the run's dropout masks do not depend on what ran before it
    device = get_device() if device is None else device
    data = load_training_data(cfg) if data is None else data
    encoder = build_encoder(cfg, device) if encoder is None else encoder.to(device)
    step = simcse_step(cfg)
    result = fit(encoder, data, step, cfg.train_config(len(data), out_dir, **train_overrides), eval_fn=eval_fn, on_step=on_step)
    result.extra["config"] = asdict(cfg)
    return encoder, result
