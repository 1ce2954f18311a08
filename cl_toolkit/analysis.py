"""Tools for looking inside contrastive losses: gradients, the MI bound, a common error.

* :func:`info_nce_grad` and :func:`pull_push` — the gradient of InfoNCE in closed
  form: a pull towards the positive minus a softmax-weighted push from the negatives.
* :func:`infonce_mi_bound` — the InfoNCE lower bound on mutual information,
  :math:`I(X;Y) \\ge \\log N - \\mathcal{L}` (van den Oord et al. 2018; Poole et al. 2019),
  with correlated Gaussians whose MI is known (:func:`gaussian_mi`,
  :func:`correlated_gaussians`) and a small batched critic trained to tighten the
  bound (:class:`QuadraticCritic`, :func:`fit_infonce_critic`).
* :func:`survey_loss` — a contrastive "loss" as it is sometimes printed, whose
  numerator equals its denominator: it is identically zero.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_batch, check_pair, check_temperature

__all__ = [
    "QuadraticCritic",
    "correlated_gaussians",
    "fit_infonce_critic",
    "gaussian_mi",
    "info_nce_grad",
    "infonce_mi_bound",
    "optimal_gaussian_critic",
    "pull_push",
    "rho_for_mi",
    "survey_loss",
]


# --------------------------------------------------------------------------- a common error
def survey_loss(scores: Tensor, reduction: str = "sum") -> Tensor:
    r"""The formula :math:`L = -\sum_i \log \frac{e^{q(x_i)} + \sum_{j \ne i} e^{q(x_j)}}{\sum_k e^{q(x_k)}}`, evaluated as written.

    ``scores`` holds :math:`q(x_1), \dots, q(x_N)` (shape ``[N]``, or ``[..., N]``
    for several sets at once). The numerator of term ``i`` is built literally, from
    :math:`e^{q(x_i)}` and the terms :math:`j \ne i`; the denominator from all
    ``k``. Both sums are evaluated with log-sum-exp, so large scores do not overflow.

    The numerator sums over :math:`\{i\} \cup \{j \ne i\} = \{1, \dots, N\}`, the same
    set as the denominator, so every term is :math:`\log 1 = 0` up to float
    rounding, whatever the scores: the formula has no gradient and teaches nothing.
    The correct InfoNCE puts only the *positive* pair in the numerator (see
    :func:`cl_toolkit.losses.info_nce`).

    Args:
        scores: ``[..., N]`` scores, ``N >= 2``.
        reduction: ``"sum"`` (the formula), ``"mean"`` or ``"none"`` (the ``N`` terms).
    """
    if not isinstance(scores, Tensor) or scores.dim() < 1:
        raise ValueError("scores must be a torch.Tensor of shape [..., N]")
    if reduction not in ("sum", "mean", "none"):
        raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
    n = scores.shape[-1]
    check_batch(n)
    eye = torch.eye(n, dtype=torch.bool, device=scores.device)  # [N, N]
    own = scores.unsqueeze(-1)  # [..., N, 1]: e^{q(x_i)}
    others = scores.unsqueeze(-2).expand(*scores.shape[:-1], n, n)  # [..., N, N]: row i holds q(x_j)
    others = others.masked_fill(eye, float("-inf"))  # drop j == i
    log_num = torch.logsumexp(torch.cat([own, others], dim=-1), dim=-1)  # [..., N]
    log_den = torch.logsumexp(scores, dim=-1, keepdim=True)  # [..., 1]
    terms = -(log_num - log_den)  # [..., N]
    if reduction == "none":
        return terms
    return terms.sum(-1) if reduction == "sum" else terms.mean(-1)


# --------------------------------------------------------------------------- gradients
def pull_push(queries: Tensor, keys: Tensor, temperature: float = 0.05) -> tuple[Tensor, Tensor, Tensor]:
    r"""The two forces of InfoNCE on each unit-length query.

    With :math:`u_i = q_i/\lVert q_i\rVert`, :math:`v_j = k_j/\lVert k_j\rVert`
    and :math:`p_{ij} = \operatorname{softmax}_j(u_i^\top v_j/\tau)`, the gradient of
    :func:`cl_toolkit.losses.info_nce` (a mean over ``N`` rows) with respect to
    :math:`u_i` is

    .. math::

        \frac{\partial \mathcal{L}}{\partial u_i} = \frac{1}{N\tau}\Big(
            \underbrace{\textstyle\sum_{j \ne i} p_{ij}\, v_j}_{\text{push}}
          - \underbrace{(1 - p_{ii})\, v_i}_{\text{pull}} \Big),

    so gradient descent moves :math:`u_i` towards its positive and away from the
    negatives, each negative weighted by its softmax probability.

    Returns:
        ``(pull, push, probs)``: ``[N, d]``, ``[N, d]`` (both with the factor
        :math:`1/(N\tau)`) and the ``[N, N]`` softmax :math:`p_{ij}`.
    """
    check_pair("queries", queries, "keys", keys)
    check_temperature(temperature)
    n = queries.shape[0]
    check_batch(n)
    u = F.normalize(queries.float(), dim=-1)  # [N, d]
    v = F.normalize(keys.float(), dim=-1)  # [N, d]
    probs = torch.softmax(u @ v.T / temperature, dim=1)  # [N, N]
    scale = 1.0 / (n * temperature)
    diag = probs.diagonal()  # [N]
    pull = scale * (1 - diag)[:, None] * v  # [N, d]
    push = scale * (probs @ v - diag[:, None] * v)  # [N, d]: sum over j != i
    return pull, push, probs


def info_nce_grad(queries: Tensor, keys: Tensor, temperature: float = 0.05) -> tuple[Tensor, Tensor]:
    r"""The gradient of :func:`cl_toolkit.losses.info_nce` (no extra negatives) in closed form.

    With the notation of :func:`pull_push`, the gradients with respect to the unit
    vectors are

    .. math::

        g^u_i = \frac{1}{N\tau}\Big(\sum_j p_{ij} v_j - v_i\Big), \qquad
        g^v_j = \frac{1}{N\tau}\Big(\sum_i p_{ij} u_i - u_j\Big),

    and the normalisation :math:`u = q/\lVert q\rVert` passes on only the part
    orthogonal to :math:`u`: :math:`\partial\mathcal{L}/\partial q_i =
    (I - u_i u_i^\top)\, g^u_i / \lVert q_i\rVert`.

    Returns:
        ``(grad_queries, grad_keys)``, both ``[N, d]`` float32.
    """
    pull, push, probs = pull_push(queries, keys, temperature)
    n = queries.shape[0]
    u = F.normalize(queries.float(), dim=-1)  # [N, d]
    v = F.normalize(keys.float(), dim=-1)  # [N, d]
    g_u = push - pull  # [N, d]
    g_v = (probs.T @ u - u) / (n * temperature)  # [N, d]: column j collects every query that saw key j

    def through_normalize(g: Tensor, unit: Tensor, raw: Tensor) -> Tensor:
        radial = (g * unit).sum(-1, keepdim=True) * unit  # [N, d]
        return (g - radial) / raw.float().norm(dim=-1, keepdim=True)

    return through_normalize(g_u, u, queries), through_normalize(g_v, v, keys)


# --------------------------------------------------------------------------- the MI bound
def gaussian_mi(rho: float | Tensor, dim: int = 1) -> float | Tensor:
    r""":math:`I(X;Y) = -\tfrac{d}{2}\log(1 - \rho^2)` nats for ``dim`` independent coordinate pairs with correlation ``rho``."""
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    r = torch.as_tensor(rho, dtype=torch.float64)
    if (r.abs() >= 1).any():
        raise ValueError(f"rho must lie in (-1, 1), got {rho!r}")
    mi = -0.5 * dim * torch.log1p(-r**2)
    return float(mi) if not isinstance(rho, Tensor) else mi.to(rho.dtype if rho.is_floating_point() else torch.float32)


def rho_for_mi(mi: float | Tensor, dim: int = 1) -> float | Tensor:
    r"""The correlation that gives ``mi`` nats over ``dim`` coordinates: :math:`\rho = \sqrt{1 - e^{-2I/d}}`."""
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    m = torch.as_tensor(mi, dtype=torch.float64)
    if (m < 0).any():
        raise ValueError(f"mutual information must be non-negative, got {mi!r}")
    rho = torch.sqrt(-torch.expm1(-2 * m / dim))
    return float(rho) if not isinstance(mi, Tensor) else rho.float()


def correlated_gaussians(
    rho: Tensor, n: int, dim: int, groups: int = 1, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    r"""Samples of :math:`x \sim \mathcal N(0, I)`, :math:`y = \rho x + \sqrt{1-\rho^2}\,\varepsilon`.

    Args:
        rho: ``[R]`` correlations, one per setting (all coordinates share it).
        n: samples per group (the batch size ``N`` of the bound).
        dim: coordinates.
        groups: independent batches per setting.

    Returns:
        ``x, y`` of shape ``[R, groups, n, dim]``.
    """
    rho = torch.as_tensor(rho, dtype=torch.float32).reshape(-1)  # [R]
    if (rho.abs() >= 1).any():
        raise ValueError("every rho must lie in (-1, 1)")
    shape = (rho.shape[0], groups, n, dim)
    x = torch.randn(shape, generator=generator)
    eps = torch.randn(shape, generator=generator)
    r = rho.view(-1, 1, 1, 1)
    return x, r * x + torch.sqrt(1 - r**2) * eps


def infonce_mi_bound(scores: Tensor) -> Tensor:
    r"""The InfoNCE estimate :math:`\log N - \mathcal{L}` of a lower bound on :math:`I(X;Y)`.

    ``scores[..., i, j]`` is the critic :math:`f(x_i, y_j)`; the pairs
    :math:`(x_i, y_i)` are drawn from the joint and the other :math:`y_j` act as
    samples from the marginal (van den Oord et al. 2018; Poole et al. 2019, eq. 12):

    .. math::

        I(X;Y) \ge \mathbb{E}\Big[\frac1N\sum_{i=1}^N \log
          \frac{e^{f(x_i, y_i)}}{\frac1N\sum_{j=1}^N e^{f(x_i, y_j)}}\Big]
          = \log N - \mathcal{L}_{\text{InfoNCE}} .

    Each term is at most :math:`\log N`, so the estimate can never exceed
    :math:`\log N`, however large the true MI.

    Args:
        scores: ``[..., N, N]`` critic values.

    Returns:
        ``[...]``: one estimate per batch (average them over batches).
    """
    if not isinstance(scores, Tensor) or scores.dim() < 2 or scores.shape[-1] != scores.shape[-2]:
        raise ValueError("scores must be a torch.Tensor of shape [..., N, N]")
    n = scores.shape[-1]
    check_batch(n)
    log_softmax = scores.float() - torch.logsumexp(scores.float(), dim=-1, keepdim=True)  # [..., N, N]
    return math.log(n) + log_softmax.diagonal(dim1=-2, dim2=-1).mean(-1)


class QuadraticCritic(nn.Module):
    r"""``R`` independent critics :math:`f_r(x, y) = x^\top W_r\, y + \sum_c a_{rc}\, y_c^2`, trained together.

    A bilinear critic plus a diagonal quadratic term in :math:`y`. For the
    Gaussians of :func:`correlated_gaussians`, the optimal InfoNCE critic
    :math:`\log p(y\mid x) - \log p(y)` (up to terms in :math:`x` alone, which
    cancel in each row's softmax) is of this form, with
    :math:`W = \frac{\rho}{1-\rho^2} I` and :math:`a = -\frac{\rho^2}{2(1-\rho^2)}`
    (see :func:`optimal_gaussian_critic`).
    """

    def __init__(self, settings: int, dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(settings, dim, dim))  # [R, d, d]
        self.a = nn.Parameter(torch.zeros(settings, dim))  # [R, d]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``x, y``: ``[R, G, N, d]`` → scores ``[R, G, N, N]``."""
        bilinear = torch.einsum("rgid,rde,rgje->rgij", x, self.W, y)  # [R, G, N, N]
        quad = torch.einsum("rgjd,rd->rgj", y**2, self.a)  # [R, G, N]
        return bilinear + quad.unsqueeze(-2)


def optimal_gaussian_critic(x: Tensor, y: Tensor, rho: Tensor) -> Tensor:
    r"""The optimal critic :math:`\log p(y_j\mid x_i) - \log p(y_j)` for :func:`correlated_gaussians`, ``[R, G, N, N]``."""
    r = torch.as_tensor(rho, dtype=x.dtype).view(-1, 1, 1, 1)  # [R, 1, 1, 1]
    s2 = 1 - r**2
    xy = x @ y.transpose(-1, -2)  # [R, G, N, N]
    xx = (x**2).sum(-1, keepdim=True)  # [R, G, N, 1]
    yy = (y**2).sum(-1).unsqueeze(-2)  # [R, G, 1, N]
    return -(yy - 2 * r * xy + r**2 * xx) / (2 * s2) + yy / 2 - 0.5 * x.shape[-1] * torch.log(s2)


def fit_infonce_critic(
    rhos: Sequence[float] | Tensor,
    dim: int,
    n: int,
    steps: int = 300,
    samples_per_step: int = 1024,
    eval_samples: int = 8192,
    lr: float = 0.2,
    seed: int = 0,
) -> Tensor:
    """Train one :class:`QuadraticCritic` per ``rho`` with batch size ``n``; return the InfoNCE MI estimates ``[R]``.

    Each step draws ``samples_per_step // n`` independent batches of ``n`` pairs
    per setting and maximises the mean of :func:`infonce_mi_bound` with Adam
    (cosine-decayed learning rate). The estimate is then averaged over fresh
    batches holding ``eval_samples`` pairs in all.
    """
    if n < 2:
        raise ValueError(f"the batch size n must be at least 2, got {n}")
    if steps < 1 or samples_per_step < n or eval_samples < n:
        raise ValueError("need steps >= 1 and samples_per_step, eval_samples >= n")
    rhos = torch.as_tensor(rhos, dtype=torch.float32).reshape(-1)
    gen = torch.Generator().manual_seed(seed)
    critic = QuadraticCritic(len(rhos), dim)
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    groups = samples_per_step // n
    for _ in range(steps):
        x, y = correlated_gaussians(rhos, n, dim, groups, gen)
        loss = -infonce_mi_bound(critic(x, y)).mean(-1).sum()  # settings are independent: sum their losses
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        x, y = correlated_gaussians(rhos, n, dim, eval_samples // n, gen)
        return infonce_mi_bound(critic(x, y)).mean(-1)  # [R]
