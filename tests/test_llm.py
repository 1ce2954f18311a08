"""cl_toolkit.llm: causal masking, last-token / mean / echo pooling, the decoder embedder
with LoRA (the ``full`` profile, on a tiny random Qwen2 laid out in the hub cache)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from cl_toolkit.data import STSPairs, load_stsb
from cl_toolkit.evaluate import spearman_cosine
from cl_toolkit.llm import (QWEN, CausalEncoder, DecoderEmbedder, LLMEmbed, causal_mask, echo_batch,
                            last_token_index, pool_tokens, sts_by_pooling)
from cl_toolkit.losses import info_nce
from cl_toolkit.run import run

SENTENCES = ["a man is playing a guitar on the stage tonight", "the cat sat", "two dogs run across a snowy field"]
TRIPLETS = [
    ("A man plays a guitar.", "A person makes music.", "Nobody is playing anything."),
    ("Two dogs run in the snow.", "Animals are outside.", "The dogs are asleep indoors."),
    ("A woman reads a book.", "Someone is reading.", "The woman is swimming."),
    ("Kids play football in a park.", "Children are outdoors.", "The kids are in class."),
]


def _changed_after(model, position: int):
    """Hidden states of SENTENCES[0] and of a copy whose tokens after ``position`` are replaced."""
    batch = model.tokenize(SENTENCES[:1])
    other = {k: v.clone() for k, v in batch.items()}
    other["input_ids"][0, position + 1 : -1] = 2000  # a different word after `position`, [SEP] kept
    with torch.no_grad():
        return model.hidden_states(batch)[0], model.hidden_states(other)[0]


# ----------------------------------------------------------------------------- the causal mask
def test_causal_mask_shape_and_values():
    att = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    m = causal_mask(att)
    assert m.shape == (2, 1, 4, 4) and m.dtype == torch.bool
    naive = torch.tensor([[[i >= j and att[b, j] == 1 for j in range(4)] for i in range(4)] for b in range(2)])
    assert torch.equal(m[:, 0], naive)
    with pytest.raises(ValueError, match=r"attention_mask must be \[B, L\]"):
        causal_mask(att[0])


@pytest.mark.parametrize("position", [2, 5])
def test_causal_outputs_ignore_later_tokens(tiny, position):
    model = CausalEncoder(tiny, causal=True).eval()
    h, h_other = _changed_after(model, position)
    assert torch.allclose(h[: position + 1], h_other[: position + 1], atol=1e-6)  # blind to the future
    assert not torch.allclose(h[position + 1 :], h_other[position + 1 :], atol=1e-3)  # the changed tokens


def test_bidirectional_outputs_see_later_tokens(tiny):
    """The control: without the mask the same change moves the early tokens, so the test above can fail."""
    model = CausalEncoder(tiny, causal=False).eval()
    h, h_other = _changed_after(model, 2)
    assert not torch.allclose(h[:3], h_other[:3], atol=1e-3)


def test_causal_minilm_ignores_later_tokens(minilm):
    model = CausalEncoder(minilm, causal=True).eval()
    h, h_other = _changed_after(model, 3)
    assert torch.allclose(h[:4], h_other[:4], atol=1e-5)
    assert not torch.allclose(h[4:], h_other[4:], atol=1e-3)


def test_causal_mask_equals_transformers_decoder_mode(tiny):
    """Independent check: transformers' own causal masking (``config.is_decoder``) gives the same states."""
    model = CausalEncoder(tiny, causal=True).eval()
    batch = model.tokenize(SENTENCES)
    with torch.no_grad():
        ours = model.hidden_states(batch)
        bert = copy.deepcopy(tiny.model).eval()
        bert.config.is_decoder = True
        theirs = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch["token_type_ids"], use_cache=False).last_hidden_state
    real = batch["attention_mask"].bool()
    assert torch.allclose(ours[real], theirs[real], atol=1e-5)


# ----------------------------------------------------------------------------- pooling
def test_last_token_index_right_and_left_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert last_token_index(right).tolist() == [2, 4, 0]
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_token_index(left).tolist() == [4, 4]
    with pytest.raises(ValueError, match="at least one real token"):
        last_token_index(torch.tensor([[1, 1], [0, 0]]))


