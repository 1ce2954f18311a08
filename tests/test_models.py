"""cl_toolkit.models.Encoder: poolings against the transformer's hidden states, the
MLP head, saving for sentence-transformers, loading back, and the tiny encoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cl_toolkit.models import MINILM, POOLINGS, Encoder

SENTENCES = [
    "A man is playing a guitar.",
    "Hi",
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch, "
    "sipping coffee and thinking about the long winter that is coming to the valley.",  # > 32 tokens: truncated
    "Two dogs run.",
    "A woman slices an onion on a wooden board.",
]


def naive_pool(enc: Encoder, sentence: str) -> torch.Tensor:
    """One sentence on its own (no padding at all), pooled from the model's hidden states by hand."""
    batch = enc.tokenizer([sentence], truncation=True, max_length=enc.max_length, return_tensors="pt")
    with torch.no_grad():
        hs = enc.model(**batch, output_hidden_states=True).hidden_states  # embeddings + one per layer
        last, first = hs[-1][0], hs[1][0]  # [L, d]; hs[0] is the embedding layer's output
        if enc.pooling in ("cls", "cls_before_pooler"):
            v = last[0]
        elif enc.pooling == "mean":
            v = sum(last[t] for t in range(last.shape[0])) / last.shape[0]
        else:  # first_last_avg
            v = sum((first[t] + last[t]) / 2 for t in range(last.shape[0])) / last.shape[0]
        if enc.pooling == "cls" and not enc.mlp_only_train:
            v = torch.tanh(enc.mlp.dense.weight @ v + enc.mlp.dense.bias)
    return v


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_matches_naive_computation(pooling):
    enc = Encoder.tiny(pooling=pooling, seed=1).eval()
    assert (enc.mlp is not None) == (pooling == "cls")
    got = enc(enc.tokenize(SENTENCES))  # padded batch
    assert got.shape == (len(SENTENCES), enc.dim)
    expected = torch.stack([naive_pool(enc, s) for s in SENTENCES])
    torch.testing.assert_close(got.detach(), expected, rtol=1e-4, atol=1e-5)


def test_poolings_differ():
    vecs = {}
    for pooling in POOLINGS:
        enc = Encoder.tiny(pooling=pooling, seed=1).eval()
        vecs[pooling] = enc.encode(SENTENCES[:2])
    for a in POOLINGS:
        for b in POOLINGS:
            if a < b:
                assert not torch.allclose(vecs[a], vecs[b], atol=1e-3), (a, b)


def test_mean_pooling_of_minilm_matches_naive(minilm):
    expected = torch.stack([naive_pool(minilm, s) for s in SENTENCES[:3]])
    torch.testing.assert_close(minilm.encode(SENTENCES[:3]), expected, rtol=1e-4, atol=1e-5)


def test_mlp_only_train_uses_the_head_in_training_only():
    enc = Encoder.tiny(pooling="cls", mlp_only_train=True, dropout=0.0, seed=2)
    batch = enc.tokenize(SENTENCES)
    raw_cls = enc.model(**batch).last_hidden_state[:, 0]
    enc.train()
    torch.testing.assert_close(enc(batch), torch.tanh(enc.mlp.dense(raw_cls)))
    enc.eval()
    torch.testing.assert_close(enc(batch), raw_cls)
    # without mlp_only_train the head is used in both modes
    enc.mlp_only_train = False
    torch.testing.assert_close(enc(batch), torch.tanh(enc.mlp.dense(raw_cls)))


def test_cls_before_pooler_has_no_head_and_mlp_flag():
    assert Encoder.tiny(pooling="cls_before_pooler", seed=0).mlp is None
    assert Encoder.tiny(pooling="mean", seed=0).mlp is None
    assert Encoder.tiny(pooling="mean", mlp=True, seed=0).mlp is not None
    assert Encoder.tiny(pooling="cls", mlp=False, seed=0).mlp is None


