"""MoCo: the queue, the momentum update, the loss, and checkpointing through `run`."""

from __future__ import annotations

import copy
import math
from collections import deque

import pytest
import torch
import torch.nn.functional as F

from cl_toolkit.losses import info_nce
from cl_toolkit.models import Encoder
from cl_toolkit.moco import MoCo, MoCoRecipe, moco_loss, moco_step, momentum_update
from cl_toolkit.run import Recipe, run
from cl_toolkit.simcse import unsup_simcse_loss

SENTENCES = [f"sentence number {i} is about {w}" for i, w in enumerate("cats dogs rain sun tea code maps jazz".split() * 5)]


def tiny(seed: int = 0) -> Encoder:
    return Encoder.tiny(layers=1, hidden=32, heads=2, seed=seed, max_length=16)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return tiny()


# --------------------------------------------------------------------------- queue
@pytest.mark.parametrize("k,b", [(8, 4), (7, 3), (5, 2), (4, 6)])
def test_queue_is_fifo_with_wraparound(encoder, k, b):
    """Against a deque(maxlen=K): the newest keys in, the oldest out, any K and batch size."""
    moco = MoCo(encoder, queue_size=k)
    oracle: deque = deque(maxlen=k)
    g = torch.Generator().manual_seed(0)
    pushed, ptr = 0, 0
    for _ in range(5):
        keys = torch.randn(b, encoder.dim, generator=g)
        moco.enqueue(keys)
        oracle.extend(F.normalize(keys, dim=-1))
        pushed += b
        ptr = (ptr + min(b, k)) % k
        assert torch.equal(moco.ordered_queue(), torch.stack(list(oracle)))
        assert int(moco.queue_len) == min(pushed, k)
        assert int(moco.queue_ptr) == ptr
        assert moco.negatives().shape == (min(pushed, k), encoder.dim)


def test_queue_pointer_wraps_when_batch_does_not_divide_queue(encoder):
    d = encoder.dim
    eye = torch.eye(d)
    moco = MoCo(encoder, queue_size=5, track_texts=True)
    for i in range(3):  # batches of 2 into 5 slots: 0,1 | 2,3 | 4,0
        moco.enqueue(eye[2 * i : 2 * i + 2], texts=[f"s{2 * i}", f"s{2 * i + 1}"])
    assert int(moco.queue_ptr) == 1 and int(moco.queue_len) == 5
    assert torch.equal(moco.queue, eye[[5, 1, 2, 3, 4]])  # slot 0 overwritten by the newest key
    assert torch.equal(moco.ordered_queue(), eye[[1, 2, 3, 4, 5]])  # oldest → newest
    assert moco.queue_texts == ["s5", "s1", "s2", "s3", "s4"]


def test_queue_size_zero_is_a_no_op(encoder):
    moco = MoCo(encoder, queue_size=0)
    moco.enqueue(torch.randn(3, encoder.dim))
    assert moco.negatives().shape == (0, encoder.dim)
    with pytest.raises(ValueError):
        MoCo(encoder, queue_size=0, in_batch_negatives=False)


def test_no_gradient_reaches_the_key_encoder_or_the_queue():
    torch.manual_seed(0)
    moco = MoCo(tiny(), queue_size=6, momentum=0.9, positive="key", in_batch_negatives=False)
    moco.train()
    moco.enqueue(torch.randn(6, moco.dim))  # a full queue, so the loss has negatives
    before = moco.queue.clone()
    loss = moco_step(moco, SENTENCES[:4])
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in moco.key.parameters())
    assert not moco.queue.requires_grad
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in moco.query.parameters())
    # the step enqueued the 4 new keys after computing the loss: 2 old keys survive
    assert torch.equal(moco.ordered_queue()[:2], before[4:])


def test_key_encoder_has_no_dropout_and_follows_the_query_mode(encoder):
    moco = MoCo(copy.deepcopy(encoder), queue_size=4)
    moco.train()
    batch = moco.query.tokenize(SENTENCES[:3])
    assert torch.equal(moco.encode_keys(batch), moco.encode_keys(batch))  # deterministic: dropout off
    assert not torch.equal(moco.query(batch), moco.query(batch))  # the query encoder keeps its dropout


# --------------------------------------------------------------------------- momentum
def test_momentum_update_matches_naive_loop():
    key, query = tiny(seed=1), tiny(seed=2)
    m = 0.7
    expected = {n: m * pk.detach().clone() + (1 - m) * pq.detach() for (n, pk), (_, pq) in
                zip(key.named_parameters(), query.named_parameters())}
    momentum_update(key, query, m)
    for n, p in key.named_parameters():
        assert torch.allclose(p, expected[n], atol=1e-6, rtol=0), n
    assert not torch.equal(key.model.embeddings.word_embeddings.weight, query.model.embeddings.word_embeddings.weight)