def test_pool_tokens_against_loops():
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 3)
    att = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pool = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 0]])
    mean = torch.stack([hidden[0, :3].mean(0), hidden[1].mean(0)])
    last = torch.stack([hidden[0, 2], hidden[1, 4]])
    echo = torch.stack([hidden[0, 1:3].mean(0), hidden[1, 2:4].mean(0)])
    assert torch.allclose(pool_tokens(hidden, att, "mean"), mean)
    assert torch.allclose(pool_tokens(hidden, att, "last"), last)
    assert torch.allclose(pool_tokens(hidden, att, "echo", pool), echo)
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_tokens(hidden, att, "cls")
    with pytest.raises(ValueError, match="echo pooling needs pool_mask"):
        pool_tokens(hidden, att, "echo")


def test_bidirectional_mean_equals_sentence_transformers(minilm, minilm_st):
    ours = CausalEncoder(minilm, causal=False, pooling="mean").eval().encode(SENTENCES, normalize=True)
    theirs = torch.as_tensor(minilm_st.encode(SENTENCES, normalize_embeddings=True))
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_echo_batch_layout(tiny):
    batch = echo_batch(tiny.tokenizer, SENTENCES, max_length=32)
    tok = tiny.tokenizer
    for i, s in enumerate(SENTENCES):
        ids = tok(s, add_special_tokens=False)["input_ids"]
        n = len(ids)
        row = batch["input_ids"][i]
        assert row[: 2 * n + 3].tolist() == [tok.cls_token_id, *ids, tok.sep_token_id, *ids, tok.sep_token_id]
        assert batch["pool_mask"][i].nonzero().flatten().tolist() == list(range(n + 2, 2 * n + 2))
        assert batch["attention_mask"][i].sum() == 2 * n + 3
    assert int(batch["token_type_ids"].abs().sum()) == 0


def test_echo_first_tokens_see_the_whole_sentence(tiny):
    """Under the causal mask the second copy's first word depends on the sentence's last word."""
    model = CausalEncoder(tiny, causal=True, pooling="echo").eval()
    a, b = "the cat sat on the mat", "the cat sat on the sofa"
    ba, bb = model.tokenize([a]), model.tokenize([b])
    with torch.no_grad():
        ha, hb = model.hidden_states(ba)[0], model.hidden_states(bb)[0]
    first_copy, second_copy = 1, int(ba["pool_mask"][0].nonzero()[0])
    assert torch.allclose(ha[first_copy], hb[first_copy], atol=1e-6)  # "the" (1st copy): blind to "mat"/"sofa"
    assert not torch.allclose(ha[second_copy], hb[second_copy], atol=1e-3)  # "the" (2nd copy): has seen it


def test_sts_by_pooling_equals_one_pooling_at_a_time(tiny):
    full = load_stsb("test")
    pairs = STSPairs(full.sentences1[:60], full.sentences2[:60], full.scores[:60])
    model = CausalEncoder(tiny, causal=True, pooling="mean")
    both = sts_by_pooling(model, pairs, ("mean", "last"))
    for pooling in ("mean", "last"):
        model.pooling = pooling
        assert both[pooling] == pytest.approx(spearman_cosine(model, pairs), abs=1e-6)
    model.pooling = "echo"
    with pytest.raises(ValueError, match="echo"):
        sts_by_pooling(model, pairs)


# ----------------------------------------------------------------------------- the recipe (quick path)
def test_step_is_info_nce_with_hard_negatives(tiny):
    model = CausalEncoder(tiny, causal=True, pooling="last").eval()
    recipe = LLMEmbed()
    loss = recipe.step(model, TRIPLETS)
    a, p, n = (list(x) for x in zip(*TRIPLETS))
    q, k, neg = model(model.tokenize(a)), model(model.tokenize(p)), model(model.tokenize(n))
    # a naive float64 loop: row i's candidates are every positive and every hard negative
    total = 0.0
    for i in range(len(a)):
        cands = torch.cat([k, neg]).double()
        sims = F.cosine_similarity(q[i].double()[None], cands) / recipe.temperature
        total += -(sims[i] - torch.logsumexp(sims, 0))
    assert loss.item() == pytest.approx(total.item() / len(a), abs=1e-5)
    assert loss.item() == pytest.approx(info_nce(q, k, 0.05, negatives=neg).item(), abs=1e-6)


