"""What every sentence-embedding recipe shares: the encoder, the corpus, STS-B dev.

:class:`TextEncoderRecipe` is a :class:`~cl_toolkit.run.Recipe` whose model is an
:class:`~cl_toolkit.models.Encoder` and whose data is a sentence corpus or NLI
triplets. SimCSE (:mod:`cl_toolkit.simcse`) and MoCo (:mod:`cl_toolkit.moco`)
subclass it and add only their own fields and their step.

``model`` names the starting point:

* ``"tiny"`` — a random 2-layer, 128-wide BERT with the uncased WordPiece vocabulary;
* ``"minilm-emb"`` — fresh transformer layers (``emb_layers``, 384 wide) over
  all-MiniLM-L6-v2's token embeddings (frozen unless ``train_embeddings``);
* any hub name or local folder (``Encoder.from_pretrained``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import MINILM, Encoder
from .run import Recipe

__all__ = ["CORPORA", "TextEncoderRecipe", "stsb_dev_score"]

CORPORA = ("wiki1m", "stsb-train", "nli")


def stsb_dev_score(encoder) -> dict[str, float]:
    """STS-B dev Spearman ×100, SimCSE's model-selection metric (``{"score": ...}``)."""
    from .evaluate import sts

    return {"score": sts(encoder, "stsb", "dev")}


@dataclass
class TextEncoderRecipe(Recipe):
    """A sentence encoder trained on a sentence corpus or on NLI triplets."""

    model: str = "tiny"
    pooling: str = "mean"
    mlp_only_train: bool = False
    max_length: int = 32
    dropout: float = 0.1
    emb_layers: int = 2  # model="minilm-emb": fresh layers over MiniLM's embeddings
    train_embeddings: bool = False  # model="minilm-emb": fine-tune the copied embeddings too
    corpus: tuple[str, ...] = ("wiki1m", "stsb-train")  # "nli" alone: (premise, entailment, contradiction)
    max_examples: int | None = None
    eval_every: int = 100

    def __post_init__(self) -> None:
        self.corpus = tuple(self.corpus)
        bad = [c for c in self.corpus if c not in CORPORA]
        if bad or not self.corpus:
            raise ValueError(f"corpus must name some of {CORPORA}, got {self.corpus!r}")
        if "nli" in self.corpus and len(self.corpus) > 1:
            raise ValueError(f"'nli' (triplets) cannot be mixed with sentence corpora, got {self.corpus!r}")

    @property
    def triplets(self) -> bool:
        return self.corpus == ("nli",)

    def build_model(self) -> Encoder:
        kw = dict(pooling=self.pooling, mlp_only_train=self.mlp_only_train, max_length=self.max_length)
        if self.model == "tiny":
            enc = Encoder.tiny(seed=self.seed, **kw)
        elif self.model == "minilm-emb":
            enc = Encoder.over_embeddings(MINILM, layers=self.emb_layers, seed=self.seed,
                                          freeze_embeddings=not self.train_embeddings, **kw)
        else:
            enc = Encoder.from_pretrained(self.model, **kw)
        enc.set_dropout(self.dropout)
        return enc

    def load_data(self) -> list:
        from .data import load_nli_triplets, load_sentences

        if self.triplets:
            data: list = load_nli_triplets()
        else:
            data = [s for name in self.corpus for s in load_sentences(name)]
        return data[: self.max_examples] if self.max_examples is not None else data

    def evaluate(self, model) -> dict[str, float]:
        return stsb_dev_score(model)
