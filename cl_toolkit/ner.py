"""Named-entity recognition: word vectors, few-shot episodes, entity scoring, taggers.

* :func:`word_vectors` encodes pre-tokenised sentences with a (frozen) transformer and
  keeps each word's first sub-word vector — the usual alignment of word labels to
  WordPiece tokens (:func:`first_subword_labels` shows it on labels).
* :func:`entity_scores` scores BIO tags at the entity level with ``seqeval``;
  :func:`entity_spans` is the plain span extraction it is checked against.
* :class:`TokenClassifier` fine-tunes a whole transformer for BIO tagging with
  cross-entropy (the usual supervised baseline); :func:`bio_tags` lists its classes.
* :func:`sample_few_shot` draws ``K`` training sentences per entity type (an episode).
* Two taggers over frozen word vectors, both trained with :func:`cl_toolkit.run.run`:
  :class:`TokenCE` (a linear layer, cross-entropy) and :class:`TokenSupCon` (a
  projection trained with supervised contrastive loss on tokens — same entity type =
  positive — then a nearest-neighbour tagger, as in CONTaiNER, Das et al. 2022).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .losses import supcon
from .data import WNUT17_TYPES
from .models import MINILM, Encoder
from .run import Recipe

__all__ = [
    "entity_spans",
    "entity_scores",
    "first_subword_labels",
    "word_vectors",
    "io_labels",
    "io_to_bio",
    "sample_few_shot",
    "token_data",
    "bio_tags",
    "TokenClassifier",
    "TokenCE",
    "TokenSupCon",
    "nearest_neighbour_tags",
]


# --------------------------------------------------------------------------- scoring
def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """``{(type, start, end)}`` of the entities in one BIO sequence (``end`` exclusive).

    An ``I-X`` that does not continue an ``X`` entity starts a new one (the CoNLL rule,
    also seqeval's default).
    """
    spans, cur = set(), None
    for i, tag in enumerate(list(tags) + ["O"]):
        kind, _, typ = tag.partition("-")
        if cur is not None and (kind != "I" or typ != cur[0]):
            spans.add((cur[0], cur[1], i))
            cur = None
        if kind == "B" or (kind == "I" and cur is None):
            cur = (typ, i)
    return spans


def entity_scores(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1, plus F1 per type, with ``seqeval``."""
    from seqeval.metrics import classification_report

    true, pred = [list(t) for t in true], [list(p) for p in pred]
    if len(true) != len(pred) or any(len(t) != len(p) for t, p in zip(true, pred)):
        raise ValueError("true and pred must hold the same number of sentences with the same lengths")
    rep = classification_report(true, pred, output_dict=True, zero_division=0)
    out = {k: float(rep["micro avg"][m]) for k, m in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"))}
    for typ, row in rep.items():
        if not typ.endswith("avg"):
            out[f"f1_{typ}"] = float(row["f1-score"])
    return out


# --------------------------------------------------------------------------- encoding
def first_subword_labels(word_ids: Sequence[int | None], labels: Sequence[int], ignore: int = -100) -> list[int]:
    """Word labels moved onto sub-word tokens: a word's first token gets its label, the
    rest and the special tokens get ``ignore``."""
    out, prev = [], None
    for w in word_ids:
        out.append(ignore if w is None or w == prev else int(labels[w]))
        prev = w
    return out


def _first_subwords(word_ids: Sequence[int | None]) -> list[tuple[int, int]]:
    """``(token position, word index)`` of each word's first sub-word token."""
    out, seen = [], set()
    for t, w in enumerate(word_ids):
        if w is not None and w not in seen:
            seen.add(w)
            out.append((t, w))
    return out


@torch.no_grad()
def word_vectors(model: nn.Module, tokenizer, sentences: Sequence[Sequence[str]], batch_size: int = 32,
                 max_length: int = 128) -> list[torch.Tensor]:
    """One ``[n_words, d]`` tensor per sentence: the last layer at each word's first sub-word.

    Words cut off by ``max_length`` get a zero vector (rare in tweets)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    for start in range(0, len(sentences), batch_size):
        chunk = [list(s) for s in sentences[start : start + batch_size]]
        enc = tokenizer(chunk, is_split_into_words=True, truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        hidden = model(input_ids=enc["input_ids"].to(device),
                       attention_mask=enc["attention_mask"].to(device)).last_hidden_state.float().cpu()  # [B, L, d]
        for b, words in enumerate(chunk):
            vec = torch.zeros(len(words), hidden.shape[-1])
            for t, w in _first_subwords(enc.word_ids(b)):
                vec[w] = hidden[b, t]
            out.append(vec)
    return out


# --------------------------------------------------------------------------- labels, episodes
def io_labels(tags: Sequence[str], types: Sequence[str]) -> list[int]:
    """BIO tags → IO class ids: 0 for ``O``, ``1 + types.index(type)`` for an entity word."""
    return [0 if t == "O" else 1 + list(types).index(t.split("-", 1)[1]) for t in tags]


def io_to_bio(labels: Sequence[int], types: Sequence[str]) -> list[str]:
    """IO class ids → BIO tags; a run of the same type is one entity (its first word ``B-``)."""
    out, prev = [], 0
    for y in labels:
        y = int(y)
        out.append("O" if y == 0 else ("I-" if y == prev else "B-") + types[y - 1])
        prev = y
    return out


def sample_few_shot(data: Sequence[tuple[list[str], list[str]]], types: Sequence[str], k: int, seed: int = 0) -> list[int]:
    """Indices of ``k`` sentences per entity type (each holds that type), drawn without
    replacement; a sentence drawn for one type may hold others too."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    rng = random.Random(seed)
    chosen: list[int] = []
    for typ in types:
        pool = [i for i, (_, tags) in enumerate(data) if f"B-{typ}" in tags and i not in chosen]
        if len(pool) < k:
            raise ValueError(f"only {len(pool)} sentences hold type {typ!r}; lower k={k}")
        chosen += rng.sample(pool, k)
    return chosen


# --------------------------------------------------------------------------- taggers
def bio_tags(types: Sequence[str]) -> list[str]:
    """The BIO classes of ``types``: ``O``, then ``B-t``, ``I-t`` for each type."""
    return ["O"] + [f"{p}-{t}" for t in types for p in "BI"]


class _Tagger(nn.Module):
    """A transformer and a linear layer that scores every sub-word token."""

    def __init__(self, encoder: nn.Module, tokenizer, n_classes: int, max_length: int):
        super().__init__()
        self.encoder, self.tokenizer, self.max_length = encoder, tokenizer, max_length
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def tokenize(self, sentences: Sequence[Sequence[str]]):
        return self.tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True,
                              max_length=self.max_length, padding=True, return_tensors="pt")

    def forward(self, enc) -> torch.Tensor:
        hidden = self.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        return self.head(hidden)  # [B, L, n_classes]


@dataclass
class TokenClassifier(Recipe):
    """Token classification with cross-entropy, the whole transformer fine-tuned.

    | input (``data``) | target |
    |---|---|
    | ``(words, BIO tags)`` | each word's tag, on its first sub-word (the rest ignored) |

    Predict with :meth:`predict`, which returns BIO tags per word.
    """

    model: str = MINILM
    types: tuple[str, ...] = WNUT17_TYPES
    max_length: int = 128
    steps: int | None = None
    epochs: float = 3.0
    batch_size: int = 16
    lr: float = 5e-5
    warmup_steps: int = 50

    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"steps": 20, "warmup_steps": 2}, "full": {}}
    name: ClassVar[str] = "token_classifier"

    def build_model(self) -> nn.Module:
        enc = Encoder.from_pretrained(self.model)
        return _Tagger(enc.model, enc.tokenizer, len(bio_tags(self.types)), self.max_length)

    def load_data(self):
        raise ValueError("pass data=[(words, tags), ...] to run(), e.g. cl_toolkit.data.load_wnut17('train')")

    def collate(self, examples):
        classes = {t: i for i, t in enumerate(bio_tags(self.types))}
        words = [w for w, _ in examples]
        unknown = {t for _, tags in examples for t in tags} - classes.keys()
        if unknown:
            raise ValueError(f"tags {sorted(unknown)} are not among the classes of types={self.types}")
        return words, [[classes[t] for t in tags] for _, tags in examples]

    def step(self, model: _Tagger, batch):
        words, labels = batch
        enc = model.tokenize(words)
        target = torch.tensor([first_subword_labels(enc.word_ids(b), labels[b]) for b in range(len(words))])
        logits = model({k: v.to(model.head.weight.device) for k, v in enc.items()})
        return F.cross_entropy(logits.flatten(0, 1), target.flatten().to(logits.device), ignore_index=-100)

    @torch.no_grad()
    def predict(self, model: _Tagger, sentences: Sequence[Sequence[str]], batch_size: int = 64) -> list[list[str]]:
        """BIO tags per word; words cut off by ``max_length`` get ``O``."""
        was_training = model.training
        model.eval()
        classes = bio_tags(self.types)
        out: list[list[str]] = []
        for start in range(0, len(sentences), batch_size):
            chunk = [list(s) for s in sentences[start : start + batch_size]]
            enc = model.tokenize(chunk)
            pred = model({k: v.to(model.head.weight.device) for k, v in enc.items()}).argmax(-1).cpu()
            for b, words in enumerate(chunk):
                tags = ["O"] * len(words)
                for t, w in _first_subwords(enc.word_ids(b)):
                    tags[w] = classes[int(pred[b, t])]
                out.append(tags)
        model.train(was_training)
        return out


