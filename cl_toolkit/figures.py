"""The book's landing-page figure: contrastive learning in one picture, drawn by the toolkit.

Both panels are computed with :func:`cl_toolkit.losses.info_nce_logits` and autograd, on
points of the unit circle (the 2-D picture of the unit sphere on which embeddings are
compared by cosine similarity):

* **(a) one step.** An anchor, its positive and a few negatives. The arrows are the
  negative gradient of the anchor's InfoNCE term with respect to each key, projected on the
  circle: the positive is pulled towards the anchor; each negative is pushed away, the more
  strongly the closer it is (its softmax weight).
* **(b) a short training run.** Pairs of free points trained with the symmetric InfoNCE
  loss: each pair ends together, and the pairs spread around the circle (alignment and
  uniformity, Wang & Isola 2020).

``python tools/figures.py`` writes the image used by ``book/intro.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .losses import info_nce, info_nce_logits

__all__ = ["Forces", "ToyRun", "pull_push_forces", "train_toy_pairs", "draw_idea"]


@dataclass
class Forces:
    """Points on the unit circle and the force on each key (all ``numpy`` arrays).

    ``anchor`` ``(2,)``; ``keys`` ``(K, 2)``, row 0 the positive, rows 1.. the negatives;
    ``forces`` ``(K, 2)``: minus the gradient of the anchor's loss term with respect to each
    key, projected on the circle's tangent; ``weights`` ``(K,)``: the anchor's softmax over
    the keys.
    """

    anchor: np.ndarray
    keys: np.ndarray
    forces: np.ndarray
    weights: np.ndarray


def _on_circle(angles_deg) -> torch.Tensor:
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([torch.cos(a), torch.sin(a)], dim=-1)  # (K, 2)


def pull_push_forces(
    anchor_deg: float = 90.0,
    positive_deg: float = 125.0,
    negative_deg: tuple[float, ...] = (20.0, 55.0, 200.0, 250.0, 300.0, 340.0),
    temperature: float = 0.25,
) -> Forces:
    """The InfoNCE forces on the keys of one anchor (angles in degrees on the unit circle)."""
    if not negative_deg:
        raise ValueError("negative_deg must hold at least one angle: InfoNCE needs a negative")
    anchor = _on_circle([anchor_deg])  # (1, 2)
    keys = _on_circle([positive_deg, *negative_deg]).requires_grad_(True)  # (K, 2)
    # The anchor's row of the batch logits: queries = the anchor, keys = its positive
    # (column 0) and, as extra negatives, the other keys.
    queries = torch.cat([anchor, anchor])  # a batch of two identical rows: N >= 2 is required
    batch_keys = torch.cat([keys[:1], keys[:1]])
    logits = info_nce_logits(queries.float(), batch_keys.float(), temperature, negatives=keys[1:].float())
    row = torch.cat([logits[0, :1], logits[0, 2:]])  # (K,): positive, then the negatives
    loss = F.cross_entropy(row[None], torch.zeros(1, dtype=torch.long))
    (grad,) = torch.autograd.grad(loss, keys)
    k = keys.detach()
    tangent = -grad - (-grad * k).sum(-1, keepdim=True) * k  # remove the radial part
    return Forces(
        anchor=anchor[0].numpy(),
        keys=k.numpy(),
        forces=tangent.double().numpy(),
        weights=torch.softmax(row.detach().double(), -1).numpy(),
    )


@dataclass
class ToyRun:
    """Start and end of :func:`train_toy_pairs`: ``(P, 2)`` unit vectors per view, and the losses."""

    start_a: np.ndarray
    start_b: np.ndarray
    end_a: np.ndarray
    end_b: np.ndarray
    losses: list[float]


def train_toy_pairs(
    pairs: int = 6, steps: int = 150, temperature: float = 0.25, lr: float = 0.05, seed: int = 0
) -> ToyRun:
    """Train ``pairs`` pairs of free 2-D points with the symmetric InfoNCE loss."""
    if pairs < 2:
        raise ValueError(f"pairs must be at least 2 (a pair needs negatives), got {pairs}")
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(pairs, 2, generator=gen, dtype=torch.float32)
    b = torch.randn(pairs, 2, generator=gen, dtype=torch.float32)
    start_a, start_b = F.normalize(a, dim=-1).numpy(), F.normalize(b, dim=-1).numpy()
    a.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.Adam([a, b], lr=lr)
    losses = []
    for _ in range(steps):
        loss = 0.5 * (info_nce(a, b, temperature) + info_nce(b, a, temperature))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        end_a, end_b = F.normalize(a, dim=-1).numpy(), F.normalize(b, dim=-1).numpy()
    return ToyRun(start_a, start_b, end_a, end_b, losses)


def draw_idea(forces: Forces | None = None, run: ToyRun | None = None):
    """The two-panel figure; returns the matplotlib ``Figure``."""
    import matplotlib.pyplot as plt

    forces = forces or pull_push_forces()
    run = run or train_toy_pairs()
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 4.2), dpi=150)
    t = np.linspace(0, 2 * np.pi, 400)
    for ax in axes:
        ax.plot(np.cos(t), np.sin(t), color="0.8", lw=1.2, zorder=0)
        ax.set_aspect("equal")
        ax.set_xlim(-1.45, 1.45)
        ax.set_ylim(-1.45, 1.45)
        ax.axis("off")

    ax = axes[0]
    ax.set_title("(a) One step: pull the positive, push the negatives", fontsize=10)
    q = forces.anchor
    ax.scatter(*q, s=90, marker="*", color="black", zorder=3)
    ax.annotate("anchor", q, xytext=(0, 9), textcoords="offset points", ha="center", fontsize=9)
    scale = 0.5 / np.linalg.norm(forces.forces, axis=1).max()  # longest arrow: 0.5
    for i, (k, f, w) in enumerate(zip(forces.keys, forces.forces, forces.weights)):
        color = "tab:green" if i == 0 else "tab:red"
        ax.scatter(*k, s=45, color=color, zorder=3)
        ax.annotate("", xy=k + scale * f, xytext=k, zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=1.6, mutation_scale=11))
        if i == 0:
            ax.annotate("positive", k, xytext=(-10, 4), textcoords="offset points", ha="right",
                        fontsize=9, color=color)
    ax.text(0, -0.1, "negatives: pushed away,\nthe closest the hardest", ha="center", va="center",
            fontsize=9, color="tab:red")

    ax = axes[1]
    ax.set_title(f"(b) {len(run.losses)} steps: pairs together, pairs apart", fontsize=10)
    colors = plt.get_cmap("tab10")(np.arange(len(run.end_a)))
    for c, sa, sb, ea, eb in zip(colors, run.start_a, run.start_b, run.end_a, run.end_b):
        ax.scatter(*(0.62 * sa), s=22, facecolors="none", edgecolors=[c], lw=1.0, zorder=2)
        ax.scatter(*(0.62 * sb), s=22, marker="s", facecolors="none", edgecolors=[c], lw=1.0, zorder=2)
        ax.scatter(*ea, s=40, color=[c], zorder=3)
        ax.scatter(*(1.12 * eb), s=36, marker="s", color=[c], zorder=3)
    ax.plot(0.62 * np.cos(t), 0.62 * np.sin(t), color="0.9", lw=0.8, ls="--", zorder=0)
    ax.text(0, 0, "start\n(inner ring)", ha="center", va="center", fontsize=9, color="0.35")
    ax.text(0, -1.38, "end: ● and ■ of a colour are one pair", ha="center", fontsize=9, color="0.2")
    fig.tight_layout()
    return fig
