"""cl_toolkit.losses against per-example loops written from the papers' formulas,
InfoNCE against sentence-transformers' MultipleNegativesRankingLoss, and NT-Xent and
SupCon against pytorch-metric-learning's NTXentLoss and SupConLoss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cl_toolkit.losses import (
    align_loss,
    cosine_matrix,
    info_nce,
    info_nce_logits,
    nt_xent,
    supcon,
    symmetric_info_nce,
    uniform_loss,
)


# --------------------------------------------------------------------------- naive oracles (float64, one example at a time)
def _cos(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    u, v = u.double(), v.double()
    return (u * v).sum() / (u.norm() * v.norm())


def naive_info_nce(q, k, tau, negatives=None, w=0.0) -> torch.Tensor:
    """van den Oord et al. (2018), eq. 4, with cosine similarity / tau as the critic:
    L = -1/N sum_i log( e^{s(q_i,k_i)} / (sum_j e^{s(q_i,k_j)} + sum_m e^{s(q_i,n_m) + w [m = i]}) )."""
    n = q.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        num = torch.exp(_cos(q[i], k[i]) / tau)
        den = sum(torch.exp(_cos(q[i], k[j]) / tau) for j in range(n))
        if negatives is not None:
            for m in range(negatives.shape[0]):
                den = den + torch.exp(_cos(q[i], negatives[m]) / tau + (w if m == i else 0.0))
        total = total - torch.log(num / den)
    return total / n


def naive_nt_xent(z1, z2, tau) -> torch.Tensor:
    """Chen et al. (2020), eq. 1: l(i, j) = -log e^{s_ij/tau} / sum_{k != i} e^{s_ik/tau}, averaged over all 2N views."""
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    n = n2 // 2
    total = torch.zeros((), dtype=torch.float64)
    for a in range(n2):
        p = a + n if a < n else a - n
        den = sum(torch.exp(_cos(z[a], z[b]) / tau) for b in range(n2) if b != a)
        total = total - torch.log(torch.exp(_cos(z[a], z[p]) / tau) / den)
    return total / n2


def naive_supcon(f, labels, tau) -> torch.Tensor:
    """Khosla et al. (2020), eq. 2 (L_out): anchors without a positive are skipped."""
    n = f.shape[0]
    per_anchor = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and int(labels[p]) == int(labels[i])]
        if not positives:
            continue
        den = sum(torch.exp(_cos(f[i], f[a]) / tau) for a in range(n) if a != i)
        s = sum(torch.log(torch.exp(_cos(f[i], f[p]) / tau) / den) for p in positives)
        per_anchor.append(-s / len(positives))
    return sum(per_anchor) / len(per_anchor)


def naive_align(x, y, alpha) -> torch.Tensor:
    """Wang & Isola (2020): E ||f(x) - f(y)||^alpha over positive pairs, on the unit sphere."""
    vals = [((x[i].double() / x[i].double().norm()) - (y[i].double() / y[i].double().norm())).norm() ** alpha for i in range(x.shape[0])]
    return sum(vals) / len(vals)


def naive_uniform(x, t) -> torch.Tensor:
    """Wang & Isola (2020): log E_{i<j} e^{-t ||f(x_i) - f(x_j)||^2}, on the unit sphere."""
    u = [x[i].double() / x[i].double().norm() for i in range(x.shape[0])]
    vals = [torch.exp(-t * (u[i] - u[j]).norm() ** 2) for i in range(len(u)) for j in range(i + 1, len(u))]
    return torch.log(sum(vals) / len(vals))


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------- InfoNCE
@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0])
def test_info_nce_matches_naive_loop(tau):
    q, k = randn(6, 8, seed=1), randn(6, 8, seed=2)
    got = info_nce(q, k, tau)
    assert got.dtype == torch.float32 and got.dim() == 0
    torch.testing.assert_close(got.double(), naive_info_nce(q, k, tau), rtol=1e-5, atol=1e-5)


def test_info_nce_gradient_matches_naive_loop():
    q = randn(5, 7, seed=3, dtype=torch.float64).requires_grad_()
    k = randn(5, 7, seed=4, dtype=torch.float64).requires_grad_()
    neg = randn(5, 7, seed=5, dtype=torch.float64).requires_grad_()
    grads = torch.autograd.grad(info_nce(q, k, 0.1, negatives=neg), (q, k, neg))
    expected = torch.autograd.grad(naive_info_nce(q, k, 0.1, neg), (q, k, neg))
    for g, e in zip(grads, expected):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g.double(), e, rtol=1e-4, atol=1e-5)


def test_info_nce_row_aligned_hard_negatives_matches_naive_loop():
    q, k, neg = randn(6, 8, seed=1), randn(6, 8, seed=2), randn(6, 8, seed=3)
    got = info_nce(q, k, 0.05, negatives=neg)
    torch.testing.assert_close(got.double(), naive_info_nce(q, k, 0.05, neg), rtol=1e-5, atol=1e-5)
    # the extra negatives make the task harder: the loss must grow
    assert got > info_nce(q, k, 0.05)


@pytest.mark.parametrize("m", [1, 3, 11])
def test_info_nce_bank_of_other_size(m):
    q, k, bank = randn(4, 8, seed=1), randn(4, 8, seed=2), randn(m, 8, seed=3)
    logits = info_nce_logits(q, k, 0.1, negatives=bank)
    assert logits.shape == (4, 4 + m)
    torch.testing.assert_close(info_nce(q, k, 0.1, negatives=bank).double(), naive_info_nce(q, k, 0.1, bank), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("w", [0.5, 2.0, -1.0])
def test_hard_negative_weight_matches_naive_loop(w):
    q, k, neg = randn(5, 8, seed=1), randn(5, 8, seed=2), randn(5, 8, seed=3)
    got = info_nce(q, k, 0.05, negatives=neg, hard_negative_weight=w)
    torch.testing.assert_close(got.double(), naive_info_nce(q, k, 0.05, neg, w), rtol=1e-5, atol=1e-5)
    # a bonus on the hard negatives' logits raises the loss, a malus lowers it
    plain = info_nce(q, k, 0.05, negatives=neg)
    assert (got > plain) if w > 0 else (got < plain)


def test_info_nce_logits_layout():
    q, k, neg = randn(3, 4, seed=1), randn(3, 4, seed=2), randn(3, 4, seed=3)
    logits = info_nce_logits(q, k, 0.5, negatives=neg, hard_negative_weight=1.0)
    for i in range(3):
        for j in range(3):
            assert math.isclose(float(logits[i, j]), float(_cos(q[i], k[j])) / 0.5, abs_tol=1e-5)
            bonus = 1.0 if i == j else 0.0
            assert math.isclose(float(logits[i, 3 + j]), float(_cos(q[i], neg[j])) / 0.5 + bonus, abs_tol=1e-5)


def test_cosine_matrix_matches_naive():
    a, b = randn(3, 5, seed=1), randn(4, 5, seed=2)
    got = cosine_matrix(a, b)
    assert got.shape == (3, 4) and got.dtype == torch.float32
    for i in range(3):
        for j in range(4):
            assert math.isclose(float(got[i, j]), float(_cos(a[i], b[j])), abs_tol=1e-6)


# --------------------------------------------------------------------------- against sentence-transformers
def _mnrl(scale: float):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    # The model is only used by forward(); compute_loss_from_embeddings takes embeddings directly.
    return MultipleNegativesRankingLoss(model=nn.Identity(), scale=scale)


@pytest.mark.parametrize("tau", [0.05, 0.2])
def test_info_nce_equals_sentence_transformers_mnrl(tau):
    q, k = randn(16, 32, seed=10), randn(16, 32, seed=11)
    expected = _mnrl(1.0 / tau).compute_loss_from_embeddings([q, k], labels=None)
    torch.testing.assert_close(info_nce(q, k, tau), expected, rtol=1e-5, atol=1e-5)


def test_info_nce_with_hard_negatives_equals_sentence_transformers_mnrl():
    q, k, neg = randn(16, 32, seed=10), randn(16, 32, seed=11), randn(16, 32, seed=12)
    expected = _mnrl(20.0).compute_loss_from_embeddings([q, k, neg], labels=None)
    torch.testing.assert_close(info_nce(q, k, 0.05, negatives=neg), expected, rtol=1e-5, atol=1e-5)
    # MNRL with (anchor, positive, neg_1, neg_2): every negative column is one block of the bank
    neg2 = randn(16, 32, seed=13)
    expected2 = _mnrl(20.0).compute_loss_from_embeddings([q, k, neg, neg2], labels=None)
    torch.testing.assert_close(info_nce(q, k, 0.05, negatives=torch.cat([neg, neg2])), expected2, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- against pytorch-metric-learning
# A second oracle nobody here wrote: pytorch-metric-learning's losses take embeddings and
# labels; two views of example i share label i. Its NTXentLoss averages -log p over every
# positive (anchor, partner) pair, 2N of them; its SupConLoss averages over anchors that
# have a positive.
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_nt_xent_equals_pytorch_metric_learning(tau):
    from pytorch_metric_learning.losses import NTXentLoss

    z1, z2 = randn(8, 16, seed=20), randn(8, 16, seed=21)
    labels = torch.arange(8).repeat(2)
    expected = NTXentLoss(temperature=tau)(torch.cat([z1, z2]), labels)
    torch.testing.assert_close(nt_xent(z1, z2, tau), expected, rtol=1e-5, atol=1e-6)
    # and pytorch-metric-learning agrees with the hand-written loop from the SimCLR paper
    torch.testing.assert_close(expected.double(), naive_nt_xent(z1, z2, tau), rtol=1e-5, atol=1e-5)


def test_nt_xent_gradient_equals_pytorch_metric_learning():
    from pytorch_metric_learning.losses import NTXentLoss

    z1 = randn(6, 8, seed=22).requires_grad_()
    z2 = randn(6, 8, seed=23).requires_grad_()
    (g1, g2) = torch.autograd.grad(nt_xent(z1, z2, 0.1), (z1, z2))
    ref = NTXentLoss(temperature=0.1)(torch.cat([z1, z2]), torch.arange(6).repeat(2))
    (r1, r2) = torch.autograd.grad(ref, (z1, z2))
    torch.testing.assert_close(g1, r1, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g2, r2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 1, 3], [5, 5, 5, 5, 7, 9]])
def test_supcon_equals_pytorch_metric_learning(labels):
    from pytorch_metric_learning.losses import SupConLoss

    f, y = randn(6, 8, seed=4), torch.tensor(labels)
    expected = SupConLoss(temperature=0.1)(f, y)
    torch.testing.assert_close(supcon(f, y, 0.1), expected, rtol=1e-5, atol=1e-6)


def test_pytorch_metric_learning_oracle_can_fail():
    # the control: InfoNCE (no same-side negatives) is not NT-Xent, and the oracle says so
    from pytorch_metric_learning.losses import NTXentLoss

    z1, z2 = randn(8, 16, seed=20), randn(8, 16, seed=21)
    expected = NTXentLoss(temperature=0.5)(torch.cat([z1, z2]), torch.arange(8).repeat(2))
    assert not torch.isclose(symmetric_info_nce(z1, z2, 0.5), expected, rtol=1e-3)


# --------------------------------------------------------------------------- NT-Xent, CLIP, SupCon, align/uniform
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_nt_xent_matches_naive_loop(tau):
    z1, z2 = randn(5, 6, seed=1), randn(5, 6, seed=2)
    torch.testing.assert_close(nt_xent(z1, z2, tau).double(), naive_nt_xent(z1, z2, tau), rtol=1e-5, atol=1e-5)


def test_nt_xent_differs_from_info_nce():
    # NT-Xent also uses same-side views as negatives; with more negatives the loss is larger.
    z1, z2 = randn(5, 6, seed=1), randn(5, 6, seed=2)
    assert nt_xent(z1, z2, 0.5) > symmetric_info_nce(z1, z2, 0.5)


def test_symmetric_info_nce_matches_naive_loop():
    a, b = randn(6, 8, seed=1), randn(6, 8, seed=2)
    expected = 0.5 * (naive_info_nce(a, b, 0.07) + naive_info_nce(b, a, 0.07))
    torch.testing.assert_close(symmetric_info_nce(a, b, 0.07).double(), expected, rtol=1e-5, atol=1e-5)
    # it is symmetric in its arguments, unlike one-directional InfoNCE
    torch.testing.assert_close(symmetric_info_nce(a, b, 0.07), symmetric_info_nce(b, a, 0.07))
    assert not torch.isclose(info_nce(a, b, 0.07), info_nce(b, a, 0.07))


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 1, 3], [5, 5, 5, 5, 7, 9]])
def test_supcon_matches_naive_loop(labels):
    f = randn(6, 8, seed=4)
    y = torch.tensor(labels)
    torch.testing.assert_close(supcon(f, y, 0.1).double(), naive_supcon(f, y, 0.1), rtol=1e-5, atol=1e-5)


def test_supcon_multiview_flattens_views():
    f = randn(4, 2, 8, seed=5)  # [N, V, d]
    y = torch.tensor([0, 1, 0, 2])
    flat_labels = torch.tensor([0, 0, 1, 1, 0, 0, 2, 2])
    expected = naive_supcon(f.reshape(8, 8), flat_labels, 0.2)
    torch.testing.assert_close(supcon(f, y, 0.2).double(), expected, rtol=1e-5, atol=1e-5)


def test_supcon_with_distinct_labels_and_two_views_is_nt_xent():
    # Khosla et al.: with one positive per anchor (its other view), L_out is SimCLR's loss.
    z1, z2 = randn(5, 6, seed=1), randn(5, 6, seed=2)
    f = torch.cat([z1, z2])
    y = torch.arange(5).repeat(2)
    torch.testing.assert_close(supcon(f, y, 0.3), nt_xent(z1, z2, 0.3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", [2, 1.5, 1])
def test_align_loss_matches_naive(alpha):
    x, y = randn(7, 5, seed=1), randn(7, 5, seed=2)
    torch.testing.assert_close(align_loss(x, y, alpha).double(), naive_align(x, y, alpha), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [2, 0.5])
def test_uniform_loss_matches_naive(t):
    x = randn(9, 5, seed=3)
    torch.testing.assert_close(uniform_loss(x, t).double(), naive_uniform(x, t), rtol=1e-5, atol=1e-6)


def test_align_and_uniform_extremes():
    x = randn(6, 4, seed=1)
    assert float(align_loss(x, 3.0 * x)) == pytest.approx(0.0, abs=1e-6)  # same directions: perfectly aligned
    same = torch.ones(6, 4)
    assert float(uniform_loss(same)) == pytest.approx(0.0, abs=1e-6)  # collapsed: log E e^0 = 0


# --------------------------------------------------------------------------- dtypes and gradients
LOSSES = {
    "info_nce": lambda a, b: info_nce(a, b, 0.05),
    "info_nce_negatives": lambda a, b: info_nce(a, b, 0.05, negatives=b.flip(0), hard_negative_weight=0.5),
    "nt_xent": lambda a, b: nt_xent(a, b, 0.5),
    "symmetric_info_nce": lambda a, b: symmetric_info_nce(a, b, 0.07),
    "supcon": lambda a, b: supcon(torch.cat([a, b]), torch.arange(a.shape[0]).repeat(2), 0.1),
    "align": lambda a, b: align_loss(a, b),
    "uniform": lambda a, b: uniform_loss(a),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float32_under_bf16_autocast_and_finite_gradients(name):
    fn = LOSSES[name]
    layer = nn.Linear(16, 8)
    with torch.no_grad():
        layer.weight.copy_(randn(8, 16, seed=1) / 4)
        layer.bias.zero_()
    x, y = randn(6, 16, seed=2), randn(6, 16, seed=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = layer(x), layer(y)
        assert a.dtype == torch.bfloat16  # autocast is really on
        loss = fn(a, b)
    assert loss.dtype == torch.float32
    # the value is the float32 loss of the bf16 embeddings
    torch.testing.assert_close(loss, fn(a.float().detach(), b.float().detach()), rtol=1e-5, atol=1e-5)
    loss.backward()
    assert layer.weight.grad is not None
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_finite_with_duplicate_and_tiny_rows(name):
    # identical rows and near-zero vectors are where hand-written losses produce NaN
    a = torch.cat([randn(3, 8, seed=1), randn(1, 8, seed=1), 1e-8 * torch.ones(1, 8)]).requires_grad_()
    b = randn(5, 8, seed=2).requires_grad_()
    loss = LOSSES[name](a, b)
    loss.backward()
    assert torch.isfinite(loss)
    assert a.grad is not None and torch.isfinite(a.grad).all()
    assert b.grad is None or torch.isfinite(b.grad).all()  # uniform_loss does not see b


# --------------------------------------------------------------------------- bad input
NAN = float("nan")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: info_nce(torch.randn(4, 8), torch.randn(5, 8)), "same shape"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 7)), "same shape"),
        (lambda: info_nce(torch.randn(1, 8), torch.randn(1, 8)), "at least 2"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 8), 0.0), "temperature"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 8), -0.1), "temperature"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 8), NAN), "temperature"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 8), float("inf")), "temperature"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 8), "0.05"), "temperature"),
        (lambda: info_nce(torch.full((4, 8), NAN), torch.randn(4, 8)), "queries contains NaN"),
        (lambda: info_nce(torch.randn(4, 8), torch.full((4, 8), float("inf"))), "keys contains NaN or infinite"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 8), negatives=torch.full((4, 8), NAN)), "negatives contains NaN"),
        (lambda: info_nce(torch.randn(8), torch.randn(8)), r"shape \[N, d\]"),
        (lambda: info_nce([[1.0, 2.0]] * 2, torch.randn(2, 2)), "torch.Tensor"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 8), negatives=torch.randn(4, 7)), r"negatives must have shape \[M, 8\]"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 8), negatives=torch.randn(5, 8), hard_negative_weight=1.0), "row-aligned"),
        (lambda: info_nce(torch.randn(4, 8), torch.randn(4, 8), hard_negative_weight=1.0), "row-aligned"),
        (lambda: nt_xent(torch.randn(4, 8), torch.randn(3, 8)), "same shape"),
        (lambda: nt_xent(torch.randn(1, 8), torch.randn(1, 8)), "at least 2"),
        (lambda: nt_xent(torch.randn(4, 8), torch.randn(4, 8), 0), "temperature"),
        (lambda: nt_xent(torch.randn(4, 8), torch.full((4, 8), NAN)), "z2 contains NaN"),
        (lambda: symmetric_info_nce(torch.randn(4, 8), torch.randn(4, 8), NAN), "temperature"),
        (lambda: supcon(torch.randn(4, 8), torch.tensor([0, 0, 1])), r"labels must have shape \[4\]"),
        (lambda: supcon(torch.randn(4, 8), torch.tensor([[0, 0, 1, 1]])), r"labels must have shape \[4\]"),
        (lambda: supcon(torch.randn(4, 8), [0, 0, 1, 1]), r"labels must have shape \[4\]"),
        (lambda: supcon(torch.randn(4, 8), torch.tensor([0, 1, 2, 3])), "at least one pair"),
        (lambda: supcon(torch.randn(1, 8), torch.tensor([0])), "at least 2"),
        (lambda: supcon(torch.randn(4, 8), torch.tensor([0, 0, 1, 1]), -1.0), "temperature"),
        (lambda: supcon(torch.full((4, 8), NAN), torch.tensor([0, 0, 1, 1])), "features contains NaN"),
        (lambda: align_loss(torch.randn(4, 8), torch.randn(5, 8)), "same shape"),
        (lambda: align_loss(torch.randn(4, 8), torch.randn(4, 8), alpha=0), "alpha"),
        (lambda: align_loss(torch.full((4, 8), NAN), torch.randn(4, 8)), "x contains NaN"),
        (lambda: uniform_loss(torch.randn(1, 8)), "at least 2"),
        (lambda: uniform_loss(torch.randn(4, 8), t=0), "t must be positive"),
        (lambda: uniform_loss(torch.full((4, 8), NAN)), "x contains NaN"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
