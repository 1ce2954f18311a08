"""CLIP: a two-tower image–text model trained with a symmetric InfoNCE loss.

Radford et al. (2021) train an image encoder and a text encoder together so that
an image and its caption get similar vectors, and every other caption of the batch
a dissimilar one. The loss is cross-entropy over the rows *and* over the columns of
the ``N × N`` similarity matrix, scaled by a *learned* logit scale (initialised to
``1/0.07``, clipped at 100). ALIGN (Jia et al. 2021) is the same recipe on noisier,
larger data; LiT (Zhai et al. 2022) locks a pretrained text or image tower and trains
the other one.

Pieces (every tower follows the toolkit's encoder contract: ``tokenize(items)`` makes
a batch, ``forward(batch) -> [B, d]``, ``encode(items) -> [N, d]`` without gradients):

* :func:`clip_loss` — the loss, with the logit scale as a tensor so that it learns;
* :class:`ImageTower` — a small CNN for 16×16 RGB canvases;
* :class:`ScratchTextTower` — a tiny transformer over a word vocabulary, trained from scratch;
* :class:`LockedTextTower` — a frozen sentence encoder (all-MiniLM-L6-v2) whose
  vectors are computed once per distinct text, and a trained linear head (LiT-style);
* :class:`CLIP` — the two towers and the logit scale; :meth:`CLIP.configure_optimizer`
  says which parameters decay and gives the logit scale its own learning rate;
* zero-shot classification (:func:`class_embeddings`, :func:`zero_shot_predict`,
  prompt ensembling) and retrieval (:func:`recall_at_k`);
* the full profile: a pretrained CLIP from the hub through ``transformers``
  (:func:`pretrained_zero_shot`) on CIFAR-10 (:func:`load_cifar10`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .digits import COLOURS, POSITIONS, TEMPLATES, Splits, caption, collate_scenes, make_splits, tokens
from .run import Recipe

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_TEMPLATES",
    "CLIP",
    "CLIPRecipe",
    "ImageTower",
    "LockedTextTower",
    "PAPER_ZERO_SHOT",
    "all_captions",
    "ScratchTextTower",
    "class_embeddings",
    "clip_logits",
    "clip_loss",
    "load_cifar10",
    "load_pretrained_clip",
    "pretrained_zero_shot",
    "recall_at_k",
    "zero_shot_predict",
]


# --------------------------------------------------------------------------- the loss
def _check_embeddings(image_emb: Tensor, text_emb: Tensor) -> None:
    for name, x in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not isinstance(x, Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a tensor of shape [N, d], got {shape}")
    if image_emb.shape != text_emb.shape:
        raise ValueError(
            f"image_emb and text_emb must be row-aligned with the same shape [N, d], "
            f"got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    if image_emb.shape[0] < 2:
        raise ValueError(f"batch size must be at least 2 to have a negative, got {image_emb.shape[0]}")


def clip_logits(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float) -> Tensor:
    """``logit_scale · cos(image_i, text_j)``, shape ``[N, N]``, in float32."""
    _check_embeddings(image_emb, text_emb)
    scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=image_emb.device)
    if scale.dim() != 0 or not bool(torch.isfinite(scale.detach())) or not bool(scale.detach() > 0):
        raise ValueError(f"logit_scale must be a positive finite scalar, got {logit_scale!r}")
    with torch.autocast(device_type=image_emb.device.type, enabled=False):
        img = F.normalize(image_emb.float(), dim=-1)
        txt = F.normalize(text_emb.float(), dim=-1)
        return scale * img @ txt.T  # [N, N]


def clip_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float) -> Tensor:
    r"""CLIP's symmetric InfoNCE (Radford et al. 2021, Figure 3).

    With :math:`u_i, v_j` the L2-normalised image and text embeddings and :math:`s` the
    logit scale (:math:`s = 1/\tau`):

    .. math::

        \mathcal{L} = \frac{1}{2N}\sum_{i=1}^{N}\Big(
            -\log\frac{e^{s\,u_i^\top v_i}}{\sum_{j=1}^{N} e^{s\,u_i^\top v_j}}
            -\log\frac{e^{s\,u_i^\top v_i}}{\sum_{j=1}^{N} e^{s\,u_j^\top v_i}}\Big)

    — cross-entropy over the rows (image → text) and over the columns (text → image)
    of the ``N × N`` matrix, averaged. With a fixed ``s`` it equals
    :func:`cl_toolkit.losses.symmetric_info_nce` at ``temperature = 1/s``; here
    ``logit_scale`` may be a tensor that requires grad, so the scale is learned.

    Args:
        image_emb: ``[N, d]`` image embeddings (normalised here).
        text_emb: ``[N, d]`` text embeddings, ``text_emb[i]`` the caption of image ``i``.
        logit_scale: a positive scalar (float or 0-d tensor).

    Returns:
        The mean loss, a float32 scalar.
    """
    logits = clip_logits(image_emb, text_emb, logit_scale)  # [N, N]
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


# --------------------------------------------------------------------------- towers
class ImageTower(nn.Module):
    """A small CNN: ``[B, 3, 16, 16]`` canvases → ``[B, dim]``.

    Two stride-2 convolutions leave a 4×4 map; flattening it (no global pooling)
    keeps *where* the digit is, which the captions talk about.
    """

    def __init__(self, dim: int = 64, width: int = 32, size: int = 16):
        super().__init__()
        if size % 4:
            raise ValueError(f"size must be a multiple of 4, got {size}")
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),  # [B, w, 16, 16]
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),  # [B, 2w, 8, 8]
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),  # [B, 2w, 4, 4]
            nn.Flatten(),
            nn.Linear(2 * width * (size // 4) ** 2, dim),  # [B, dim]
        )
        self.dim = dim

    def tokenize(self, images: Tensor) -> Tensor:
        return images

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [B, 3, H, W], got {tuple(images.shape)}")
        return self.net(images.to(next(self.parameters()).device))

    @torch.no_grad()
    def encode(self, images: Tensor, batch_size: int = 512) -> Tensor:
        was = self.training
        self.eval()
        out = torch.cat([self(images[i : i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)])
        self.train(was)
        return out


class ScratchTextTower(nn.Module):
    """A tiny transformer over a word vocabulary, trained from scratch: texts → ``[B, dim]``.

    The vocabulary is fixed when the tower is built (the words of the training
    captions); any other word becomes ``[UNK]`` — the tower cannot read what it
    has never seen. Mean pooling over the real tokens, then a linear projection.
    """

    PAD, UNK = "[PAD]", "[UNK]"

    def __init__(
        self,
        vocabulary: Iterable[str],
        dim: int = 64,
        width: int = 64,
        layers: int = 2,
        heads: int = 4,
        max_length: int = 16,
        tokenizer: Callable[[str], list[str]] | None = None,
    ):
        super().__init__()
        words = sorted(set(vocabulary) - {self.PAD, self.UNK})
        self.vocab = {w: i for i, w in enumerate([self.PAD, self.UNK, *words])}
        self.split = tokenizer or tokens
        self.max_length = max_length
        self.embed = nn.Embedding(len(self.vocab), width, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim)
        self.dim = dim

    def unknown_fraction(self, texts: Sequence[str]) -> float:
        """The share of word tokens in ``texts`` that are not in the vocabulary."""
        words = [w for t in texts for w in self.split(t)]
        return sum(w not in self.vocab for w in words) / max(1, len(words))

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        if isinstance(texts, str):
            raise ValueError("tokenize expects a list of texts, got a single string")
        ids = [[self.vocab.get(w, 1) for w in self.split(t)][: self.max_length] or [1] for t in texts]
        length = max(len(x) for x in ids)
        input_ids = torch.zeros(len(ids), length, dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x)
        return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        device = self.embed.weight.device
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        h = self.embed(ids) + self.pos[: ids.shape[1]]  # [B, L, w]
        h = self.norm(self.blocks(h, src_key_padding_mask=mask == 0))  # [B, L, w]
        m = mask.unsqueeze(-1).to(h.dtype)  # [B, L, 1]
        return self.proj((h * m).sum(1) / m.sum(1).clamp(min=1.0))  # [B, dim]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 512) -> Tensor:
        texts = list(texts)
        was = self.training
        self.eval()
        out = [self(self.tokenize(texts[i : i + batch_size])).float().cpu() for i in range(0, len(texts), batch_size)]
        self.train(was)
        return torch.cat(out) if out else torch.empty(0, self.dim)


class LockedTextTower(nn.Module):
    """A frozen sentence encoder and a trained linear head (LiT, Zhai et al. 2022).

    The encoder never changes, so each distinct text is encoded once and kept:
    :meth:`tokenize` returns the cached ``[B, d_enc]`` vectors (encoding the texts
    not seen before), :meth:`forward` applies the head. The encoder is held outside
    the module's parameters, so optimisers and checkpoints see only the head.
    """

    def __init__(self, encoder, dim: int = 64, batch_size: int = 128):
        super().__init__()
        object.__setattr__(self, "encoder", encoder)  # not a submodule: frozen, not saved
        self.cache: dict[str, Tensor] = {}
        self.batch_size = batch_size
        self.head = nn.Linear(int(encoder.dim), dim)
        self.dim = dim

    def precompute(self, texts: Iterable[str]) -> int:
        """Encode the texts not in the cache yet; returns how many were new."""
        new = sorted({t for t in texts if t not in self.cache})
        if new:
            emb = self.encoder.encode(new, batch_size=self.batch_size, normalize=True)  # [n, d_enc]
            self.cache.update(zip(new, emb))
        return len(new)

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        if isinstance(texts, str):
            raise ValueError("tokenize expects a list of texts, got a single string")
        self.precompute(texts)
        return torch.stack([self.cache[t] for t in texts])  # [B, d_enc]

    def forward(self, features: Tensor) -> Tensor:
        return self.head(features.to(self.head.weight.device))  # [B, dim]

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Tensor:
        return self(self.tokenize(list(texts))).float().cpu()


# --------------------------------------------------------------------------- the two-tower model
class CLIP(nn.Module):
    """An image tower, a text tower and the learned logit scale ``s = exp(t)``.

    ``t`` starts at ``log(1/0.07)`` (CLIP's initial temperature) and ``s`` is clipped
    at ``max_logit_scale = 100`` "to prevent training instabilities" (Radford et al.
    2021, §2.5). Learning it lets the model sharpen its softmax as the embeddings
    separate, instead of fixing one temperature by a sweep.
    """

    def __init__(
        self,
        image: nn.Module,
        text: nn.Module,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        learn_scale: bool = True,
    ):
        super().__init__()
        if not (isinstance(init_temperature, (int, float)) and 0 < init_temperature < math.inf):
            raise ValueError(f"init_temperature must be a positive number, got {init_temperature!r}")
        if not max_logit_scale >= 1 / init_temperature:
            raise ValueError(
                f"max_logit_scale ({max_logit_scale}) must be at least 1/init_temperature ({1 / init_temperature:g})"
            )
        self.image = image
        self.text = text
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)), requires_grad=learn_scale)
        self.max_logit_scale = float(max_logit_scale)

    @property
    def logit_scale(self) -> Tensor:
        return self.log_scale.exp().clamp(max=self.max_logit_scale)

    def forward(self, images: Any, text: Any) -> tuple[Tensor, Tensor]:
        """``(image_emb, text_emb)``, both ``[B, d]`` and L2-normalised."""
        return F.normalize(self.image(images), dim=-1), F.normalize(self.text(text), dim=-1)

    def loss(self, batch: dict) -> Tensor:
        """:func:`clip_loss` on a batch with ``images`` and ``captions`` (or ``text``, already
        made by the text tower's ``tokenize``)."""
        text = batch["text"] if "text" in batch else self.text.tokenize(batch["captions"])
        img, txt = self(batch["images"], text)
        return clip_loss(img, txt, self.logit_scale)

    def configure_optimizer(
        self, lr: float = 1e-3, weight_decay: float = 0.1, scale_lr: float | None = None, betas=(0.9, 0.98)
    ) -> torch.optim.Optimizer:
        """AdamW with decay on matrices only; gains, biases and the logit scale do not decay
        (Radford et al. 2021, §2.5), and the logit scale gets its own learning rate."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad or name == "log_scale":
                continue
            (decay if p.dim() >= 2 and "pos" not in name.split(".")[-1] else no_decay).append(p)
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if self.log_scale.requires_grad:
            groups.append({"params": [self.log_scale], "weight_decay": 0.0, "lr": scale_lr or lr})
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


# --------------------------------------------------------------------------- the recipe
def all_captions(templates: Sequence[str] = TEMPLATES) -> list[str]:
    """Every caption the templates can make: 10 digits × colours × positions × templates."""
    return [
        caption(d, c, p, t)
        for d in range(10)
        for c in range(len(COLOURS))
        for p in range(len(POSITIONS))
        for t in templates
    ]


@dataclass
class CLIPRecipe(Recipe):
    """CLIP on coloured digits (:mod:`cl_toolkit.digits`), run by :func:`cl_toolkit.run.run`.

    ================  ==========================================================
    data              :class:`~cl_toolkit.digits.Scene` s: an image and its caption
    model             :class:`CLIP`: :class:`ImageTower` + a text tower
    text_tower        ``"scratch"`` (:class:`ScratchTextTower`) or ``"minilm"``
                      (:class:`LockedTextTower` over all-MiniLM-L6-v2, frozen)
    loss              :func:`clip_loss` with the learned logit scale
    optimiser         :meth:`CLIP.configure_optimizer`: AdamW, no decay on gains,
                      biases and the scale; ``scale_lr`` for the scale
    ================  ==========================================================

    Relations: with one tower frozen this is LiT (Zhai et al. 2022); with a fixed
    scale it is :func:`cl_toolkit.losses.symmetric_info_nce`.
    """

    text_tower: str = "scratch"
    dim: int = 64
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    learn_scale: bool = True
    scale_lr: float | None = None
    test_size: float = 0.3
    scenes_per_image: int = 8
    data_seed: int = 0
    unseen_pairs: tuple[tuple[int, int], ...] | None = None  # None: (d, d mod 6) for every digit
    steps: int | None = 300
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20

    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {"steps": 1000}}
    name: ClassVar[str] = "clip"

    def __post_init__(self) -> None:
        if self.text_tower not in ("scratch", "minilm"):
            raise ValueError(f"text_tower must be 'scratch' or 'minilm', got {self.text_tower!r}")

    def splits(self) -> Splits:
        return make_splits(self.test_size, self.scenes_per_image, self.unseen_pairs, self.data_seed)

    def build_model(self) -> CLIP:
        if self.text_tower == "scratch":
            text: nn.Module = ScratchTextTower({w for c in all_captions() for w in tokens(c)}, self.dim)
        else:
            from .models import MINILM, Encoder

            encoder = Encoder.from_pretrained(MINILM, pooling="mean", max_length=32).eval()
            text = LockedTextTower(encoder, self.dim)
            text.precompute(all_captions())
        return CLIP(ImageTower(self.dim), text, self.init_temperature, self.max_logit_scale, self.learn_scale)

    def load_data(self) -> list:
        return self.splits().train

    def collate(self, examples: list) -> dict:
        return collate_scenes(examples)

    def step(self, model: CLIP, batch: dict):
        return model.loss(batch), {"logit_scale": model.logit_scale.item()}

    def configure_optimizers(self, model: CLIP) -> torch.optim.Optimizer:
        return model.configure_optimizer(self.lr, self.weight_decay, self.scale_lr)


# --------------------------------------------------------------------------- zero-shot and retrieval
@torch.no_grad()
def class_embeddings(encode_text: Callable[[list[str]], Tensor], prompts: Sequence[Sequence[str] | str]) -> Tensor:
    """One unit vector per class, ``[C, d]``.

    ``prompts[c]`` is one prompt or a list of prompts for class ``c``; a list is
    *ensembled* as CLIP does: the mean of the normalised prompt embeddings,
    normalised again.
    """
    if not len(prompts):
        raise ValueError("prompts is empty: give one prompt (or a list of prompts) per class")
    out = []
    for c, p in enumerate(prompts):
        p = [p] if isinstance(p, str) else list(p)
        if not p:
            raise ValueError(f"class {c} has no prompt")
        out.append(F.normalize(F.normalize(encode_text(p).float(), dim=-1).mean(0), dim=-1))
    return torch.stack(out)  # [C, d]


def zero_shot_predict(image_emb: Tensor, class_emb: Tensor) -> Tensor:
    """The class whose embedding is most similar (cosine) to each image: ``[N]``."""
    if image_emb.dim() != 2 or class_emb.dim() != 2 or image_emb.shape[1] != class_emb.shape[1]:
        raise ValueError(
            f"image_emb [N, d] and class_emb [C, d] must share d, got {tuple(image_emb.shape)} "
            f"and {tuple(class_emb.shape)}"
        )
    return (F.normalize(image_emb.float(), dim=-1) @ F.normalize(class_emb.float(), dim=-1).T).argmax(1)


def recall_at_k(
    queries: Tensor,
    items: Tensor,
    query_labels: Tensor | None = None,
    item_labels: Tensor | None = None,
    ks: Sequence[int] = (1, 5),
) -> dict[int, float]:
    """Recall@k of cosine retrieval: the share of queries with a relevant item in their top k.

    Without labels, item ``i`` is the one relevant item of query ``i``; with labels,
    every item whose label equals the query's is relevant (a caption describes many
    images equally well). Labels are ``[N]`` or ``[N, A]`` (all ``A`` attributes must match).
    """
    if queries.dim() != 2 or items.dim() != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(f"queries [N, d] and items [M, d] must share d, got {tuple(queries.shape)}, {tuple(items.shape)}")
    if (query_labels is None) != (item_labels is None):
        raise ValueError("give both query_labels and item_labels, or neither")
    if query_labels is None:
        if len(queries) != len(items):
            raise ValueError("without labels, queries and items must be row-aligned (same N)")
        query_labels = item_labels = torch.arange(len(queries))
    ql = query_labels.reshape(len(queries), -1)
    il = item_labels.reshape(len(items), -1)
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be at least 1, got {tuple(ks)}")
    sim = F.normalize(queries.float(), dim=-1) @ F.normalize(items.float(), dim=-1).T  # [N, M]
    top = sim.topk(min(max(ks), len(items)), dim=1).indices  # [N, K]
    hit = (il[top] == ql[:, None, :]).all(-1)  # [N, K]
    return {k: hit[:, :k].any(1).float().mean().item() for k in ks}


# --------------------------------------------------------------------------- the full profile: a pretrained CLIP
# Zero-shot top-1 accuracy (%) reported by Radford et al. (2021) in the appendix's zero-shot table.
PAPER_ZERO_SHOT = {("openai/clip-vit-base-patch32", "cifar10"): 91.3}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The 18 prompt templates the paper used for CIFAR-10 (openai/CLIP, data/prompts.md)
CIFAR10_TEMPLATES = (
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
    "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.", "a photo of the {}.",
    "a blurry photo of the {}.", "a black and white photo of the {}.", "a low contrast photo of the {}.",
    "a high contrast photo of the {}.", "a bad photo of the {}.", "a good photo of the {}.",
    "a photo of the small {}.", "a photo of the big {}.",
)  # fmt: skip


def load_pretrained_clip(name: str = "openai/clip-vit-base-patch32", device: str | torch.device = "cpu"):
    """``(model, tokenizer, image_processor)`` of a hub CLIP, via ``transformers``.

    The image processor is the PIL one (``CLIPImageProcessorPil``): the default one
    needs torchvision, which this book keeps out of its environment.
    """
    from transformers import CLIPModel, CLIPTokenizer
    from transformers.models.clip import CLIPImageProcessorPil

    model = CLIPModel.from_pretrained(name).to(device).eval()
    return model, CLIPTokenizer.from_pretrained(name), CLIPImageProcessorPil.from_pretrained(name)


def _features(out) -> Tensor:
    return out if isinstance(out, Tensor) else out.pooler_output


@torch.no_grad()
def pretrained_zero_shot(
    name: str,
    images: Sequence,
    labels: Sequence[int],
    class_names: Sequence[str] = CIFAR10_CLASSES,
    templates: Sequence[str] = CIFAR10_TEMPLATES,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Zero-shot top-1 accuracy of hub CLIP ``name`` on PIL ``images`` with true ``labels``:
    ``{"single": ..., "ensemble": ...}`` — one prompt (``templates[0]``) vs the mean over all."""
    if len(images) != len(labels) or not len(images):
        raise ValueError(f"images and labels must be non-empty and of equal length, got {len(images)} and {len(labels)}")
    model, tokenizer, processor = load_pretrained_clip(name, device)

    def encode_text(texts: list[str]) -> Tensor:
        batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(device)
        return _features(model.get_text_features(**batch)).float().cpu()

    single = class_embeddings(encode_text, [templates[0].format(c) for c in class_names])
    ensemble = class_embeddings(encode_text, [[t.format(c) for t in templates] for c in class_names])
    feats = []
    for i in range(0, len(images), batch_size):
        pixels = processor(images=list(images[i : i + batch_size]), return_tensors="pt")["pixel_values"]
        feats.append(_features(model.get_image_features(pixel_values=pixels.to(device))).float().cpu())
    img = torch.cat(feats)
    y = torch.as_tensor(list(labels))
    return {
        "single": (zero_shot_predict(img, single) == y).float().mean().item(),
        "ensemble": (zero_shot_predict(img, ensemble) == y).float().mean().item(),
    }


def load_cifar10(split: str = "test", limit: int | None = None, seed: int = 0):
    """CIFAR-10 from the hub (``uoft-cs/cifar10``): ``(PIL images, labels)``; needs the hub."""
    from datasets import load_dataset

    ds = load_dataset("uoft-cs/cifar10", split=split)
    if limit is not None and limit < len(ds):
        ds = ds.shuffle(seed=seed).select(range(limit))
    return list(ds["img"]), list(ds["label"])
