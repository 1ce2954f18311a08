"""Sentence embeddings from a model that reads left to right.

A decoder LLM attends *causally*: token ``i`` sees tokens ``0..i`` and nothing after
it. Its hidden states are built for predicting the next token, so a sentence vector
must be pooled with care:

* ``mean`` — the average over the tokens; early tokens have seen only the beginning
  of the sentence, so the average is dominated by partial views;
* ``last`` — the hidden state of the last real token (an EOS token appended to the
  input), the only position that has seen the whole sentence. E5-Mistral
  (Wang et al. 2024) and most decoder embedders use it;
* ``echo`` — the sentence is given twice and the tokens of the *second* copy are
  averaged: each of them has already seen the whole sentence once
  (Springer et al. 2024).

Two models:

* :class:`CausalEncoder` runs a BERT-type encoder (all-MiniLM-L6-v2 on the CPU) under a
  causal attention mask — the mechanism of a decoder, on a model small enough to
  measure it in seconds — or bidirectionally, for comparison;
* :class:`DecoderEmbedder` is a real decoder (``Qwen/Qwen2.5-0.5B`` in the ``full``
  profile) with an instruction prefix, an EOS token, last-token pooling and, for
  training, LoRA adapters (Hu et al. 2022, through ``peft``).

:class:`LLMEmbed` is the recipe that fine-tunes either with InfoNCE on NLI triplets
(entailment as positive, the contradiction as a hard negative) through
:func:`cl_toolkit.run.run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distributed import gather
from .losses import info_nce
from .models import MINILM, Encoder, encode_batched
from .run import Recipe

__all__ = [
    "LLM_POOLINGS",
    "QWEN",
    "CausalEncoder",
    "DecoderEmbedder",
    "LLMEmbed",
    "causal_mask",
    "echo_batch",
    "last_token_index",
    "pool_tokens",
    "sts_by_pooling",
]

LLM_POOLINGS = ("mean", "last", "echo")
QWEN = "Qwen/Qwen2.5-0.5B"


# --------------------------------------------------------------------------- masks and pooling
def causal_mask(attention_mask: Tensor) -> Tensor:
    """``[B, L]`` padding mask → ``[B, 1, L, L]`` boolean mask, True where query ``i`` may see key ``j``.

    Key ``j`` is visible to query ``i`` when ``j <= i`` and ``j`` is a real token. This
    is the mask a decoder applies; passed to a BERT it makes the BERT read left to right.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [B, L], got shape {tuple(attention_mask.shape)}")
    n = attention_mask.shape[1]
    lower = torch.ones(n, n, dtype=torch.bool, device=attention_mask.device).tril()  # [L, L]
    return lower[None, None] & attention_mask.bool()[:, None, None, :]  # [B, 1, L, L]


