"""cl_toolkit.plots: the curves drawn are the recorded history, for runs and plain rows."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from cl_toolkit.plots import history_rows, plot_history
from cl_toolkit.train import TrainResult


def result(scores, losses):
    return TrainResult(
        steps_done=len(losses), losses=losses, best_score=max(scores), best_step=10, seconds=1.0,
        history=[{"step": 5 * (i + 1), "score": s} for i, s in enumerate(scores)],
        train_history=[{"step": i + 1, "loss": x, "lr": 0.1} for i, x in enumerate(losses)],
    )


def test_lines_are_the_history_and_references_are_flat():
    runs = {"a": result([10.0, 20.0], [3.0, 2.0, 1.0]), "b": [{"step": 1, "score": 5.0}, {"step": 2, "score": 7.0}]}
    ax = plot_history(runs, reference={"baseline": 15.0})
    lines = ax.get_lines()
    assert list(lines[0].get_xdata()) == [5, 10] and list(lines[0].get_ydata()) == [10.0, 20.0]
    assert list(lines[1].get_xdata()) == [1, 2] and list(lines[1].get_ydata()) == [5.0, 7.0]
    assert list(lines[2].get_ydata()) == [15.0, 15.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "baseline"]


def test_loss_uses_per_step_rows_or_losses():
    r = result([1.0], [3.0, 2.0, 1.0])
    assert [row["loss"] for row in history_rows(r, "loss")] == [3.0, 2.0, 1.0]
    r.train_history = []
    assert [row["step"] for row in history_rows(r, "loss")] == [1, 2, 3]
    ax = plot_history({"r": r}, metric="loss", logy=True)
    assert ax.get_yscale() == "log" and ax.get_legend() is None


def test_missing_metric_names_it():
    with pytest.raises(ValueError, match="no 'align'.*eval_every"):
        history_rows(result([1.0], [1.0]), "align")
