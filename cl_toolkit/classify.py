"""Few-shot text classification with a sentence encoder: three ways to use it.

The same few labelled examples (:func:`few_shot`, drawn by seed) and the same test
set serve three methods, so that their accuracies compare:

1. **frozen + logistic regression** — embed with the pretrained encoder, fit
   :func:`logreg` on the embeddings (:class:`EmbeddingCache` encodes each text once);
2. **cross-entropy fine-tuning** — :class:`CEFineTune`: the encoder with a linear
   head (:class:`EncoderClassifier`), all of it trained on the labels;
3. **contrastive fine-tuning, then logistic regression** —
   :class:`SetFitRecipe` (Tunstall et al. 2022: pairs from the same / a different
   class, :func:`setfit_pairs`, cosine-similarity regression onto 1 / 0) or
   :class:`SupConRecipe` (Khosla et al. 2020: :func:`cl_toolkit.losses.supcon` on
   the labelled batch, two dropout views per example); then :func:`logreg` on the
   fine-tuned embeddings.

Every trainer is a :class:`~cl_toolkit.run.Recipe`, trained by
:func:`cl_toolkit.run.run`::

    from cl_toolkit.run import run
    rec = SetFitRecipe.for_profile("quick", task="trec", shots=8, seed=0)
    encoder = run(rec).model
    acc = probe_accuracy(encoder, rec.train_set(), rec.test_set())

==================  =======================================  ==============================
recipe              data (one example)                       loss
==================  =======================================  ==============================
``CEFineTune``      ``(text, label)``                        cross-entropy of the head
``SetFitRecipe``    ``(text_a, text_b, 1.0 | 0.0)``          ``(cos(a, b) - target)²``
``SupConRecipe``    ``(text, label)``                        SupCon, ``τ`` = ``temperature``
==================  =======================================  ==============================

Tasks (:data:`TASKS`): ``trec`` (6 coarse question types; train → test), ``sst2``
(binary sentiment; few-shot examples drawn from the whole *sentences* of train,
evaluated on dev or test), ``ag_news`` (4 topics; only the test file is offline, so
:func:`load_task` splits it: a stratified held-out part is the test set, the rest the
pool the few-shot examples come from).
"""

from __future__ import annotations

import copy

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import LabelledTexts, load_ag_news, load_sst2, load_trec
from .losses import supcon, uniform_loss
from .models import MINILM, Encoder
from .run import Recipe

__all__ = [
    "TASKS",
    "CEFineTune",
    "EmbeddingCache",
    "EncoderClassifier",
    "SetFitRecipe",
    "SupConRecipe",
    "accuracy",
    "class_geometry",
    "few_shot",
    "load_task",
    "logreg",
    "probe_accuracy",
    "setfit_pairs",
    "stratified_split",
]

TASKS = ("trec", "sst2", "ag_news")


# --------------------------------------------------------------------------- data
def stratified_split(data: LabelledTexts, per_class: int, seed: int = 0) -> tuple[LabelledTexts, LabelledTexts]:
    """``(rest, held_out)``: ``per_class`` rows of every class held out (seeded), the rest kept."""
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    rng = np.random.RandomState(seed)
    labels = np.asarray(data.labels)
    held: list[int] = []
    for y, name in enumerate(data.label_names):
        idx = np.flatnonzero(labels == y)
        if len(idx) <= per_class:
            raise ValueError(f"class {name!r} has {len(idx)} rows, cannot hold out per_class={per_class}; lower it")
        held.extend(rng.permutation(idx)[:per_class].tolist())
    held_set = set(held)
    rest = [i for i in range(len(data)) if i not in held_set]
    return data.subset(rest), data.subset(sorted(held))