def test_momentum_zero_copies_and_one_freezes():
    key, query = tiny(seed=1), tiny(seed=2)
    old = {n: p.detach().clone() for n, p in key.named_parameters()}
    momentum_update(key, query, 1.0)
    assert all(torch.equal(p, old[n]) for n, p in key.named_parameters())
    momentum_update(key, query, 0.0)
    assert all(torch.equal(pk, pq) for pk, pq in zip(key.parameters(), query.parameters()))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            momentum_update(key, query, bad)


# --------------------------------------------------------------------------- loss
def _naive_moco_v1_loss(q, k, queue, t):
    """Per example: logits [q·k⁺, q·queue] / τ, label 0 (MoCo v1, Algorithm 1)."""
    losses = []
    for i in range(q.shape[0]):
        qi, ki = F.normalize(q[i], dim=0), F.normalize(k[i], dim=0)
        logits = [float(qi @ ki) / t] + [float(qi @ F.normalize(u, dim=0)) / t for u in queue]
        losses.append(-logits[0] + math.log(sum(math.exp(x) for x in logits)))
    return sum(losses) / len(losses)


def test_moco_loss_equals_info_nce_with_the_queue_as_negatives():
    g = torch.Generator().manual_seed(0)
    q, k, queue = (torch.randn(n, 8, generator=g) for n in (5, 5, 11))
    got = moco_loss(q, k, queue, 0.1, in_batch_negatives=True)
    assert torch.allclose(got, info_nce(q, k, 0.1, negatives=queue), atol=1e-6)
    # an empty queue is plain in-batch InfoNCE (SimCSE)
    assert torch.allclose(moco_loss(q, k, queue[:0], 0.1), info_nce(q, k, 0.1), atol=1e-6)
    assert torch.allclose(moco_loss(q, k, None, 0.1), info_nce(q, k, 0.1), atol=1e-6)


def test_moco_v1_loss_equals_naive_loop_and_ignores_in_batch_keys():
    g = torch.Generator().manual_seed(1)
    q, k, queue = (torch.randn(n, 8, generator=g) for n in (4, 4, 9))
    got = moco_loss(q, k, queue, 0.07, in_batch_negatives=False)
    assert math.isclose(float(got), _naive_moco_v1_loss(q, k, queue, 0.07), rel_tol=1e-5)
    # the other rows' keys are not negatives: changing them leaves row 0's loss unchanged
    k2 = k.clone()
    k2[1:] = torch.randn(3, 8, generator=g)
    row0 = lambda kk: float(moco_loss(q[:1], kk[:1], queue, 0.07, in_batch_negatives=False))
    assert row0(k) == row0(k2)
    assert not math.isclose(float(moco_loss(q, k, queue, 0.07, True)), float(got), rel_tol=1e-3)
    with pytest.raises(ValueError):
        moco_loss(q, k, None, 0.07, in_batch_negatives=False)
    with pytest.raises(ValueError):
        moco_loss(q, k, torch.randn(3, 7), 0.07)


def test_queue_size_zero_step_is_unsup_simcse(encoder):
    """With no queue, MoCo's step and unsupervised SimCSE's are the same computation."""
    enc = copy.deepcopy(encoder)
    moco = MoCo(enc, queue_size=0)
    moco.train()
    torch.manual_seed(3)
    a = moco_step(moco, SENTENCES[:6])
    torch.manual_seed(3)
    b = unsup_simcse_loss(enc, SENTENCES[:6], 0.05)
    assert torch.equal(a, b)


def test_pair_step_uses_the_paired_sentence_and_the_queue(encoder):
    """On (anchor, positive) pairs: InfoNCE of the anchors against the positives plus the queue."""
    moco = MoCo(copy.deepcopy(encoder), queue_size=5, momentum=0.9)
    moco.train()
    moco.enqueue(torch.randn(5, moco.dim))
    queue = moco.queue.clone()
    pairs = [(SENTENCES[i], SENTENCES[i + 8]) for i in range(4)]
    torch.manual_seed(5)
    got = moco_step(moco, pairs)
    torch.manual_seed(5)
    q = moco.query(moco.query.tokenize([a for a, _ in pairs]))
    k = moco.query(moco.query.tokenize([p for _, p in pairs]))
    assert torch.allclose(got, info_nce(q, k, 0.05, negatives=queue), atol=1e-6)
    with torch.no_grad():  # the positives' keys went into the queue
        keys = F.normalize(moco.key(moco.key.tokenize([p for _, p in pairs])), dim=-1)
    assert torch.allclose(moco.ordered_queue()[-4:], keys, atol=1e-6)


# --------------------------------------------------------------------------- training and checkpoints
class NoEval(MoCoRecipe):
    evaluate = Recipe.evaluate  # no STS-B evaluation (and so no reload of the best weights)


