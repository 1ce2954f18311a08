"""`Encoder`: a Hugging Face transformer + tokenizer + pooling (+ SimCSE's MLP head).

Pooling (SimCSE's names):

* ``cls``               — the last layer's [CLS] vector, then the MLP head;
* ``cls_before_pooler`` — the last layer's [CLS] vector, no head;
* ``mean``              — the average of the last layer over real tokens;
* ``first_last_avg``    — the average over tokens of (first layer + last layer) / 2.

The MLP head (``Linear(d, d)`` + ``tanh``, SimCSE's ``MLPLayer``) is used by
``cls`` pooling; with ``mlp_only_train=True`` it is used in training only, and
evaluation sees ``cls_before_pooler`` — SimCSE's unsupervised recipe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import is_quiet
from .hub import MINILM, resolve_model, tokenizer_path

__all__ = ["POOLINGS", "MINILM", "MLPHead", "Encoder", "encode_batched"]

POOLINGS = ("cls", "cls_before_pooler", "mean", "first_last_avg")


# --------------------------------------------------------------------------- the encoder
class MLPHead(nn.Module):
    """SimCSE's ``MLPLayer``: ``tanh(W x + b)`` on the pooled vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.activation = nn.Tanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.dense(x))


class Encoder(nn.Module):
    """Sentences in, one vector per sentence out.

    ``encoder(batch)`` takes the tokenizer's output (``input_ids``,
    ``attention_mask``) and returns ``[B, d]`` embeddings with gradients;
    :meth:`encode` takes a list of strings and returns them without gradients.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        pooling: str = "cls",
        mlp: bool | None = None,
        mlp_only_train: bool = False,
        max_length: int = 32,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.mlp_only_train = mlp_only_train
        use_mlp = (pooling == "cls") if mlp is None else mlp
        self.mlp = MLPHead(self.dim) if use_mlp else None

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        pooling: str = "cls",
        mlp: bool | None = None,
        mlp_only_train: bool = False,
        max_length: int = 32,
        **model_kwargs,
    ) -> "Encoder":
        """Load a hub model or a local folder (also one written by :meth:`save`)."""
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, add_pooling_layer=False, **model_kwargs) if _is_bert_like(
            path
        ) else AutoModel.from_pretrained(path, **model_kwargs)
        enc = cls(model, tokenizer, pooling=pooling, mlp=mlp, mlp_only_train=mlp_only_train, max_length=max_length)
        head = Path(path) / "cl_mlp_head.safetensors"
        if enc.mlp is not None and head.is_file():
            from safetensors.torch import load_file

            enc.mlp.load_state_dict(load_file(str(head)))
        return enc

    @classmethod
    def tiny(
        cls,
        layers: int = 2,
        hidden: int = 128,
        heads: int = 2,
        intermediate: int | None = None,
        pooling: str = "mean",
        mlp: bool | None = None,
        mlp_only_train: bool = False,
        max_length: int = 32,
        dropout: float = 0.1,
        seed: int | None = None,
    ) -> "Encoder":
        """A small randomly initialised BERT with the real uncased WordPiece vocabulary."""
        from transformers import AutoTokenizer, BertConfig, BertModel

        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path())
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate or 4 * hidden,
            max_position_embeddings=max(128, max_length),
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = BertModel(config, add_pooling_layer=False)
                enc = cls(model, tokenizer, pooling, mlp, mlp_only_train, max_length)
            return enc
        model = BertModel(config, add_pooling_layer=False)
        return cls(model, tokenizer, pooling, mlp, mlp_only_train, max_length)

    @classmethod
    def over_embeddings(
        cls,
        name_or_path: str = MINILM,
        layers: int = 2,
        freeze_embeddings: bool = True,
        pooling: str = "mean",
        mlp: bool | None = None,
        mlp_only_train: bool = False,
        max_length: int = 32,
        dropout: float = 0.1,
        seed: int | None = None,
    ) -> "Encoder":
        """Fresh, randomly initialised transformer layers over a pretrained BERT's input layer.

        The embedding block of ``name_or_path`` (token, position and token-type
        embeddings and their LayerNorm) is copied into a new BERT of ``layers``
        layers with the same width, heads and feed-forward size; everything above
        it is random (seeded by ``seed``). ``freeze_embeddings=True`` keeps the
        copied block fixed (``requires_grad=False``). The default,
        all-MiniLM-L6-v2's input layer, loads offline; note that those vectors
        come from a model fine-tuned contrastively on sentence pairs.
        """
        from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        path = resolve_model(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        source = AutoModel.from_pretrained(path)
        if not hasattr(source, "embeddings") or source.config.model_type != "bert":
            raise ValueError(
                f"over_embeddings needs a BERT-type model, got {name_or_path!r} "
                f"(model_type={source.config.model_type!r}); pass a BERT checkpoint "
                f"such as {MINILM!r}"
            )
        src = source.config
        config = BertConfig(
            vocab_size=src.vocab_size,
            hidden_size=src.hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=src.num_attention_heads,
            intermediate_size=src.intermediate_size,
            max_position_embeddings=src.max_position_embeddings,
            type_vocab_size=src.type_vocab_size,
            layer_norm_eps=src.layer_norm_eps,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
        if seed is None:
            model = BertModel(config, add_pooling_layer=False)
            enc = cls(model, tokenizer, pooling, mlp, mlp_only_train, max_length)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = BertModel(config, add_pooling_layer=False)
                enc = cls(model, tokenizer, pooling, mlp, mlp_only_train, max_length)
        model.embeddings.load_state_dict(source.embeddings.state_dict())
        model.embeddings.requires_grad_(not freeze_embeddings)
        return enc

    # ----------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def set_dropout(self, p: float) -> None:
        """Set every dropout probability in the transformer to ``p``."""
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        for module in self.model.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
        cfg = self.model.config
        for attr in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if hasattr(cfg, attr):
                setattr(cfg, attr, p)

    # ----------------------------------------------------------------- forward
    @torch.no_grad()
    def encode_static(self, sentences: Iterable[str], normalize: bool = False) -> Tensor:
        """Bag-of-words embeddings ``[n, d]``: the mean of each sentence's input word vectors.

        No position, no attention, no context: the transformer's own first lookup
        table, averaged. A weak encoder, useful as a baseline with much left to learn.
        """
        if isinstance(sentences, str):
            raise ValueError("encode_static expects a list of sentences, got a single string")
        table = self.model.get_input_embeddings().weight.detach().float().cpu()
        rows = []
        for text in sentences:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            rows.append(table[ids].mean(0) if ids else torch.zeros(table.shape[1]))
        out = torch.stack(rows) if rows else torch.empty(0, table.shape[1])
        return F.normalize(out, dim=-1) if normalize else out

    def freeze_lower_layers(self, train_layers: int) -> None:
        """Train only the top ``train_layers`` transformer layers (and the MLP head, if any).

        The embeddings and the layers below stop requiring gradients, so the backward
        pass stops at the first trained layer.
        """
        layers = next((m for m in self.model.modules() if isinstance(m, nn.ModuleList)), None)
        if layers is None:
            raise ValueError(f"{type(self.model).__name__} has no list of layers to freeze")
        if not 0 <= train_layers <= len(layers):
            raise ValueError(f"train_layers must be in [0, {len(layers)}], got {train_layers}")
        keep = {id(p) for layer in layers[len(layers) - train_layers :] for p in layer.parameters()}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in keep)

    def tokenize(self, sentences: Sequence[str]) -> dict[str, Tensor]:
        if isinstance(sentences, str):
            raise ValueError("tokenize expects a list of sentences, got a single string")
        return self.tokenizer(
            list(sentences),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )

    def pool(self, outputs, attention_mask: Tensor) -> Tensor:
        """``[B, L, d]`` hidden states → ``[B, d]`` sentence vectors."""
        last = outputs.last_hidden_state  # [B, L, d]
        if self.pooling in ("cls", "cls_before_pooler"):
            return last[:, 0]
        mask = attention_mask.unsqueeze(-1).to(last.dtype)  # [B, L, 1]
        if self.pooling == "mean":
            return (last * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        first = outputs.hidden_states[1]  # first transformer layer, [B, L, d]
        return (((first + last) / 2.0) * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        device = self.device
        batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        outputs = self.model(**batch, output_hidden_states=self.pooling == "first_last_avg", return_dict=True)
        pooled = self.pool(outputs, batch["attention_mask"])  # [B, d]
        if self.mlp is not None and self.pooling != "cls_before_pooler" and (self.training or not self.mlp_only_train):
            pooled = self.mlp(pooled)
        return pooled

    def encode(
        self,
        sentences: Iterable[str],
        batch_size: int = 64,
        normalize: bool = False,
        show_progress: bool | None = None,
    ) -> Tensor:
        """Embeddings ``[n, d]`` (float32, on the CPU) in eval mode, without gradients."""
        return encode_batched(self, sentences, batch_size, normalize, show_progress)

    # ----------------------------------------------------------------- saving
    def save(self, directory: str | os.PathLike) -> Path:
        """Write a folder that ``sentence_transformers.SentenceTransformer(dir)`` loads.

        The folder holds the transformer and tokenizer (safetensors), a Pooling
        module, and — when the MLP head is used at inference — a Dense module
        with ``tanh``. It encodes the same vectors as :meth:`encode`.
        ``Encoder.from_pretrained(dir, pooling=...)`` loads it back.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.pooling == "first_last_avg":
            raise ValueError(
                "first_last_avg pooling has no sentence-transformers module; save with cls, "
                "cls_before_pooler or mean pooling"
            )
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        pooling_cfg = {
            "word_embedding_dimension": self.dim,
            "pooling_mode_cls_token": self.pooling != "mean",
            "pooling_mode_mean_tokens": self.pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }
        (directory / "1_Pooling").mkdir(exist_ok=True)
        (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling_cfg, indent=2))
        if self.mlp is not None:
            from safetensors.torch import save_file

            head = {k: v.detach().cpu().contiguous() for k, v in self.mlp.state_dict().items()}
            save_file(head, str(directory / "cl_mlp_head.safetensors"))
            if self.pooling == "cls" and not self.mlp_only_train:
                dense_dir = directory / "2_Dense"
                dense_dir.mkdir(exist_ok=True)
                dense_cfg = {
                    "in_features": self.dim,
                    "out_features": self.dim,
                    "bias": True,
                    "activation_function": "torch.nn.modules.activation.Tanh",
                }
                (dense_dir / "config.json").write_text(json.dumps(dense_cfg, indent=2))
                save_file(
                    {"linear.weight": head["dense.weight"], "linear.bias": head["dense.bias"]},
                    str(dense_dir / "model.safetensors"),
                )
                modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        (directory / "modules.json").write_text(json.dumps(modules, indent=2))
        # max_seq_length is the length for *use*, the model's full input length, not the
        # (often short) training length: a saved model encodes long sentences whole.
        (directory / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": full_length(self), "do_lower_case": False}, indent=2)
        )
        return directory