@lru_cache(maxsize=8)
def load_task(task: str, test_split: str = "test", ag_news_test_per_class: int = 250) -> tuple[LabelledTexts, LabelledTexts]:
    """``(pool, test)`` of a task: the few-shot examples are drawn from ``pool``.

    * ``trec``: pool = train (5,452 questions), test = test (500).
    * ``sst2``: pool = the whole sentences of train (6,885), test = ``test_split``
      (``"dev"``: 872 sentences, ``"test"``: 1,821).
    * ``ag_news``: the offline copy has the test file only (7,600 rows); a seeded,
      stratified ``ag_news_test_per_class`` rows per class are the test set, the other
      rows the pool.

    Cached: the same objects come back on every call (do not modify them).
    """
    if task == "trec":
        return load_trec("train"), load_trec("test")
    if task == "sst2":
        if test_split not in ("dev", "test"):
            raise ValueError(f"sst2's test_split must be 'dev' or 'test', got {test_split!r}")
        return load_sst2("train", sentences_only=True), load_sst2(test_split)
    if task == "ag_news":
        return stratified_split(load_ag_news("test"), ag_news_test_per_class, seed=0)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def few_shot(pool: LabelledTexts, shots: int, seed: int) -> LabelledTexts:
    """``shots`` examples per class drawn from ``pool`` by ``seed``.

    For one seed the draws are nested: the 8-shot set is the first 8 of the 16-shot
    set of every class, so a curve over shot counts adds examples, it does not swap them.
    Rows are returned class by class.
    """
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    labels = np.asarray(pool.labels)
    rng = np.random.RandomState(seed)
    chosen: list[int] = []
    for y, name in enumerate(pool.label_names):
        idx = np.flatnonzero(labels == y)
        order = rng.permutation(idx)
        if len(order) < shots:
            raise ValueError(f"class {name!r} has {len(order)} examples, fewer than shots={shots}")
        chosen.extend(order[:shots].tolist())
    return pool.subset(chosen)


def setfit_pairs(texts: Sequence[str], labels: Sequence[int], iterations: int, seed: int = 42) -> list[tuple[str, str, float]]:
    """SetFit's training pairs (Tunstall et al. 2022): ``2 · iterations · n`` of them.

    Every unordered pair ``(i, j)`` with ``i ≤ j`` (a text with itself included), in a
    seeded random order, is positive (target 1.0) when both share a label, else
    negative (0.0). Positives and negatives are each cycled to ``iterations · n``
    pairs and interleaved ``pos, neg, pos, neg, ...`` — the order of
    ``setfit.sampler.ContrastiveDataset`` (whose permutation seed is 42).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if len(texts) != len(labels):
        raise ValueError(f"texts and labels differ in length: {len(texts)} != {len(labels)}")
    n = len(texts)
    pairs = np.stack(np.triu_indices(n, 0), axis=-1)  # [n(n+1)/2, 2]
    pos, neg = [], []
    for k in np.random.RandomState(seed).permutation(len(pairs)):
        i, j = pairs[k]
        (pos if labels[i] == labels[j] else neg).append((texts[i], texts[j]))
    if not neg:
        raise ValueError("setfit_pairs needs at least two classes (no negative pair)")
    m = iterations * n
    out: list[tuple[str, str, float]] = []
    for k in range(m):
        out.append((*pos[k % len(pos)], 1.0))
        out.append((*neg[k % len(neg)], 0.0))
    return out


# --------------------------------------------------------------------------- heads and metrics
class EmbeddingCache:
    """L2-normalised embeddings of a *fixed* encoder, each text encoded once."""

    def __init__(self, encoder: Encoder, batch_size: int = 64):
        self.encoder = encoder
        self.batch_size = batch_size
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), d]`` float32 array."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            emb = self.encoder.encode(missing, batch_size=self.batch_size, normalize=True).numpy()
            self.vectors.update(zip(missing, emb))
        return np.stack([self.vectors[t] for t in texts])

    def __len__(self) -> int:
        return len(self.vectors)


def logreg(x: np.ndarray, y: Sequence[int], seed: int = 0):
    """scikit-learn's ``LogisticRegression`` (SetFit's default head: C = 1, L2) fitted on ``x``."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, random_state=seed).fit(x, np.asarray(y))


def accuracy(predicted: Sequence[int], labels: Sequence[int]) -> float:
    """Share of ``predicted`` equal to ``labels``."""
    p, y = np.asarray(predicted), np.asarray(labels)
    if p.shape != y.shape:
        raise ValueError(f"predicted and labels differ in shape: {p.shape} != {y.shape}")
    return float((p == y).mean())


