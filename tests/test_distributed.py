"""Training across processes (``cl_toolkit.distributed``), measured on two ``gloo`` processes.

Each test group launches ``torchrun --nproc_per_node 2`` (as ``python -m torch.distributed.run``)
once on a script in ``tests/`` and asserts on the numbers it writes:

(a) with the autograd all-gather, 2 processes × batch B give the loss and gradients of one
    process with batch 2B (InfoNCE);
(b) control: a plain ``dist.all_gather`` (no gradient through the other ranks' rows) gives the
    right loss but gradients that are far off — the check above can fail;
(c) local-only negatives change the loss.

Then ``cl_toolkit.train.fit`` across 2 processes against one process with the doubled batch
(dropout off: the same weights after training), checkpoints written by rank 0 only, an exact
resume, and the command line under ``torchrun``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cl_toolkit import distributed as D

TESTS = Path(__file__).resolve().parent
TIMEOUT = 180  # seconds; a run takes about 5-10 s, more on a busy machine


def torchrun(*args: str | Path, nproc: int = 2, timeout: int = TIMEOUT, cwd: Path | None = None):
    """Run ``torchrun --standalone --nproc_per_node nproc ARGS`` on the CPU; fail with its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CL_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    if out.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited with {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


@pytest.fixture(scope="module")
def facts(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("dist") / "facts.json"
    torchrun(TESTS / "dist_check.py", "facts", str(path))
    return json.loads(path.read_text())


def test_two_processes_ran(facts):
    assert facts["world_size"] == 2


def test_autograd_gather_reproduces_the_doubled_batch(facts):
    # (a) loss and gradients of 2 x B equal one process with 2B
    assert abs(facts["loss_autograd"] - facts["loss_ref"]) < 1e-6
    assert facts["grad_autograd_max_abs"] < 1e-6
    assert facts["grad_autograd_rel"] < 1e-6
    assert facts["grads_equal_across_ranks"]


def test_plain_all_gather_gets_the_gradient_wrong(facts):
    # (b) control: the forward value is right, the gradient is not (half of it, with 2 ranks)
    assert abs(facts["loss_plain"] - facts["loss_ref"]) < 1e-6
    assert facts["grad_plain_rel"] > 0.3
    assert facts["grad_plain_max_abs"] > 1e3 * max(facts["grad_autograd_max_abs"], 1e-9)


def test_local_negatives_change_the_loss(facts):
    # (c) B - 1 negatives instead of 2B - 1: an easier task, a smaller loss
    assert facts["loss_local"] < facts["loss_ref"] - 0.05


def test_all_reduce_gradients_sparse_and_missing(facts):
    assert facts["sparse_still_sparse"]
    assert facts["sparse_max_abs_err"] < 1e-6
    assert facts["dense_max_abs_err"] < 1e-6
    assert facts["partial_max_abs_err"] < 1e-6  # a gradient on rank 0 only counts as 0 on rank 1
    assert facts["unused_grad_is_none"]  # no gradient anywhere: stays None, as on one process


# --------------------------------------------------------------------------- fit across processes
@pytest.fixture(scope="module")
def fit_runs(tmp_path_factory) -> dict:
    """``dist_check.py fit`` on one process (batch 16) and on two (batch 8 each)."""
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("fit")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("WORLD_SIZE", None)
    one = subprocess.run([sys.executable, str(TESTS / "dist_check.py"), "fit", str(root / "w-1")],
                         capture_output=True, text=True, env=env, timeout=TIMEOUT)
    if one.returncode != 0:
        pytest.fail(f"single-process fit failed:\n{one.stderr[-5000:]}")
    torchrun(TESTS / "dist_check.py", "fit", str(root / "w-2"))
    runs = {}
    for w in (1, 2):
        d = root / f"w-{w}"
        runs[w] = {**json.loads((d / "fit.json").read_text()),
                   "final": load_file(str(d / "final.safetensors")),
                   "resumed": load_file(str(d / "resumed.safetensors"))}
    return runs


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_fit_two_processes_equal_one_with_the_doubled_batch(fit_runs):
    one, two = fit_runs[1], fit_runs[2]
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert len(two["losses"]) == 4
    for a, b in zip(one["losses"], two["losses"]):
        assert abs(a - b) < 1e-5
    from cl_toolkit.models import Encoder

    start = Encoder.tiny(layers=1, hidden=32, heads=2, dropout=0.0, max_length=16, seed=0).state_dict()
    moved = _max_diff(one["final"], start)
    assert moved > 1e-3  # training moved the weights ...
    assert _max_diff(one["final"], two["final"]) < 1e-2 * moved  # ... and both runs alike (measured: 3e-6 vs 3e-3)


def test_fit_checkpoints_on_rank_zero_only(fit_runs):
    two = fit_runs[2]
    assert two["model_writes_per_rank"][0] > 0 and two["model_writes_per_rank"][1:] == [0]
    files = set(two["checkpoint_files"])
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= files
    assert {"rng-0.safetensors", "rng-1.safetensors"} <= files  # each process's random-number state


def test_fit_resumes_exactly_across_processes(fit_runs):
    for w in (1, 2):
        run = fit_runs[w]
        assert run["stopped_early"] and run["first_steps"] == 2 and run["resumed_from"] == 2
        assert run["resumed_losses"] == run["losses"]
        assert _max_diff(run["resumed"], run["final"]) == 0.0


def test_cli_trains_under_torchrun(tmp_path, repo_root):
    out = tmp_path / "simcse"
    torchrun("-m", "cl_toolkit", "train", "simcse", "--profile", "quick", "--model", "tiny", "--steps", "2",
             "--batch-size", "8", "--no-eval", "--out", str(out), cwd=repo_root)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert (out / "model" / "model.safetensors").is_file()
    assert {"rng-0.json", "rng-1.json"} <= {p.name for p in (out / "run" / "checkpoint").iterdir()}
    env = json.loads((out / "run" / "env.json").read_text())
    assert env["world_size"] == 2
    history = json.loads((out / "run" / "history.json").read_text())["train"]
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(row["loss"])) for row in history)


# --------------------------------------------------------------------------- one process
def test_single_process_is_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert D.init() is False
    assert (D.world_size(), D.rank(), D.is_main()) == (1, 0, True)
    x = torch.randn(3, 2, requires_grad=True)
    assert D.gather(x) is x
    assert D.all_reduce_mean(2.5) == 2.5
    assert D.shard([1, 2, 3]) == [1, 2, 3]
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    D.all_reduce_gradients([p])
    assert p.grad.tolist() == [3.0, 3.0]
    D.barrier()
    D.shutdown()


def test_init_names_missing_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        D.init()


def test_init_rejects_unknown_backend(monkeypatch):
    for k, v in {"WORLD_SIZE": "1", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match="backend"):
        D.init(backend="mpi")