def token_data(vectors: Sequence[torch.Tensor], labels: Sequence[Sequence[int]]) -> list[tuple[torch.Tensor, int]]:
    """Flatten sentences into ``(word vector, class id)`` examples for the taggers."""
    return [(v, int(y)) for vs, ys in zip(vectors, labels) for v, y in zip(vs, ys)]


@dataclass
class _OnWordVectors(Recipe):
    """What the taggers on frozen word vectors share: ``(vector, class id)`` examples, batched."""

    dim: int = 384
    steps: int | None = 100
    batch_size: int = 256

    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {"steps": 200}}

    def load_data(self):
        raise ValueError("pass data=[(vector, label), ...] to run(); see cl_toolkit.ner.token_data")

    def collate(self, examples):
        x, y = zip(*examples)
        return torch.stack(x), torch.tensor(y)


@dataclass
class TokenCE(_OnWordVectors):
    """A linear tagger on frozen word vectors, trained with cross-entropy.

    | input (``data``) | target |
    |---|---|
    | ``(word vector [d], class id)`` | the class (0 = ``O``) |
    """

    n_classes: int = 7
    lr: float = 1e-2

    name: ClassVar[str] = "token_ce"

    def build_model(self) -> nn.Module:
        return nn.Linear(self.dim, self.n_classes)

    def step(self, model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    @staticmethod
    @torch.no_grad()
    def predict(model: nn.Module, vectors: Sequence[torch.Tensor]) -> list[list[int]]:
        return [model(v).argmax(-1).tolist() for v in vectors]


@dataclass
class TokenSupCon(_OnWordVectors):
    """Token-level supervised contrastive learning (Khosla et al. 2020 on tokens, as in
    CONTaiNER, Das et al. 2022): words of the same class are positives, all others
    negatives, in a learned projection of frozen word vectors. CONTaiNER uses Gaussian
    embeddings and a KL distance; this is the plain cosine version.

    | input (``data``) | positives | negatives |
    |---|---|---|
    | ``(word vector [d], class id)`` | same class in the batch | other classes |

    Tag with :func:`nearest_neighbour_tags` against the support words.
    """

    proj_dim: int = 128
    temperature: float = 0.1
    lr: float = 1e-3

    name: ClassVar[str] = "token_supcon"

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(self.dim, self.dim), nn.ReLU(), nn.Linear(self.dim, self.proj_dim))

    def step(self, model, batch):
        x, y = batch
        return supcon(model(x), y, self.temperature)


@torch.no_grad()
def nearest_neighbour_tags(support: torch.Tensor, support_labels: torch.Tensor,
                           vectors: Sequence[torch.Tensor], model: nn.Module | None = None) -> list[list[int]]:
    """Each word gets the class of its nearest support word by cosine (after ``model`` if given)."""
    proj = (lambda v: v) if model is None else model
    s = F.normalize(proj(support), dim=-1)  # [S, p]
    lab = torch.as_tensor(support_labels)
    return [lab[(F.normalize(proj(v), dim=-1) @ s.T).argmax(1)].tolist() for v in vectors]