def probe_accuracy(encoder, train: LabelledTexts, test: LabelledTexts, seed: int = 0) -> float:
    """Test accuracy of :func:`logreg` on ``encoder``'s normalised embeddings of ``train``.

    ``encoder`` is an :class:`~cl_toolkit.models.Encoder` or an :class:`EmbeddingCache`.
    """
    embed = encoder if isinstance(encoder, EmbeddingCache) else EmbeddingCache(encoder)
    head = logreg(embed(train.texts), train.labels, seed)
    return accuracy(head.predict(embed(test.texts)), test.labels)


def class_geometry(embeddings: Tensor | np.ndarray, labels: Sequence[int], label_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per class: alignment ``E‖z_i − z_j‖²`` over pairs of that class and uniformity
    ``log E e^{−2‖z_i − z_j‖²}`` among them (Wang & Isola 2020), on normalised rows;
    plus ``"all"``: the mean over classes of alignment and the uniformity of all rows.
    Lower alignment = a tighter class; lower uniformity = more spread out.
    """
    z = F.normalize(torch.as_tensor(np.asarray(embeddings), dtype=torch.float32), dim=-1)
    y = torch.as_tensor(np.asarray(labels))
    out: dict[str, dict[str, float]] = {}
    for c, name in enumerate(label_names):
        zc = z[y == c]
        if len(zc) < 2:
            continue
        out[name] = {"alignment": float(torch.pdist(zc).pow(2).mean()), "uniformity": float(uniform_loss(zc))}
    out["all"] = {"alignment": float(np.mean([v["alignment"] for v in out.values()])), "uniformity": float(uniform_loss(z))}
    return out


# --------------------------------------------------------------------------- the models
class EncoderClassifier(nn.Module):
    """A sentence encoder with a linear head: ``logits = W · f(x) + b``, ``[B, C]``."""

    def __init__(self, encoder: Encoder, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, num_classes)

    def forward(self, texts: Sequence[str]) -> Tensor:
        return self.head(self.encoder(self.encoder.tokenize(texts)))  # [B, C]

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """The predicted class of every text (eval mode, no gradients)."""
        was = self.training
        self.eval()
        out = [self(list(texts[i : i + batch_size])).argmax(-1).cpu() for i in range(0, len(texts), batch_size)]
        self.train(was)
        return torch.cat(out).numpy()

    def encode(self, texts: Sequence[str], **kwargs) -> Tensor:
        return self.encoder.encode(texts, **kwargs)


# --------------------------------------------------------------------------- recipes
@lru_cache(maxsize=2)
def _pretrained(model: str, max_length: int) -> Encoder:
    return Encoder.from_pretrained(model, pooling="mean", max_length=max_length).eval()


@dataclass
class FewShotRecipe(Recipe):
    """What the three trainers share: the task, the draw of the labelled examples, the encoder.

    ``seed`` draws the examples (:func:`few_shot`) *and* seeds the training, so one
    seed gives every method the same examples.
    """

    task: str = "trec"
    shots: int = 8
    test_split: str = "dev"  # sst2 only: "dev" or "test"
    ag_news_test_per_class: int = 250  # ag_news only: rows per class held out as its test set
    model: str = MINILM
    max_length: int = 64
    steps: int | None = None  # epochs over the (pair) data
    epochs: float = 5.0
    batch_size: int = 16
    lr: float = 2e-5
    warmup_steps: int = 0

    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {}}

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.shots < 1:
            raise ValueError(f"shots must be at least 1, got {self.shots}")

    def pool_and_test(self) -> tuple[LabelledTexts, LabelledTexts]:
        return load_task(self.task, self.test_split, self.ag_news_test_per_class)

    def train_set(self) -> LabelledTexts:
        """The ``shots`` labelled examples per class of this seed."""
        return few_shot(self.pool_and_test()[0], self.shots, self.seed)

    def test_set(self) -> LabelledTexts:
        return self.pool_and_test()[1]

    def build_encoder(self) -> Encoder:
        """A fresh copy of the pretrained encoder (loaded from disk once per process)."""
        return copy.deepcopy(_pretrained(self.model, self.max_length))

    def build_model(self) -> nn.Module:
        return self.build_encoder()

    def load_data(self) -> list:
        train = self.train_set()
        return list(zip(train.texts, train.labels))

    def train_config(self, n_examples, out_dir=None, **overrides):
        """As :class:`~cl_toolkit.run.Recipe`'s, with a batch larger than the data cut to the
        data (SST-2 at 8 shots has 16 examples; SupCon's batch is 32)."""
        recipe = self
        if n_examples is not None and n_examples < self.batch_size * self.grad_accum:
            recipe = replace(self, batch_size=max(1, n_examples // self.grad_accum))
        return Recipe.train_config(recipe, n_examples, out_dir, **overrides)


@dataclass
class CEFineTune(FewShotRecipe):
    """Encoder + linear head, trained end to end with cross-entropy on the labels.

    The head starts from zero knowledge, so it gets its own, larger learning rate
    (``head_lr``); the encoder uses ``lr``. Data: ``(text, label)``.
    """

    lr: float = 5e-5
    head_lr: float = 1e-2
    epochs: float = 20.0

    name: ClassVar[str] = "ce-fine-tune"
    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"epochs": 5.0}, "full": {"epochs": 20.0}}

    def build_model(self) -> EncoderClassifier:
        return EncoderClassifier(self.build_encoder(), len(self.test_set().label_names))

    def configure_optimizers(self, model: EncoderClassifier) -> torch.optim.Optimizer:
        return torch.optim.AdamW([
            {"params": list(model.encoder.parameters()), "lr": self.lr},
            {"params": list(model.head.parameters()), "lr": self.head_lr},
        ], weight_decay=self.weight_decay)

    def step(self, model: EncoderClassifier, batch: list) -> Tensor:
        texts, labels = zip(*batch)
        logits = model(list(texts))  # [B, C]
        return F.cross_entropy(logits, torch.tensor(labels, device=logits.device))


@dataclass
class SetFitRecipe(FewShotRecipe):
    """SetFit's body training (Tunstall et al. 2022): cosine similarity regressed onto 1 / 0.

    Data: :func:`setfit_pairs` of the labelled examples, ``2 · iterations · n`` pairs,
    one epoch by default; loss ``(cos(f(a), f(b)) − target)²`` (sentence-transformers'
    ``CosineSimilarityLoss``). SetFit's defaults: batch 16, lr 2e-5, 10 % warm-up.
    The head (:func:`logreg` on the trained embeddings) is fitted afterwards.
    """

    iterations: int = 20
    epochs: float = 1.0
    warmup_ratio: float = 0.1

    name: ClassVar[str] = "setfit"
    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"iterations": 2}, "full": {"iterations": 20}}

    def load_data(self) -> list:
        train = self.train_set()
        return setfit_pairs(train.texts, train.labels, self.iterations, seed=self.seed)

    def train_config(self, n_examples, out_dir=None, **overrides):
        config = super().train_config(n_examples, out_dir, **overrides)
        if "warmup_steps" not in overrides:
            config.warmup_steps = int(self.warmup_ratio * config.steps)
        return config

    def step(self, model: Encoder, batch: list) -> Tensor:
        a, b, target = zip(*batch)
        z = model(model.tokenize(list(a) + list(b)))  # [2B, d]: both sides in one pass
        za, zb = z.chunk(2)
        cos = F.cosine_similarity(za, zb, dim=-1)  # [B]
        return F.mse_loss(cos, torch.tensor(target, dtype=cos.dtype, device=cos.device))


@dataclass
class SupConRecipe(FewShotRecipe):
    """Supervised contrastive fine-tuning (Khosla et al. 2020) on the labelled batch.

    Each example is encoded twice with dropout on (two views, as in SimCSE); every
    other view of the same class is a positive (:func:`cl_toolkit.losses.supcon`).
    Data: ``(text, label)``; the head (:func:`logreg`) is fitted afterwards.
    """

    temperature: float = 0.1
    views: int = 2
    batch_size: int = 32

    name: ClassVar[str] = "supcon"
    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"epochs": 5.0}, "full": {"epochs": 20.0}}

    def step(self, model: Encoder, batch: list) -> Tensor:
        texts, labels = zip(*batch)
        z = model(model.tokenize(list(texts) * self.views))  # [V·B, d], own dropout mask per row
        feats = torch.stack(z.chunk(self.views), dim=1)  # [B, V, d]
        return supcon(feats, torch.tensor(labels, device=z.device), self.temperature)
