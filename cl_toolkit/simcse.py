"""SimCSE (Gao, Yao & Chen, EMNLP 2021): recipes, training steps, one-call training.

* Unsupervised: each sentence is encoded twice with dropout on; the two views
  are a positive pair, the other sentences of the batch are negatives.
* Supervised: (premise, entailment, contradiction) triplets; the entailment is
  the positive, every contradiction in the batch is an extra (hard) negative.

:meth:`SimCSEConfig.for_profile` gives the paper's recipe as the ``full``
profile and a CPU-sized one as ``quick``; both run through the same code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import torch
from torch import Tensor

from .losses import info_nce
from .models import Encoder
from .train import TrainConfig, TrainResult, fit

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
                base = cls(
                    supervised=True, model="bert-base-uncased", pooling="cls", mlp_only_train=False,
                    corpus=("nli",), batch_size=512, lr=5e-5, steps=None, epochs=3, eval_every=125,
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
def unsup_simcse_loss(encoder: Encoder, sentences: Sequence[str], temperature: float = 0.05) -> Tensor:
    """Encode the batch twice (two dropout masks): InfoNCE with in-batch negatives."""
    batch = encoder.tokenize(sentences)
    z1 = encoder(batch)  # [B, d], dropout mask 1
    z2 = encoder(batch)  # [B, d], dropout mask 2
    return info_nce(z1, z2, temperature)


def sup_simcse_loss(
    encoder: Encoder, triplets: Sequence[tuple[str, str, str]], temperature: float = 0.05, hard_negative_weight: float = 0.0
) -> Tensor:
    """(anchor, entailment, contradiction): positives and in-batch + hard negatives, one forward pass."""
    anchors, positives, negatives = (list(x) for x in zip(*triplets))
    z = encoder(encoder.tokenize(anchors + positives + negatives))  # [3B, d]
    z1, z2, z3 = z.chunk(3)
    return info_nce(z1, z2, temperature, negatives=z3, hard_negative_weight=hard_negative_weight)


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
    **train_overrides,
) -> tuple[Encoder, TrainResult]:
    """Train SimCSE as ``cfg`` says; returns the (best) encoder and the run's record."""
    if device is None:
        from .config import get_device

        device = get_device()
    data = load_training_data(cfg) if data is None else data
    encoder = build_encoder(cfg, device) if encoder is None else encoder.to(device)
    if cfg.supervised:
        step = lambda m, batch: sup_simcse_loss(m, batch, cfg.temperature, cfg.hard_negative_weight)
    else:
        step = lambda m, batch: unsup_simcse_loss(m, batch, cfg.temperature)
    result = fit(encoder, data, step, cfg.train_config(len(data), out_dir, **train_overrides), eval_fn=eval_fn)
    result.extra["config"] = asdict(cfg)
    return encoder, result