@torch.no_grad()
def encode_batched(
    model: nn.Module,
    sentences: Iterable[str],
    batch_size: int = 64,
    normalize: bool = False,
    show_progress: bool | None = None,
) -> Tensor:
    """``model(model.tokenize(batch))`` over ``sentences`` in batches: ``[n, d]`` float32 on the CPU.

    In eval mode and without gradients (the mode is restored after). Sentences are sorted by
    length so that batches pad little; the result is in the input order.
    """
    if isinstance(sentences, str):
        raise ValueError("encode expects a list of sentences, got a single string")
    sentences = list(sentences)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    was_training = model.training
    model.eval()
    order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    chunks = range(0, len(sentences), batch_size)
    if show_progress is None:
        show_progress = len(sentences) > 20 * batch_size and not is_quiet()
    if show_progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="encode", leave=False)
    out: list[Tensor] = []
    for start in chunks:
        idx = order[start : start + batch_size]
        out.append(model(model.tokenize([sentences[i] for i in idx])).float().cpu())
    model.train(was_training)
    if not out:
        return torch.empty(0, model.dim)
    emb = torch.cat(out)
    result = torch.empty_like(emb)
    result[torch.tensor(order)] = emb
    return F.normalize(result, dim=-1) if normalize else result


def full_length(encoder: Encoder) -> int:
    """The longest input ``encoder`` accepts: the tokenizer's ``model_max_length``,
    capped by the model's ``max_position_embeddings`` (RoBERTa-type models keep two
    of those for padding offsets, and their tokenizers say 512).

    Evaluation (:mod:`cl_toolkit.evaluate`) and :meth:`Encoder.save` use this length,
    whatever ``encoder.max_length`` training used.
    """
    limits = [int(encoder.tokenizer.model_max_length)]
    positions = getattr(encoder.model.config, "max_position_embeddings", None)
    if positions:
        limits.append(int(positions))
    return max(min(limits), encoder.max_length)


def _is_bert_like(path: str) -> bool:
    """True for configs whose AutoModel accepts ``add_pooling_layer``."""
    from transformers import AutoConfig

    try:
        model_type = AutoConfig.from_pretrained(path).model_type
    except Exception:
        return False
    return model_type in {"bert", "roberta", "xlm-roberta", "camembert"}