# --------------------------------------------------------------------------- saving
@pytest.mark.parametrize(
    "pooling, mlp_only_train",
    [("mean", False), ("cls_before_pooler", False), ("cls", False), ("cls", True)],
    ids=["mean", "cls_before_pooler", "cls-with-head", "cls-mlp-only-train"],
)
def test_save_loads_in_sentence_transformers_with_the_same_vectors(pooling, mlp_only_train, tmp_path):
    from sentence_transformers import SentenceTransformer

    enc = Encoder.tiny(pooling=pooling, mlp_only_train=mlp_only_train, seed=3)
    with torch.no_grad():  # a head far from the identity, so that a dropped head shows
        if enc.mlp is not None:
            enc.mlp.dense.weight.mul_(5.0)
    enc.save(tmp_path / "m")
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert st.max_seq_length == 128  # saved for use at the tiny BERT's full length
    from cl_toolkit.evaluate import at_full_length

    with at_full_length(enc):  # so the long sentence is encoded whole, as evaluation does
        ours = enc.encode(SENTENCES)
    theirs = st.encode(SENTENCES, convert_to_tensor=True).cpu()
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls_before_pooler", "cls"])
def test_from_pretrained_round_trip(pooling, tmp_path):
    enc = Encoder.tiny(pooling=pooling, seed=4, max_length=24)
    with torch.no_grad():
        for p in enc.parameters():  # not the initial values: the loaded weights must be the saved ones
            p.add_(0.01 * torch.randn_like(p))
    enc.save(tmp_path / "m")
    back = Encoder.from_pretrained(str(tmp_path / "m"), pooling=pooling, max_length=24)
    assert (back.mlp is None) == (enc.mlp is None)
    for (k1, v1), (k2, v2) in zip(enc.state_dict().items(), back.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    torch.testing.assert_close(back.encode(SENTENCES), enc.encode(SENTENCES), rtol=0, atol=1e-6)


def test_save_first_last_avg_raises(tmp_path):
    with pytest.raises(ValueError, match="first_last_avg"):
        Encoder.tiny(pooling="first_last_avg", seed=0).save(tmp_path / "m")


def test_hub_name_loads_offline_and_matches_sentence_transformers(minilm, minilm_st):
    assert minilm.dim == 384 and minilm.pooling == "mean"
    ours = minilm.encode(SENTENCES, normalize=True)
    theirs = minilm_st.encode(SENTENCES, convert_to_tensor=True).cpu()  # the ST model normalises
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_unknown_model_offline_fails_with_a_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline"):
        Encoder.from_pretrained("no-such-org/no-such-model-xyz")


# --------------------------------------------------------------------------- the tiny encoder
def test_tiny_has_the_real_wordpiece_vocabulary():
    enc = Encoder.tiny(seed=0)
    assert enc.tokenizer.vocab_size == 30522
    assert enc.model.config.vocab_size == 30522
    assert enc.model.get_input_embeddings().weight.shape == (30522, 128)
    ids = enc.tokenize(["hello world", "Hello World!"])["input_ids"].tolist()
    assert ids[0][:4] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP]: uncased WordPiece
    assert ids[1][:5] == [101, 7592, 2088, 999, 102]


def test_tiny_sizes():
    enc = Encoder.tiny(layers=3, hidden=64, heads=4, seed=0)
    assert enc.dim == 64 and enc.model.config.num_hidden_layers == 3 and enc.model.config.num_attention_heads == 4
    assert enc.encode(["a b c"]).shape == (1, 64)


def test_seeded_tiny_encoders_are_identical_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = Encoder.tiny(seed=7, pooling="cls"), Encoder.tiny(seed=7, pooling="cls")
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = Encoder.tiny(seed=8, pooling="cls")
    assert not torch.equal(sa["model.embeddings.word_embeddings.weight"], c.state_dict()["model.embeddings.word_embeddings.weight"])
    assert not torch.equal(sa["mlp.dense.weight"], c.state_dict()["mlp.dense.weight"])


def test_encode_preserves_input_order_and_is_float32_cpu(tiny):
    one_by_one = torch.cat([tiny.encode([s]) for s in SENTENCES])
    together = tiny.encode(SENTENCES, batch_size=2)  # sorted by length inside, several batches
    assert together.dtype == torch.float32 and together.device.type == "cpu"
    torch.testing.assert_close(together, one_by_one, rtol=1e-4, atol=1e-5)
    assert not together.requires_grad
    normed = tiny.encode(SENTENCES, normalize=True)
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(len(SENTENCES)))
    assert tiny.encode([]).shape == (0, tiny.dim)


def test_encode_restores_training_mode_and_forward_has_grad(tiny):
    tiny.train()
    tiny.encode(SENTENCES[:2])
    assert tiny.training
    out = tiny(tiny.tokenize(SENTENCES[:2]))
    assert out.requires_grad and out.shape == (2, tiny.dim)


def test_dropout_is_on_in_train_mode_and_set_dropout(tiny):
    batch = tiny.tokenize(SENTENCES[:2])
    tiny.train()
    assert not torch.allclose(tiny(batch), tiny(batch))  # two dropout masks: SimCSE's two views
    tiny.set_dropout(0.0)
    assert all(m.p == 0.0 for m in tiny.model.modules() if isinstance(m, nn.Dropout))
    assert tiny.model.config.hidden_dropout_prob == 0.0
    torch.testing.assert_close(tiny(batch), tiny(batch))