def last_token_index(attention_mask: Tensor) -> Tensor:
    """Position of each row's last real token, ``[B]``; right or left padding alike."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [B, L], got shape {tuple(attention_mask.shape)}")
    if not bool(attention_mask.bool().any(dim=1).all()):
        raise ValueError("every row of attention_mask needs at least one real token")
    n = attention_mask.shape[1]
    return n - 1 - attention_mask.bool().flip(1).int().argmax(dim=1)  # [B]


def pool_tokens(hidden: Tensor, attention_mask: Tensor, pooling: str, pool_mask: Tensor | None = None) -> Tensor:
    """``[B, L, d]`` hidden states → ``[B, d]`` by ``mean``, ``last`` or ``echo`` pooling.

    ``echo`` averages the positions where ``pool_mask`` is 1 (the second copy, see
    :func:`echo_batch`); ``mean`` averages every real token.
    """
    if pooling not in LLM_POOLINGS:
        raise ValueError(f"pooling must be one of {LLM_POOLINGS}, got {pooling!r}")
    if pooling == "last":
        idx = last_token_index(attention_mask)  # [B]
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]  # [B, d]
    if pooling == "echo":
        if pool_mask is None:
            raise ValueError("echo pooling needs pool_mask (build the batch with echo_batch)")
        attention_mask = pool_mask
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def echo_batch(tokenizer, sentences: Sequence[str], max_length: int) -> dict[str, Tensor]:
    """Each sentence twice, ``[CLS] x [SEP] x [SEP]``, and ``pool_mask`` on the second copy's tokens.

    Springer et al. (2024) repeat the input so that every token of the second copy has
    seen the whole sentence, then average the second copy. ``max_length`` bounds each
    copy (the input is at most ``2 · max_length + 1`` tokens). Token types are all 0.
    """
    if isinstance(sentences, str):
        raise ValueError("echo_batch expects a list of sentences, got a single string")
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    if cls_id is None or sep_id is None:
        raise ValueError("echo_batch needs a BERT-type tokenizer with [CLS] and [SEP] tokens")
    pieces = tokenizer(list(sentences), add_special_tokens=False, truncation=True, max_length=max_length - 1)
    rows, pools = [], []
    for ids in pieces["input_ids"]:
        rows.append([cls_id, *ids, sep_id, *ids, sep_id])
        pools.append([0] * (len(ids) + 2) + [1] * len(ids) + [0])
    n = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    attention = torch.zeros(len(rows), n, dtype=torch.long)
    pool = torch.zeros(len(rows), n, dtype=torch.long)
    for i, (r, p) in enumerate(zip(rows, pools)):
        input_ids[i, : len(r)] = torch.tensor(r)
        attention[i, : len(r)] = 1
        pool[i, : len(p)] = torch.tensor(p)
    return {"input_ids": input_ids, "attention_mask": attention, "pool_mask": pool,
            "token_type_ids": torch.zeros_like(input_ids)}


# --------------------------------------------------------------------------- a BERT read left to right
class _Encodes(nn.Module):
    """``encode(sentences)`` for any module with ``tokenize`` and ``forward``."""

    def encode(self, sentences: Iterable[str], batch_size: int = 64, normalize: bool = False, **_: Any) -> Tensor:
        """``[n, d]`` float32 embeddings on the CPU, in eval mode, without gradients."""
        return encode_batched(self, sentences, batch_size, normalize, show_progress=False)


class CausalEncoder(_Encodes):
    """A BERT-type :class:`~cl_toolkit.models.Encoder`'s transformer, run causally or not.

    ``causal=True`` passes :func:`causal_mask` to the transformer, so token ``i``'s
    output depends on tokens ``0..i`` only; ``causal=False`` is the model as trained.
    ``pooling`` is one of :data:`LLM_POOLINGS`; for ``last`` the last token is [SEP].
    """

    def __init__(self, encoder: Encoder, causal: bool = True, pooling: str = "last", max_length: int = 128):
        super().__init__()
        if pooling not in LLM_POOLINGS:
            raise ValueError(f"pooling must be one of {LLM_POOLINGS}, got {pooling!r}")
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        self.model = encoder.model
        self.tokenizer = encoder.tokenizer
        self.causal = causal
        self.pooling = pooling
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, name_or_path: str = MINILM, causal: bool = True, pooling: str = "last",
                        max_length: int = 128) -> "CausalEncoder":
        return cls(Encoder.from_pretrained(name_or_path, pooling="mean"), causal, pooling, max_length)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, sentences: Sequence[str]) -> dict[str, Tensor]:
        if isinstance(sentences, str):
            raise ValueError("tokenize expects a list of sentences, got a single string")
        if self.pooling == "echo":
            return echo_batch(self.tokenizer, sentences, self.max_length)
        return dict(self.tokenizer(list(sentences), padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    def hidden_states(self, batch: dict[str, Tensor]) -> Tensor:
        """The last layer, ``[B, L, d]``, under the causal mask when ``self.causal``."""
        device = self.device
        ids, att = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        mask = causal_mask(att) if self.causal else att
        kwargs = {"token_type_ids": batch["token_type_ids"].to(device)} if "token_type_ids" in batch else {}
        return self.model(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        hidden = self.hidden_states(batch)  # [B, L, d]
        pool = batch.get("pool_mask")
        return pool_tokens(hidden, batch["attention_mask"].to(hidden.device), self.pooling,
                           pool.to(hidden.device) if pool is not None else None)


def sts_by_pooling(model: CausalEncoder, pairs, poolings: Sequence[str] = ("mean", "last"),
                   batch_size: int = 128) -> dict[str, float]:
    """Spearman ×100 of cosine vs gold on ``pairs`` for several poolings, from ONE forward pass.

    The same numbers as :func:`cl_toolkit.evaluate.spearman_cosine` with ``model.pooling``
    set to each pooling in turn (``echo`` needs its own input, so it is not allowed here).
    """
    import numpy as np
    from scipy.stats import spearmanr

    bad = [p for p in poolings if p not in ("mean", "last")]
    if bad:
        raise ValueError(f"sts_by_pooling shares one forward pass: poolings must be 'mean'/'last', got {bad}")
    if model.pooling == "echo":
        raise ValueError("sts_by_pooling needs a model with mean or last pooling (plain inputs), got echo")
    unique = pairs.sentences()
    index = {s: i for i, s in enumerate(unique)}
    was_training = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {p: [] for p in poolings}
    with torch.no_grad():
        for s in range(0, len(unique), batch_size):
            batch = model.tokenize(unique[s : s + batch_size])
            hidden = model.hidden_states(batch)  # [b, L, d]
            att = batch["attention_mask"].to(hidden.device)
            for p in poolings:
                out[p].append(pool_tokens(hidden, att, p).float().cpu())
    model.train(was_training)
    gold = np.asarray(pairs.scores)
    i1 = torch.tensor([index[s] for s in pairs.sentences1])
    i2 = torch.tensor([index[s] for s in pairs.sentences2])
    scores = {}
    for p in poolings:
        emb = torch.cat(out[p])
        cos = F.cosine_similarity(emb[i1], emb[i2], dim=-1).numpy()
        scores[p] = float(spearmanr(cos, gold).correlation * 100)
    return scores


# --------------------------------------------------------------------------- a real decoder
class DecoderEmbedder(_Encodes):
    """A decoder LLM as an embedder: instruction prefix + text + EOS, last-token pooling.

    The recipe of E5-Mistral (Wang et al. 2024): the query side carries an instruction
    (``"Instruct: … \\nQuery: "``), an EOS token is appended, and the embedding is
    the last layer's hidden state at that EOS. ``lora_r > 0`` wraps the model in LoRA
    adapters (``peft``), so that only the adapters train.
    """

    def __init__(self, model: nn.Module, tokenizer, instruction: str = "", max_length: int = 64,
                 pooling: str = "last"):
        super().__init__()
        if pooling not in ("mean", "last"):
            raise ValueError(f"DecoderEmbedder pooling must be 'mean' or 'last', got {pooling!r}")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; last-token pooling needs one appended to each input")
        self.model = model
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.max_length = max_length
        self.pooling = pooling

    @classmethod
    def from_pretrained(cls, name_or_path: str = QWEN, instruction: str = "", max_length: int = 64,
                        lora_r: int = 0, lora_alpha: int = 32, lora_dropout: float = 0.1,
                        pooling: str = "last", **model_kwargs: Any) -> "DecoderEmbedder":
        from transformers import AutoModel, AutoTokenizer

        from .hub import resolve_model

        path = resolve_model(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, **model_kwargs)
        if lora_r:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
            model = get_peft_model(model, config)
        return cls(model, tokenizer, instruction, max_length, pooling)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, sentences: Sequence[str], instruction: str | None = None) -> dict[str, Tensor]:
        """Right-padded ``input_ids`` / ``attention_mask``: prefix + sentence, cut to fit, then EOS."""
        if isinstance(sentences, str):
            raise ValueError("tokenize expects a list of sentences, got a single string")
        prefix = self.instruction if instruction is None else instruction
        pieces = self.tokenizer([prefix + s for s in sentences], add_special_tokens=False, truncation=True,
                                max_length=self.max_length - 1)["input_ids"]
        rows = [[*ids, self.tokenizer.eos_token_id] for ids in pieces]
        n = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        input_ids = torch.full((len(rows), n), pad, dtype=torch.long)
        attention = torch.zeros(len(rows), n, dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            attention[i, : len(r)] = 1
        return {"input_ids": input_ids, "attention_mask": attention}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        device = self.device
        ids, att = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        hidden = self.model(input_ids=ids, attention_mask=att).last_hidden_state  # [B, L, d]
        return pool_tokens(hidden, att, self.pooling)


# --------------------------------------------------------------------------- the recipe
@dataclass
class LLMEmbed(Recipe):
    r"""InfoNCE on NLI triplets for a causal embedder, through :func:`cl_toolkit.run.run`.

    | data | positive | negatives |
    |---|---|---|
    | NLI triplets (premise, entailment, contradiction) | the entailment | the batch's other entailments and every contradiction |

    The loss (InfoNCE, van den Oord et al. 2018, with hard negatives as in supervised
    SimCSE, Gao et al. 2021), for queries ``q``, positives ``p`` and negatives ``n``,
    each ``[B, d]`` (``[W·B, d]`` gathered across ``W`` processes):

    .. math::

        \mathcal{L} = -\frac{1}{B}\sum_{i=1}^{B} \log
            \frac{e^{\cos(q_i, p_i)/\tau}}
                 {\sum_{j=1}^{B} e^{\cos(q_i, p_j)/\tau} + \sum_{j=1}^{B} e^{\cos(q_i, n_j)/\tau}}

    ``quick``: all-MiniLM-L6-v2 under a causal mask (:class:`CausalEncoder`), all
    weights trained. ``full``: ``Qwen/Qwen2.5-0.5B`` (:class:`DecoderEmbedder`) with
    LoRA adapters, an instruction on the premise side and last-token pooling, as in
    E5-Mistral (Wang et al. 2024). Relations: the step is supervised SimCSE's
    (:func:`cl_toolkit.simcse.sup_simcse_loss`) with its own encoder on each side.
    """

    model: str = MINILM
    pooling: str = "last"
    causal: bool = True
    decoder: bool = False  # True: a decoder LLM (DecoderEmbedder), else a BERT run causally
    instruction: str = ""
    lora_r: int = 0
    max_length: int = 64
    temperature: float = 0.05
    max_examples: int | None = 2000
    steps: int | None = 20
    batch_size: int = 16
    lr: float = 1e-4

    name: ClassVar[str] = "llm-embed"
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {},
        # E5-Mistral's recipe shrunk to one GPU: LoRA r=16, τ=0.02 in the paper; here τ=0.05 as
        # in the rest of the book, batch 64, NLI only, one pass over 20k triplets.
        "full": dict(model=QWEN, decoder=True, lora_r=16, lr=1e-4, batch_size=64, max_examples=20000,
                     steps=None, epochs=1, warmup_steps=30,
                     instruction="Instruct: Retrieve semantically similar text.\nQuery: "),
    }

    def __post_init__(self) -> None:
        if self.pooling not in LLM_POOLINGS:
            raise ValueError(f"pooling must be one of {LLM_POOLINGS}, got {self.pooling!r}")
        if self.decoder and self.pooling == "echo":
            raise ValueError("echo pooling is implemented for the BERT-type CausalEncoder only; use 'last' or 'mean'")
        if self.lora_r and not self.decoder:
            raise ValueError("lora_r applies to decoder=True (a decoder LLM); the causal BERT trains all weights")

    def build_model(self) -> nn.Module:
        if self.decoder:
            return DecoderEmbedder.from_pretrained(self.model, instruction=self.instruction,
                                                   max_length=self.max_length, lora_r=self.lora_r,
                                                   pooling=self.pooling)
        return CausalEncoder.from_pretrained(self.model, causal=self.causal, pooling=self.pooling,
                                             max_length=self.max_length)

    def load_data(self) -> list[tuple[str, str, str]]:
        from .data import load_nli_triplets

        return load_nli_triplets(limit=self.max_examples)

    def step(self, model: nn.Module, batch: list) -> Tensor:
        anchors, positives, negatives = zip(*batch)
        q = model(model.tokenize(list(anchors)))  # [B, d]; a decoder adds its instruction here
        sides = list(positives) + list(negatives)
        # the documents carry no instruction (E5-Mistral puts it on the query side only)
        k = model(model.tokenize(sides, instruction="")) if isinstance(model, DecoderEmbedder) else \
            model(model.tokenize(sides))  # [2B, d]
        pos, neg = k.chunk(2)  # [B, d] each
        return info_nce(gather(q), gather(pos), self.temperature, negatives=gather(neg))
