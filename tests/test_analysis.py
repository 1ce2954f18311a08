"""cl_toolkit.analysis against naive loops, autograd and closed forms computed another way."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from cl_toolkit.analysis import (
    QuadraticCritic,
    correlated_gaussians,
    fit_infonce_critic,
    gaussian_mi,
    info_nce_grad,
    infonce_mi_bound,
    optimal_gaussian_critic,
    pull_push,
    rho_for_mi,
    survey_loss,
)
from cl_toolkit.losses import info_nce


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- survey_loss
def _survey_loop(q):
    """The printed formula, term by term, in float64 Python arithmetic."""
    q = [float(v) for v in q]
    total = 0.0
    for i in range(len(q)):
        num = math.exp(q[i]) + sum(math.exp(q[j]) for j in range(len(q)) if j != i)
        den = sum(math.exp(v) for v in q)
        total += -math.log(num / den)
    return total


def test_survey_loss_matches_loop_and_is_zero():
    q = torch.randn(7, generator=_gen(), dtype=torch.float64) * 3
    assert survey_loss(q).item() == pytest.approx(_survey_loop(q), abs=1e-12)
    assert abs(survey_loss(q).item()) < 1e-12
    # float32, large scores (a naive exp would overflow): still zero, per term
    big = torch.randn(4, 50, generator=_gen(1)) * 100
    terms = survey_loss(big, reduction="none")
    assert terms.shape == (4, 50)
    assert torch.isfinite(terms).all() and terms.abs().max() < 1e-4


def test_survey_loss_has_no_gradient():
    q = (torch.randn(9, generator=_gen(2), dtype=torch.float64)).requires_grad_()
    survey_loss(q).backward()
    assert q.grad.abs().max() < 1e-12


def test_survey_loss_is_not_infonce():
    # the same scores under a real InfoNCE (only the positive in the numerator) give a positive loss
    q = torch.randn(6, generator=_gen(3), dtype=torch.float64)
    real = -(q - torch.logsumexp(q, 0)).sum()
    assert real > 1.0 and abs(survey_loss(q)) < 1e-12


def test_survey_loss_rejects_bad_input():
    with pytest.raises(ValueError):
        survey_loss(torch.zeros(1))
    with pytest.raises(ValueError):
        survey_loss(torch.zeros(3), reduction="max")


# --------------------------------------------------------------------------- gradients
def _info_nce_loop(u, v, t):
    """InfoNCE on vectors used as they are (no normalisation), row by row."""
    n = u.shape[0]
    total = 0.0
    for i in range(n):
        logits = torch.stack([u[i] @ v[j] / t for j in range(n)])
        total = total - (logits[i] - torch.logsumexp(logits, 0))
    return total / n


@pytest.mark.parametrize("t", [0.05, 0.5])
def test_info_nce_grad_matches_autograd(t):
    q = (torch.randn(6, 5, generator=_gen(4), dtype=torch.float64) * 2).requires_grad_()
    k = (torch.randn(6, 5, generator=_gen(5), dtype=torch.float64) * 0.5).requires_grad_()
    info_nce(q, k, t).backward()
    gq, gk = info_nce_grad(q.detach(), k.detach(), t)
    torch.testing.assert_close(gq, q.grad.float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gk, k.grad.float(), rtol=1e-4, atol=1e-5)


def test_pull_push_is_gradient_on_unit_vectors():
    u = torch.nn.functional.normalize(torch.randn(5, 3, generator=_gen(6), dtype=torch.float64), dim=1)
    v = torch.nn.functional.normalize(torch.randn(5, 3, generator=_gen(7), dtype=torch.float64), dim=1)
    u_ = u.clone().requires_grad_()
    _info_nce_loop(u_, v, 0.1).backward()
    pull, push, probs = pull_push(u, v, 0.1)
    torch.testing.assert_close(push - pull, u_.grad.float(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(probs.sum(1), torch.ones(5), rtol=0, atol=1e-6)
    # the pull points at the positive, with weight (1 - p_ii) / (N tau)
    torch.testing.assert_close(pull, ((1 - probs.diagonal()) / (5 * 0.1))[:, None] * v.float(), rtol=1e-5, atol=1e-7)


def test_pull_push_rejects_bad_input():
    with pytest.raises(ValueError):
        pull_push(torch.randn(3, 2), torch.randn(4, 2), 0.1)
    with pytest.raises(ValueError):
        pull_push(torch.randn(3, 2), torch.randn(3, 2), 0.0)


# --------------------------------------------------------------------------- Gaussians
def test_gaussian_mi_matches_covariance_determinants():
    rho, d = 0.7, 3
    cov = np.block([[np.eye(d), rho * np.eye(d)], [rho * np.eye(d), np.eye(d)]])
    expected = 0.5 * math.log(1.0 / np.linalg.det(cov))  # 1/2 log(det Sx det Sy / det S)
    assert gaussian_mi(rho, d) == pytest.approx(expected, rel=1e-10)
    assert rho_for_mi(gaussian_mi(rho, d), d) == pytest.approx(rho, rel=1e-10)
    mis = torch.tensor([0.1, 1.0, 5.0])
    torch.testing.assert_close(gaussian_mi(rho_for_mi(mis, 10), 10), mis, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        gaussian_mi(1.0)
    with pytest.raises(ValueError):
        rho_for_mi(-1.0)


def test_correlated_gaussians_have_the_asked_correlation():
    x, y = correlated_gaussians(torch.tensor([0.0, 0.5, 0.9]), 4000, 2, groups=2, generator=_gen(8))
    assert x.shape == y.shape == (3, 2, 4000, 2)
    for r, rho in enumerate([0.0, 0.5, 0.9]):
        a, b = x[r].reshape(-1).numpy(), y[r].reshape(-1).numpy()
        assert np.corrcoef(a, b)[0, 1] == pytest.approx(rho, abs=0.03)
        assert b.std() == pytest.approx(1.0, abs=0.03)


def test_optimal_critic_is_log_density_ratio():
    rho = 0.6
    x, y = correlated_gaussians(torch.tensor([rho]), 4, 2, generator=_gen(9))
    scores = optimal_gaussian_critic(x.double(), y.double(), torch.tensor([rho], dtype=torch.float64))[0, 0]  # [4, 4]
    joint = multivariate_normal(np.zeros(4), np.block([[np.eye(2), rho * np.eye(2)], [rho * np.eye(2), np.eye(2)]]))
    marg = multivariate_normal(np.zeros(2), np.eye(2))
    for i in range(4):
        for j in range(4):
            xi, yj = x[0, 0, i].double().numpy(), y[0, 0, j].double().numpy()
            ratio = joint.logpdf(np.concatenate([xi, yj])) - marg.logpdf(xi) - marg.logpdf(yj)
            assert scores[i, j].item() == pytest.approx(ratio, abs=1e-8)


# --------------------------------------------------------------------------- the bound
def test_infonce_mi_bound_matches_loop():
    s = torch.randn(3, 5, 5, generator=_gen(10), dtype=torch.float64)
    got = infonce_mi_bound(s)
    for b in range(3):
        terms = [s[b, i, i].item() - math.log(sum(math.exp(s[b, i, j].item()) for j in range(5)) / 5) for i in range(5)]
        assert got[b].item() == pytest.approx(sum(terms) / 5, abs=1e-6)


def test_infonce_mi_bound_never_exceeds_log_n():
    s = torch.randn(64, 8, 8, generator=_gen(11)) + 1e4 * torch.eye(8)  # a perfect critic
    est = infonce_mi_bound(s)
    assert est.max() <= math.log(8) + 1e-6
    assert est.min() == pytest.approx(math.log(8), abs=1e-4)
    with pytest.raises(ValueError):
        infonce_mi_bound(torch.zeros(3, 4))


def test_optimal_critic_bound_is_tight_for_small_mi():
    rho = torch.tensor([rho_for_mi(0.3, 1)])
    x, y = correlated_gaussians(rho, 256, 1, groups=64, generator=_gen(12))
    est = infonce_mi_bound(optimal_gaussian_critic(x, y, rho)).mean().item()
    assert est == pytest.approx(0.3, abs=0.04)


def test_quadratic_critic_matches_loop():
    critic = QuadraticCritic(2, 3)
    with torch.no_grad():
        critic.W.copy_(torch.randn(2, 3, 3, generator=_gen(13)))
        critic.a.copy_(torch.randn(2, 3, generator=_gen(14)))
    x, y = torch.randn(2, 2, 4, 3, generator=_gen(15)), torch.randn(2, 2, 4, 3, generator=_gen(16))
    s = critic(x, y)
    assert s.shape == (2, 2, 4, 4)
    for r in range(2):
        for g in range(2):
            for i in range(4):
                for j in range(4):
                    want = x[r, g, i] @ critic.W[r] @ y[r, g, j] + (critic.a[r] * y[r, g, j] ** 2).sum()
                    assert s[r, g, i, j].item() == pytest.approx(want.item(), abs=1e-5)


def test_fit_infonce_critic_learns_and_saturates():
    mis = torch.tensor([0.5, 8.0])
    est = fit_infonce_critic(rho_for_mi(mis, 8), dim=8, n=16, steps=100, samples_per_step=256, eval_samples=2048)
    assert est.shape == (2,)
    assert est[0].item() == pytest.approx(0.5, abs=0.15)  # small MI: tracks the truth
    assert math.log(16) - 0.2 < est[1].item() <= math.log(16)  # large MI: stuck just below log N