def test_truncation_at_max_length():
    enc = Encoder.tiny(seed=0, max_length=8)
    batch = enc.tokenize(SENTENCES)
    assert batch["input_ids"].shape[1] == 8


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Encoder.tiny(pooling="max"), "pooling must be one of"),
        (lambda: Encoder.tiny(max_length=1), "max_length"),
        (lambda: Encoder.tiny(hidden=100, heads=3), "divisible"),
        (lambda: Encoder.tiny(seed=0).encode("a single string"), "single string"),
        (lambda: Encoder.tiny(seed=0).tokenize("a single string"), "single string"),
        (lambda: Encoder.tiny(seed=0).encode(["a"], batch_size=0), "batch_size"),
        (lambda: Encoder.tiny(seed=0).set_dropout(1.0), "dropout"),
    ],
    ids=["pooling", "max_length", "heads", "encode-str", "tokenize-str", "batch_size", "dropout"],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_from_pretrained_bad_pooling(minilm):
    with pytest.raises(ValueError, match="pooling must be one of"):
        Encoder.from_pretrained(MINILM, pooling="avg")


# --------------------------------------------------------------------------- over_embeddings
def test_over_embeddings_copies_minilm_input_layer_and_adds_fresh_layers(minilm):
    enc = Encoder.over_embeddings(MINILM, layers=2, seed=0).eval()
    assert enc.dim == minilm.dim == 384
    assert enc.model.config.num_hidden_layers == 2
    assert enc.model.config.num_attention_heads == minilm.model.config.num_attention_heads
    # the same vocabulary, and the input layer computes what MiniLM's does
    assert enc.tokenizer.get_vocab() == minilm.tokenizer.get_vocab()
    batch = minilm.tokenize(SENTENCES)
    with torch.no_grad():
        ours = enc.model.embeddings(input_ids=batch["input_ids"])
        theirs = minilm.model.embeddings(input_ids=batch["input_ids"])
    torch.testing.assert_close(ours, theirs)
    # the layers above are fresh: not MiniLM's first two layers
    q_ours = enc.model.encoder.layer[0].attention.self.query.weight
    q_minilm = minilm.model.encoder.layer[0].attention.self.query.weight
    assert q_ours.shape == q_minilm.shape and not torch.allclose(q_ours, q_minilm)


def test_over_embeddings_freezes_the_input_layer_only():
    frozen = Encoder.over_embeddings(seed=0)
    names = {n for n, p in frozen.named_parameters() if not p.requires_grad}
    assert names and all(n.startswith("model.embeddings.") for n in names)
    assert all(p.requires_grad for n, p in frozen.named_parameters() if not n.startswith("model.embeddings."))
    trainable = Encoder.over_embeddings(seed=0, freeze_embeddings=False)
    assert all(p.requires_grad for p in trainable.parameters())


def test_over_embeddings_training_moves_layers_not_frozen_embeddings():
    from cl_toolkit.simcse import unsup_simcse_loss

    enc = Encoder.over_embeddings(seed=0).train()
    before = {n: p.detach().clone() for n, p in enc.named_parameters()}
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=1e-3)
    unsup_simcse_loss(enc, SENTENCES).backward()
    opt.step()
    for n, p in enc.named_parameters():
        if n.startswith("model.embeddings."):
            assert torch.equal(p, before[n]), n
    assert not torch.equal(enc.model.encoder.layer[0].output.dense.weight, before["model.encoder.layer.0.output.dense.weight"])


def test_over_embeddings_seeding():
    a, b = Encoder.over_embeddings(seed=3), Encoder.over_embeddings(seed=3)
    c = Encoder.over_embeddings(seed=4)
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), n
        if n.startswith("model.encoder.") and n.endswith(".weight") and "LayerNorm" not in n:
            assert not torch.equal(pa, pc), n
    # unseeded encoders draw from the global generator: two calls differ
    u1, u2 = Encoder.over_embeddings(), Encoder.over_embeddings()
    w1 = u1.model.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(w1, u2.model.encoder.layer[0].attention.self.query.weight)


def test_over_embeddings_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="layers must be at least 1, got 0"):
        Encoder.over_embeddings(layers=0)
    from transformers import DistilBertConfig, DistilBertModel

    tok_src = Encoder.tiny(seed=0).tokenizer
    DistilBertModel(DistilBertConfig(vocab_size=tok_src.vocab_size, dim=32, n_layers=1, n_heads=2,
                                     hidden_dim=64)).save_pretrained(tmp_path)
    tok_src.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="needs a BERT-type model.*distilbert"):
        Encoder.over_embeddings(str(tmp_path))


def test_encode_static_is_the_mean_input_word_vector():
    from cl_toolkit.models import Encoder

    enc = Encoder.tiny(seed=0)
    table = enc.model.get_input_embeddings().weight.detach()
    ids = enc.tokenizer("the cat sat", add_special_tokens=False)["input_ids"]
    out = enc.encode_static(["the cat sat", "the cat sat", ""])
    torch.testing.assert_close(out[0], table[ids].mean(0))
    assert torch.equal(out[0], out[1]) and torch.equal(out[2], torch.zeros(enc.dim))
    assert torch.allclose(enc.encode_static(["a b"], normalize=True).norm(dim=1), torch.ones(1))
    with pytest.raises(ValueError, match="list of sentences"):
        enc.encode_static("a b")
