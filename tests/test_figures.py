"""The landing-page figure: the script runs, and what it draws is what the caption says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_toolkit.figures import pull_push_forces, train_toy_pairs

ROOT = Path(__file__).resolve().parent.parent


def test_script_writes_the_figure(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "figures.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    png = tmp_path / "contrastive_idea.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 1000 and height >= 500, f"{width}x{height} px: too small for 150 dpi"


def test_forces_pull_the_positive_and_push_the_negatives():
    f = pull_push_forces()
    anchor = torch.tensor(f.anchor)
    for i, (key, force) in enumerate(zip(f.keys, f.forces)):
        # moving the key along its force changes its cosine with the anchor by force . anchor
        towards = float(np.dot(force, f.anchor))
        if i == 0:
            assert towards > 0, "the positive is not pulled towards the anchor"
        else:
            assert towards < 0, f"negative {i} is not pushed away from the anchor"
    # the closer a negative, the larger its softmax weight and the harder the push
    sims = f.keys[1:] @ f.anchor
    pushes = np.linalg.norm(f.forces[1:], axis=1)
    order = np.argsort(sims)
    assert np.all(np.diff(f.weights[1:][order]) >= 0) and f.weights[1:][order[-1]] > f.weights[1:][order[0]]
    nearest, farthest = order[-1], order[0]
    assert pushes[nearest] > pushes[farthest]
    assert abs(f.weights.sum() - 1) < 1e-9 and float(anchor.norm()) == pytest.approx(1)


def test_forces_equal_the_hand_derived_gradient():
    # d/dk_j of -log softmax(s/τ)_0 with s_j = q.k_j (unit vectors): (p_j - [j=0]) q / τ
    tau = 0.25
    f = pull_push_forces(temperature=tau)
    q = f.anchor
    grad = (f.weights - np.eye(len(f.keys))[0])[:, None] * q[None, :] / tau  # (K, 2)
    tangent = -grad - np.sum(-grad * f.keys, axis=1, keepdims=True) * f.keys
    np.testing.assert_allclose(f.forces, tangent, atol=1e-5)


def test_toy_training_aligns_pairs_and_spreads_them():
    run = train_toy_pairs(pairs=6, steps=150, seed=0)
    assert run.losses[-1] < run.losses[0] - 0.5
    start_align = np.mean(np.sum(run.start_a * run.start_b, axis=1))
    end_align = np.mean(np.sum(run.end_a * run.end_b, axis=1))
    assert end_align > 0.95 > start_align
    # the pairs spread: mean cosine between different pairs' points falls
    sims = run.end_a @ run.end_a.T
    off = sims[~np.eye(len(sims), dtype=bool)]
    assert off.mean() < 0.0
