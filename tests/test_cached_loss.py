"""The cached (GradCache) loss of cl_toolkit.losses against the plain loss.

Equal loss and equal gradients (to 1e-5) with dropout on, at a memory that does
not grow with the batch; and a control showing that the test sees the
difference when the dropout masks are *not* replayed.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from cl_toolkit import losses
from cl_toolkit.losses import cached_info_nce, cached_loss, info_nce
from cl_toolkit.rng import RngSnapshot
from cl_toolkit.models import Encoder
from cl_toolkit.memory import saved_activation_bytes
from cl_toolkit.simcse import SimCSE, cached_sup_simcse_loss, cached_unsup_simcse_loss, unsup_simcse_loss
from cl_toolkit.train import TrainConfig, fit

WORDS = "cats dogs birds fish trees rivers cars music bread snow".split()
SENTENCES = [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 3 + i % 7)) + f" number {i}" for i in range(23)]
TRIPLETS = [(s, f"a sentence about {s}", f"nothing like {WORDS[i % len(WORDS)]}") for i, s in enumerate(SENTENCES)]


@pytest.fixture
def enc():
    """A small seeded encoder in train mode (dropout 0.1 on)."""
    return Encoder.tiny(layers=2, hidden=64, heads=2, seed=0).train()


def grads_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def assert_same_grads(g1: dict, g2: dict, tol: float = 1e-5) -> None:
    assert g1.keys() == g2.keys() and len(g1) > 0
    for name in g1:
        scale = max(1.0, g1[name].abs().max().item())
        assert (g1[name] - g2[name]).abs().max().item() <= tol * scale, name


def chunked_plain(encoder, columns, chunk: int) -> list[torch.Tensor]:
    """The oracle: encode each column chunk by chunk WITH a graph (the memory-hungry way),
    each chunk cut to its own longest sequence (the tokenizer pads on the right)."""
    out = []
    for batch in columns:
        n = batch["input_ids"].shape[0]
        parts = []
        for i in range(0, n, chunk):
            width = int(batch["attention_mask"][i : i + chunk].sum(1).max())
            parts.append(encoder({k: v[i : i + chunk, :width] for k, v in batch.items()}))
        out.append(torch.cat(parts))
    return out


# --------------------------------------------------------------------------- equal to the plain loss
def test_one_chunk_is_the_plain_two_pass_step_exactly(enc):
    """One chunk per view: the same dropout masks as two plain forward passes, view after view."""
    batch = enc.tokenize(SENTENCES)
    torch.manual_seed(1)
    plain = info_nce(enc(batch), enc(batch), 0.05)
    plain.backward()
    g_plain, after_plain = grads_of(enc), torch.rand(3)

    torch.manual_seed(1)
    cached = cached_unsup_simcse_loss(enc, SENTENCES, chunk_size=len(SENTENCES))
    cached.backward()
    g_cached, after_cached = grads_of(enc), torch.rand(3)

    assert abs(plain.item() - cached.item()) < 1e-6
    assert_same_grads(g_plain, g_cached)
    assert torch.equal(after_plain, after_cached)  # the replay leaves the random stream where it was


@pytest.mark.parametrize("chunk", [1, 5, 8])
def test_chunked_equals_plain_loss_and_gradients_with_dropout_on(enc, chunk):
    batch = enc.tokenize(SENTENCES)
    torch.manual_seed(2)
    z1, z2 = chunked_plain(enc, [batch, batch], chunk)
    assert not torch.allclose(z1, z2, atol=1e-4)  # dropout is on: the two views differ
    plain = info_nce(z1, z2, 0.05)
    plain.backward()
    g_plain = grads_of(enc)

    torch.manual_seed(2)
    cached = cached_info_nce(enc, batch, batch, 0.05, chunk_size=chunk)
    cached.backward()
    assert abs(plain.item() - cached.item()) < 1e-5
    assert_same_grads(g_plain, grads_of(enc))


def test_supervised_with_hard_negatives_and_weight(enc):
    columns = [enc.tokenize(list(col)) for col in zip(*TRIPLETS)]
    torch.manual_seed(3)
    z1, z2, z3 = chunked_plain(enc, columns, 6)
    plain = info_nce(z1, z2, 0.05, negatives=z3, hard_negative_weight=0.7)
    plain.backward()
    g_plain = grads_of(enc)

    torch.manual_seed(3)
    cached = cached_sup_simcse_loss(enc, TRIPLETS, 0.05, hard_negative_weight=0.7, chunk_size=6)
    cached.backward()
    assert abs(plain.item() - cached.item()) < 1e-5
    assert_same_grads(g_plain, grads_of(enc))


def test_without_dropout_equals_the_one_shot_forward(enc):
    enc.set_dropout(0.0)
    plain = unsup_simcse_loss(enc, SENTENCES)
    plain.backward()
    g_plain = grads_of(enc)
    cached = cached_unsup_simcse_loss(enc, SENTENCES, chunk_size=4)
    cached.backward()
    assert abs(plain.item() - cached.item()) < 1e-5
    assert_same_grads(g_plain, grads_of(enc))


def test_control_without_replaying_the_masks_the_gradients_differ(enc, monkeypatch):
    """The check above can fail: drop the RNG replay and the gradients no longer match."""
    batch = enc.tokenize(SENTENCES)
    torch.manual_seed(4)
    z1, z2 = chunked_plain(enc, [batch, batch], 5)
    info_nce(z1, z2, 0.05).backward()
    g_plain = grads_of(enc)

    monkeypatch.setattr(RngSnapshot, "replay", lambda self: contextlib.nullcontext())
    torch.manual_seed(4)
    cached_info_nce(enc, batch, batch, 0.05, chunk_size=5).backward()
    g_wrong = grads_of(enc)
    worst = max((g_plain[n] - g_wrong[n]).abs().max().item() / g_plain[n].abs().max().item() for n in g_plain)
    assert worst > 1e-3


def test_generic_cached_loss_any_loss_function(enc):
    """cached_loss takes any loss of the embeddings (here: alignment + uniformity)."""
    batch = enc.tokenize(SENTENCES)
    fn = lambda a, b: losses.align_loss(a, b) + losses.uniform_loss(torch.cat([a, b]))
    torch.manual_seed(5)
    plain = fn(*chunked_plain(enc, [batch, batch], 7))
    plain.backward()
    g_plain = grads_of(enc)
    torch.manual_seed(5)
    cached = cached_loss(enc, [batch, batch], fn, chunk_size=7)
    cached.backward()
    assert abs(plain.item() - cached.item()) < 1e-5
    assert_same_grads(g_plain, grads_of(enc))


def test_training_loop_step_is_the_same(enc):
    """Through fit (zero_grad between the loss and backward, clipping, AdamW): same weights."""
    import copy

    enc.set_dropout(0.0)  # the plain step's one pass over [x; x] draws other masks than two chunked passes
    other = copy.deepcopy(enc)
    data = SENTENCES * 3
    cfg = TrainConfig(steps=2, batch_size=16, lr=1e-3, seed=0)
    plain = SimCSE(batch_size=16)
    cached = SimCSE(batch_size=16, chunk_size=5)
    torch.manual_seed(6)
    fit(enc, data, plain.step, cfg)
    torch.manual_seed(6)
    fit(other, data, cached.step, cfg)
    for (name, p), q in zip(enc.named_parameters(), other.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name


def test_chunks_are_cut_to_their_longest_sequence(enc):
    widths = []
    encode = lambda rows: (widths.append(rows["input_ids"].shape[1]), enc(rows))[1]
    sentences = ["short one", "a much longer sentence with quite a few more words in it than the others", "tiny", "two words"]
    batch = enc.tokenize(sentences)
    cached_info_nce(encode, batch, batch, chunk_size=2).backward()
    full = batch["input_ids"].shape[1]
    lengths = batch["attention_mask"].sum(1).tolist()
    expected = [full, max(lengths[2:])] * 2  # per column: chunk 1 holds the long sentence, chunk 2 does not
    assert widths == expected * 2  # first pass, then the replay
    assert expected[1] < full


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_gpu_the_cuda_dropout_masks_are_replayed():
    """The batch is tokenized on the CPU, the dropout runs on the GPU: the CUDA state must be replayed."""
    enc = Encoder.tiny(layers=2, hidden=64, heads=2, seed=0).cuda().train()
    batch = enc.tokenize(SENTENCES)
    torch.manual_seed(7)
    z1, z2 = chunked_plain(enc, [batch, batch], 5)
    info_nce(z1, z2, 0.05).backward()
    g_plain = grads_of(enc)
    torch.manual_seed(7)
    cached_info_nce(enc, batch, batch, 0.05, chunk_size=5).backward()
    assert_same_grads(g_plain, grads_of(enc), tol=1e-4)


# --------------------------------------------------------------------------- memory
def test_saved_activation_bytes_counts_what_autograd_keeps():
    lin = torch.nn.Linear(16, 8)
    x = torch.randn(10, 16, requires_grad=True)
    # a Linear saves its input (10x16 floats) and its weight (a parameter, excluded)
    peak = saved_activation_bytes(lambda: lin(x).sum().backward(), exclude=lin.parameters())
    assert peak == 10 * 16 * 4


def test_cached_memory_does_not_grow_with_the_batch(enc):
    sentences = (SENTENCES * 12)[:256]

    def peak(n: int, cached: bool) -> int:
        step = (lambda: cached_unsup_simcse_loss(enc, sentences[:n], chunk_size=16)) if cached else (
            lambda: unsup_simcse_loss(enc, sentences[:n])
        )
        return saved_activation_bytes(lambda: step().backward(), exclude=enc.parameters())

    plain_64, plain_256 = peak(64, False), peak(256, False)
    cached_64, cached_256 = peak(64, True), peak(256, True)
    assert plain_256 > 3 * plain_64  # the plain loss keeps every row's activations
    assert cached_64 < plain_64 / 2
    # the cached loss keeps one chunk of activations, plus the [N, d] embeddings and [N, N] logits
    d = enc.dim
    assert cached_256 - cached_64 < 4 * (2 * (256 - 64) * d + 3 * (256**2 - 64**2)) * 4 + 1


# --------------------------------------------------------------------------- arguments
def test_bad_arguments_raise(enc):
    batch = enc.tokenize(SENTENCES)
    with pytest.raises(ValueError, match="chunk_size"):
        cached_info_nce(enc, batch, batch, chunk_size=0)
    with pytest.raises(ValueError, match="same number of rows"):
        cached_info_nce(enc, batch, enc.tokenize(SENTENCES[:5]))
    with pytest.raises(ValueError, match="temperature"):
        cached_info_nce(enc, batch, batch, temperature=0.0)
