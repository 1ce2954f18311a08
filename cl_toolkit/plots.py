"""Figures shared by the chapters: training curves of one or more runs.

:func:`plot_history` draws what :func:`cl_toolkit.run.run` recorded — the
evaluation rows (``Run.result.history``: ``{"step", "score", ...}``) or the
per-step losses (``Run.history``) — for several runs on one pair of axes, with
dashed reference lines (a baseline, an untrained start) beside them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["history_rows", "plot_history"]


def history_rows(run: Any, metric: str = "score") -> list[dict[str, float]]:
    """The rows of ``run`` that hold ``metric``: per-step rows for ``"loss"``, evaluations otherwise.

    ``run`` is a :class:`~cl_toolkit.run.Run`, a :class:`~cl_toolkit.train.TrainResult`
    or a list of rows (dicts with ``"step"``).
    """
    result = getattr(run, "result", run)
    if isinstance(result, Sequence):
        rows = list(result)
    elif metric == "loss":
        rows = list(getattr(result, "train_history", None) or [])
        if not rows:
            rows = [{"step": i + 1, "loss": x} for i, x in enumerate(result.losses)]
    else:
        rows = list(result.history)
    rows = [r for r in rows if metric in r]
    if not rows:
        raise ValueError(f"the run recorded no {metric!r}; evaluate it (eval_every > 0) or pick another metric")
    return rows


def plot_history(
    runs: Mapping[str, Any],
    metric: str = "score",
    ax=None,
    reference: Mapping[str, float] | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    logy: bool = False,
    marker: str | None = None,
):
    """Plot ``metric`` against the step for each run in ``runs`` (``{label: run}``).

    ``reference`` maps labels to constant values drawn as dashed horizontal lines
    (e.g. ``{"TF-IDF cosine": 75.6}``). Returns the axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for label, run in runs.items():
        rows = history_rows(run, metric)
        style = marker if marker is not None else ("-" if metric == "loss" else "o-")
        ax.plot([r["step"] for r in rows], [r[metric] for r in rows], style, ms=4, label=label)
    for k, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color=("0.45", "0.7", "0.2")[k % 3], ls=("--", ":", "-.")[k % 3], label=label)
    ax.set(xlabel="step", ylabel=ylabel or metric, title=title or "")
    if logy:
        ax.set_yscale("log")
    if len(runs) + len(reference or {}) > 1:
        ax.legend(fontsize=9)
    return ax