def test_quick_recipe_trains_through_run(tiny):
    model = CausalEncoder(tiny, causal=True, pooling="last")
    before = copy.deepcopy(model.state_dict())
    result = run(LLMEmbed(steps=2, batch_size=4, lr=1e-3), model=model, data=TRIPLETS * 2, device="cpu")
    assert result.result.steps_done == 2 and all(math.isfinite(x) for x in result.result.losses)
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())


@pytest.mark.parametrize("kwargs, message", [
    (dict(pooling="cls"), "pooling must be one of"),
    (dict(decoder=True, pooling="echo"), "echo pooling is implemented for the BERT-type"),
    (dict(lora_r=8), "lora_r applies to decoder=True"),
])
def test_recipe_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LLMEmbed(**kwargs)


# ----------------------------------------------------------------------------- the full profile, offline
WORDS = sorted({w.strip(".,").lower() for t in TRIPLETS for s in t for w in s.split()}
               | {"instruct:", "query:", "retrieve", "semantically", "similar", "text"})


@pytest.fixture
def qwen_hub(hub_cache):
    """A tiny random Qwen2 (2 layers, width 64) with a word-level tokenizer, laid out in a
    Hugging Face hub cache under the real name ``Qwen/Qwen2.5-0.5B``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    snap = hub_cache(QWEN)

    vocab = {w: i for i, w in enumerate(["[UNK]", "<|endoftext|>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    fast.save_pretrained(snap)
    config = Qwen2Config(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    Qwen2Model(config).save_pretrained(snap)
    return snap


def test_full_profile_is_e5_mistral_style():
    recipe = LLMEmbed.for_profile("full")
    assert recipe.model == QWEN and recipe.decoder and recipe.lora_r > 0 and recipe.pooling == "last"
    assert recipe.instruction.startswith("Instruct:")


def test_decoder_embedder_pools_the_eos_state(qwen_hub):
    model = DecoderEmbedder.from_pretrained(QWEN, instruction="query: ").eval()
    assert model.dim == 64  # the stand-in, found by its hub name
    batch = model.tokenize(["a man plays a guitar", "two dogs"])
    eos = model.tokenizer.eos_token_id
    last = last_token_index(batch["attention_mask"])
    assert batch["input_ids"][torch.arange(2), last].tolist() == [eos, eos]
    expected = model.tokenizer("query: a man plays a guitar", add_special_tokens=False)["input_ids"]
    assert batch["input_ids"][0, : int(last[0])].tolist() == expected  # the instruction, then the text
    assert model.tokenize(["two dogs"], instruction="")["input_ids"][0].tolist() == [
        *model.tokenizer("two dogs", add_special_tokens=False)["input_ids"], eos]
    with torch.no_grad():
        hidden = model.model(**batch).last_hidden_state
        emb = model(batch)
    assert torch.allclose(emb, hidden[torch.arange(2), last], atol=1e-6)
    # the decoder is causal: a later word does not change an earlier token's state
    other = model.tokenize(["a man plays a dogs"])
    with torch.no_grad():
        h1 = model.model(**model.tokenize(["a man plays a guitar"])).last_hidden_state[0]
        h2 = model.model(**other).last_hidden_state[0]
    assert torch.allclose(h1[:4], h2[:4], atol=1e-5) and not torch.allclose(h1[4:], h2[4:], atol=1e-4)


def test_full_profile_trains_lora_only_offline(qwen_hub):
    recipe = LLMEmbed.for_profile("full", steps=2, batch_size=4, lr=1e-2, warmup_steps=0)
    model = recipe.build_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)  # only the adapters train
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = run(recipe, model=model, data=TRIPLETS * 2, device="cpu")
    assert result.result.steps_done == 2 and all(math.isfinite(x) for x in result.result.losses)
    after = dict(result.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if n not in trainable)  # base frozen
    assert any(not torch.equal(before[n], after[n]) for n in trainable)  # adapters moved
    emb = result.model.encode(["a man plays a guitar", "two dogs"])
    assert emb.shape == (2, 64) and torch.isfinite(emb).all()
