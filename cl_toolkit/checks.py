"""Input validation shared by the losses, MoCo and the analysis tools.

Each check raises ``ValueError`` naming the argument, what it got and what it needs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_batch", "check_matrix", "check_pair", "check_temperature"]


def check_matrix(name: str, x: Tensor) -> None:
    """``x`` is a finite ``[N, d]`` tensor."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [N, d], got {tuple(x.shape)}")
    if not torch.isfinite(x.detach()).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Two row-aligned ``[N, d]`` matrices (queries and keys, two views, a positive pair)."""
    check_matrix(name_a, a)
    check_matrix(name_b, b)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape [N, d], got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_temperature(temperature: float) -> None:
    """A positive finite number."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")


def check_batch(n: int) -> None:
    """At least two rows: one positive and one negative."""
    if n < 2:
        raise ValueError(f"batch size must be at least 2 to have a negative, got {n}")