def _run(out_dir, stop_after=None, momentum=0.9):
    torch.manual_seed(0)
    moco = MoCo(tiny(), queue_size=6, momentum=momentum, track_texts=True)  # 6 is not a multiple of 4
    recipe = NoEval(steps=6, batch_size=4, lr=1e-3, eval_every=2, queue_size=6, momentum=momentum)
    trained = run(recipe, out_dir=out_dir, model=moco, data=SENTENCES, device="cpu", stop_after=stop_after)
    return trained.model, trained.result


def test_resume_restores_weights_and_queue_bit_for_bit(tmp_path):
    full, _ = _run(tmp_path / "full")
    _, part = _run(tmp_path / "resumed", stop_after=4)
    assert part.stopped_early and part.steps_done == 4
    resumed, result = _run(tmp_path / "resumed")
    assert result.resumed_from == 4
    sd_full, sd_res = full.state_dict(), resumed.state_dict()
    assert {"queue", "queue_ptr", "queue_len"} <= set(sd_full)
    assert int(sd_full["queue_len"]) == 6 and int(sd_full["queue_ptr"]) == (6 * 4) % 6
    for name in sd_full:
        assert torch.equal(sd_full[name], sd_res[name]), name
    # training moved the query encoder, the momentum update moved the key encoder
    fresh = MoCo(tiny(), queue_size=6)
    assert not torch.equal(full.query.model.encoder.layer[0].output.dense.weight,
                           fresh.query.model.encoder.layer[0].output.dense.weight)
    assert not torch.equal(full.key.model.encoder.layer[0].output.dense.weight,
                           fresh.key.model.encoder.layer[0].output.dense.weight)


def test_momentum_one_keeps_the_key_encoder_frozen_during_training(tmp_path):
    moco, _ = _run(tmp_path / "frozen", momentum=1.0)
    fresh = tiny()
    assert all(torch.equal(a, b) for a, b in zip(moco.key.parameters(), fresh.parameters()))
    assert 0.999 < moco.queue_consistency() <= 1.0 + 1e-6  # a frozen key encoder re-encodes its own keys
    assert moco.key_query_agreement() < 0.999  # ... while the trained query encoder has moved away


def test_wrapper_encodes_with_the_query_encoder(encoder):
    moco = MoCo(copy.deepcopy(encoder), queue_size=2)
    assert torch.equal(moco.encode(SENTENCES[:3]), moco.query.encode(SENTENCES[:3]))


class ConstantScore(MoCoRecipe):
    def evaluate(self, model):
        return 1.0


def test_the_recipe_builds_trains_and_records():
    recipe = ConstantScore(model="tiny", steps=3, batch_size=4, lr=1e-3, queue_size=6, momentum=0.5)
    trained = run(recipe, data=SENTENCES, device="cpu")
    model, result = trained.model, trained.result
    assert isinstance(model, MoCo) and model.momentum == 0.5
    assert result.steps_done == 3 and int(model.queue_len) == 6 and int(model.queue_ptr) == (3 * 4) % 6
    assert trained.config["queue_size"] == 6 and trained.config["recipe"] == "ConstantScore"
    with pytest.raises(ValueError):
        MoCoRecipe.for_profile("medium")
    assert MoCoRecipe.for_profile("full").queue_size == 160


def test_the_recipe_trains_on_nli_pairs():
    recipe = MoCoRecipe(corpus=("nli",), max_examples=12)
    pairs = recipe.load_data()
    assert len(pairs) == 12 and all(len(p) == 2 for p in pairs)  # (premise, entailment); no contradiction


def test_a_fresh_moco_v1_model_trains():
    """MoCo v1 (the key encoder's positive, the queue as the only negatives) can take its first
    step: its queue starts full of random unit vectors, as in MoCo's reference code."""
    recipe = MoCoRecipe(model="tiny", steps=3, batch_size=4, lr=1e-3, queue_size=8, positive="key",
                        in_batch_negatives=False, eval_every=0)
    trained = run(recipe, data=SENTENCES, device="cpu")
    model, result = trained.model, trained.result
    assert result.steps_done == 3 and all(math.isfinite(x) for x in result.losses)
    assert int(model.queue_len) == 8 and int(model.queue_ptr) == (3 * 4) % 8
    fresh = MoCo(tiny(), queue_size=8, in_batch_negatives=False, positive="key")
    assert int(fresh.queue_len) == 8
    assert torch.allclose(fresh.queue.norm(dim=-1), torch.ones(8), atol=1e-5)
    assert int(MoCo(tiny(), queue_size=8).queue_len) == 0  # with in-batch negatives: starts empty
    with pytest.raises(ValueError, match="queue_init"):
        MoCo(tiny(), queue_size=8, queue_init="zeros")
