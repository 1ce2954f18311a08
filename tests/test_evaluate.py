"""cl_toolkit.evaluate against sentence-transformers' EmbeddingSimilarityEvaluator and
against naive computations with a tiny, fast bag-of-words encoder."""

from __future__ import annotations

import math
import re
import zlib

import numpy as np
import pytest
import torch

from cl_toolkit.data import STS_TASKS, STSPairs, load_sts, load_stsb
from cl_toolkit.evaluate import (
    alignment_uniformity,
    at_full_length,
    embed,
    format_table,
    spearman_cosine,
    sts,
    sts_table,
    sts_wmean,
)
from cl_toolkit.models import MINILM, Encoder, full_length

pytestmark = pytest.mark.usefixtures("data_dir")


class BagOfWords:
    """A SupportsEncode object that is not a torch module: hashed word counts through a
    fixed random projection (so that cosines rarely tie), as float32 NumPy."""

    dim = 64
    _proj = np.random.default_rng(0).standard_normal((257, 64))

    def encode(self, sentences, batch_size: int = 32):
        counts = np.zeros((len(sentences), 257))
        for i, s in enumerate(sentences):
            counts[i, 0] = 1.0  # never a zero vector
            for w in re.findall(r"[a-z0-9]+", s.lower()):
                counts[i, 1 + zlib.crc32(w.encode()) % 256] += 1.0
        return (counts @ self._proj).astype(np.float32)


class Plain:
    """An encoder behind a plain object, so that evaluation cannot lengthen its input."""

    def __init__(self, encoder):
        self.encoder = encoder

    def encode(self, sentences, batch_size: int = 32):
        return self.encoder.encode(sentences, batch_size)


def rank(x):
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def naive_spearman_cosine(encoder, pairs) -> float:
    """Spearman ×100 of cosine vs gold: Pearson correlation of the ranks, one pair at a time."""
    cos = []
    for a, b in zip(pairs.sentences1, pairs.sentences2):
        u, v = encoder.encode([a, b]).astype(np.float64)
        cos.append(float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))))
    ra, rb = rank(cos), rank(list(pairs.scores))
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return 100 * num / den


# --------------------------------------------------------------------------- against sentence-transformers
def test_sts_matches_sentence_transformers_evaluator_on_stsb_test(minilm, minilm_st):
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    pairs = load_stsb("test")
    evaluator = EmbeddingSimilarityEvaluator(
        pairs.sentences1, pairs.sentences2, pairs.scores, batch_size=64, main_similarity="cosine", write_csv=False
    )
    reference = 100 * evaluator(minilm_st)["spearman_cosine"]
    assert reference == pytest.approx(82.0, abs=0.5)  # all-MiniLM-L6-v2's STS-B test score
    ours = sts(minilm, "stsb", "test")
    assert ours == pytest.approx(reference, abs=0.01)


def test_sts_accepts_a_sentence_transformer(minilm, minilm_st):
    # SupportsEncode: ST's encode returns NumPy; the same model through both wrappers agrees
    via_st = sts(minilm_st, "sickr", "dev")
    assert via_st == pytest.approx(sts(minilm, "sickr", "dev"), abs=0.01)
    assert 60 < via_st < 95


# --------------------------------------------------------------------------- the evaluation length
def test_score_does_not_depend_on_the_training_length(minilm):
    # SimCSE's evaluation encodes whole sentences: a model trained at length 32 scores as at 256
    short = Encoder.from_pretrained(MINILM, pooling="mean", max_length=32).eval()
    assert full_length(short) == full_length(minilm) == 512
    assert sts(short, "stsb", "test") == pytest.approx(sts(minilm, "stsb", "test"), abs=1e-4)
    assert short.max_length == 32  # restored after the evaluation

    # the control: 106 STS-B test sentences are longer than 32 tokens, and truncating them shows
    long = [s for s in load_stsb("test").sentences() if len(short.tokenizer(s)["input_ids"]) > 32]
    assert len(long) > 50
    whole = embed(short, long)
    torch.testing.assert_close(whole, embed(minilm, long), rtol=0, atol=1e-5)
    truncated = short.encode(long, batch_size=128)
    assert (whole - truncated).norm(dim=-1).min() > 1e-3


def test_at_full_length_restores_on_error(tiny):
    assert tiny.max_length == 32 and full_length(tiny) == 128  # the tiny BERT has 128 positions
    with pytest.raises(RuntimeError):
        with at_full_length(tiny):
            assert tiny.max_length == 128
            raise RuntimeError("boom")
    assert tiny.max_length == 32
    with at_full_length(BagOfWords()) as enc:  # anything else passes through
        assert isinstance(enc, BagOfWords)


def test_saved_model_is_used_at_full_length(tmp_path):
    # a model trained at length 8 is saved for use at its full length, and a SentenceTransformer
    # loading the folder scores exactly what cl_toolkit's evaluation scores
    import json

    from sentence_transformers import SentenceTransformer

    enc = Encoder.tiny(pooling="mean", max_length=8, seed=0).eval()
    enc.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "sentence_bert_config.json").read_text())
    assert config["max_seq_length"] == full_length(enc) == 128
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert st.max_seq_length == 128
    assert sts(st, "stsb", "dev") == pytest.approx(sts(enc, "stsb", "dev"), abs=1e-3)
    truncated = spearman_cosine(Plain(enc), load_stsb("dev"))
    assert truncated != pytest.approx(sts(enc, "stsb", "dev"), abs=0.1)  # length 8 would differ


# --------------------------------------------------------------------------- against naive computations
def test_spearman_cosine_matches_naive():
    enc = BagOfWords()
    pairs = load_sts("sts13").subset("FNWN")  # 189 pairs, with ties in the gold scores
    assert len(set(pairs.scores)) < len(pairs)
    got = spearman_cosine(enc, pairs)
    assert got == pytest.approx(naive_spearman_cosine(enc, pairs), abs=1e-3)  # float32 cosines vs float64
    assert 0 < got < 100  # word overlap correlates with similarity


def test_sts_is_spearman_over_all_pairs():
    enc = BagOfWords()
    assert sts(enc, "stsb", "dev") == pytest.approx(naive_spearman_cosine(enc, load_stsb("dev")), abs=1e-3)


def test_sts_wmean_is_the_size_weighted_mean_of_subsets():
    enc = BagOfWords()
    pairs = load_sts("sts13")
    parts = {name: pairs.subset(name) for name in dict.fromkeys(pairs.subsets)}
    expected = sum(naive_spearman_cosine(enc, p) * len(p) for p in parts.values()) / len(pairs)
    assert sts_wmean(enc, "sts13") == pytest.approx(expected, abs=1e-3)
    assert sts_wmean(enc, "sts13") != pytest.approx(sts(enc, "sts13"), abs=1e-3)  # "all" differs from "wmean"


def test_alignment_uniformity_matches_naive():
    enc = BagOfWords()
    pairs = load_stsb("test")
    unit = lambda s: (lambda v: v / np.linalg.norm(v))(enc.encode([s])[0].astype(np.float64))
    pos = [(a, b) for a, b, s in zip(pairs.sentences1, pairs.sentences2, pairs.scores) if s > 4.0]
    align = sum(np.sum((unit(a) - unit(b)) ** 2) for a, b in pos) / len(pos)
    sents = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    x = np.stack([unit(s) for s in sents])  # [U, d]
    sq = np.maximum(2.0 - 2.0 * x @ x.T, 0.0)  # [U, U] squared distances of unit vectors
    iu = np.triu_indices(len(sents), k=1)
    uniform = math.log(np.mean(np.exp(-2.0 * sq[iu])))
    got_align, got_uniform = alignment_uniformity(enc, "test")
    assert alignment_uniformity(enc) == alignment_uniformity(enc, "dev")  # the default split is dev
    assert got_align == pytest.approx(align, abs=1e-5)
    assert got_uniform == pytest.approx(uniform, abs=1e-5)


def test_alignment_uniformity_with_the_tiny_encoder(tiny):
    align, uniform = alignment_uniformity(tiny, "dev")
    assert 0 <= align <= 4 and -4 <= uniform <= 0


def test_embed_returns_float32_cpu_tensor(tiny):
    a = embed(BagOfWords(), ["a b", "c"])
    assert isinstance(a, torch.Tensor) and a.dtype == torch.float32 and a.shape == (2, 64)
    b = embed(tiny, ["a b", "c"])
    assert b.dtype == torch.float32 and b.shape == (2, tiny.dim)


# --------------------------------------------------------------------------- the table
def test_sts_table_keys_and_average():
    scores = sts_table(BagOfWords())
    assert list(scores) == [*STS_TASKS, "avg"]
    assert scores["avg"] == pytest.approx(np.mean([scores[t] for t in STS_TASKS]))
    assert all(0 < scores[t] < 100 for t in STS_TASKS)
    assert scores["stsb"] == pytest.approx(sts(BagOfWords(), "stsb", "test"))


def test_sts_table_subset():
    scores = sts_table(BagOfWords(), tasks=["sts13", "sickr"])
    assert list(scores) == ["sts13", "sickr", "avg"]


def test_format_table():
    text = format_table({"bow": {"stsb": 71.234, "sickr": 60.0, "avg": 65.617}, "other-model": {"stsb": 50.0}})
    lines = text.split("\n")
    assert lines[0].split() == ["model", "STSB", "SICKR", "AVG"]
    assert set(lines[1]) == {"-"}
    assert lines[2].split() == ["bow", "71.23", "60.00", "65.62"]
    assert lines[3].split() == ["other-model", "50.00", "-", "-"]
    assert format_table({}) == ""


def test_bad_input():
    with pytest.raises(ValueError, match="unknown STS task"):
        sts(BagOfWords(), "sts17")
    with pytest.raises(ValueError, match="at least 2"):
        spearman_cosine(BagOfWords(), STSPairs(["a"], ["b"], [1.0]))
    with pytest.raises(ValueError, match="no pair with gold score"):
        alignment_uniformity(BagOfWords(), "dev", threshold=5.0)
