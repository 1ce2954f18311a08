"""Measurements that need several processes; ``tests/test_distributed.py`` launches this file.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_check.py facts OUT.json

Rank 0 writes the numbers as JSON to ``OUT.json``; the tests assert on them.

``facts``: one small InfoNCE model, the same global batch of ``W·B`` rows on every rank.
    * reference: one process, the whole batch (each rank computes it, no communication);
    * ``autograd``: each rank encodes its slice, ``distributed.gather`` (autograd all-gather),
      the loss over all rows, ``distributed.all_reduce_gradients``;
    * ``plain``: the same with ``dist.all_gather`` (no gradient through the other ranks' rows;
      the local rows are put back with their gradient, the usual hand-written version);
    * ``local``: each rank's loss over its own rows only (local negatives), averaged;
    * ``all_reduce_gradients`` on a model with a sparse embedding gradient, a parameter that has
      a gradient on rank 0 only, and one that has none anywhere.

``fit``: ``cl_toolkit.train.fit`` trains a small encoder (unsupervised SimCSE step, dropout off,
    4 steps, a checkpoint every 2) with batch ``16 / W`` per process; then a second run stops
    after 2 steps and a third call resumes it from its checkpoint. Writes the final weights
    (``final.safetensors``, ``resumed.safetensors``) and ``fit.json`` into ``OUT_DIR``, which
    ends in ``-<W>`` — also launched without torchrun (W = 1), the reference.

    python tests/dist_check.py fit OUT_DIR-1
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_check.py fit OUT_DIR-2
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from cl_toolkit import distributed as D
from cl_toolkit.losses import info_nce


def _flat_grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _zero(model: nn.Module) -> None:
    model.zero_grad(set_to_none=True)


def facts() -> dict:
    w, r = D.world_size(), D.rank()
    b, d_in, tau = 8, 16, 0.1
    torch.manual_seed(0)  # same weights and the same global batch on every rank
    model = nn.Sequential(nn.Linear(d_in, 32), nn.Tanh(), nn.Linear(32, 8))
    x1 = torch.randn(w * b, d_in)
    x2 = x1 + 0.3 * torch.randn(w * b, d_in)  # two "views" of each example
    mine = D.shard(list(range(w * b)))

    ref = copy.deepcopy(model)
    loss_ref = info_nce(ref(x1), ref(x2), tau)
    loss_ref.backward()
    g_ref = _flat_grads(ref)

    # (a) autograd all-gather, loss over all W·B rows, gradients averaged
    _zero(model)
    loss_a = info_nce(D.gather(model(x1[mine])), D.gather(model(x2[mine])), tau)
    loss_a.backward()
    D.all_reduce_gradients(model.parameters())
    g_a = _flat_grads(model)

    # (b) plain dist.all_gather: no gradient flows back through the other ranks' rows
    def plain_gather(z: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(z) for _ in range(w)]
        dist.all_gather(parts, z.detach().contiguous())
        parts[r] = z  # the local rows keep their gradient
        return torch.cat(parts)

    _zero(model)
    loss_b = info_nce(plain_gather(model(x1[mine])), plain_gather(model(x2[mine])), tau)
    loss_b.backward()
    D.all_reduce_gradients(model.parameters())
    g_b = _flat_grads(model)

    # (c) local negatives only: each rank's loss over its own B rows, averaged over ranks
    with torch.no_grad():
        loss_c = float(D.all_reduce_mean(info_nce(model(x1[mine]), model(x2[mine]), tau)))

    rel = lambda g: float((g - g_ref).norm() / g_ref.norm())
    out = {
        "world_size": w,
        "batch_per_rank": b,
        "loss_ref": float(loss_ref.detach()),
        "loss_autograd": float(loss_a.detach()),
        "loss_plain": float(loss_b.detach()),
        "loss_local": loss_c,
        "grad_autograd_max_abs": float((g_a - g_ref).abs().max()),
        "grad_autograd_rel": rel(g_a),
        "grad_plain_max_abs": float((g_b - g_ref).abs().max()),
        "grad_plain_rel": rel(g_b),
        "grad_ref_max_abs": float(g_ref.abs().max()),
        # the gradients after averaging must be identical on every rank
        "grads_equal_across_ranks": len({tuple(g.tolist()) for g in D.all_gather_object(g_a)}) == 1,
    }
    out.update(_reduce_special())
    return out


def _reduce_special() -> dict:
    """``all_reduce_gradients`` with sparse, partly-missing and missing gradients."""
    w, r = D.world_size(), D.rank()
    torch.manual_seed(1)
    emb = nn.Embedding(10, 4, sparse=True)
    only_rank0 = nn.Parameter(torch.randn(3))
    unused = nn.Parameter(torch.randn(2))
    dense = nn.Parameter(torch.randn(5))
    params = [emb.weight, only_rank0, unused, dense]
    idx = torch.tensor([r, r + 1, 7])  # rows 7 on every rank, others per rank
    loss = (emb(idx) ** 2).sum() * (r + 1) + (dense * (r + 1)).sum()
    if r == 0:
        loss = loss + (only_rank0**3).sum()
    loss.backward()
    local = {"emb": emb.weight.grad.to_dense().clone(), "dense": dense.grad.clone(),
             "only0": only_rank0.grad.clone() if only_rank0.grad is not None else torch.zeros(3)}
    everyone = D.all_gather_object(local)
    expected = {k: sum(e[k] for e in everyone) / w for k in local}
    D.all_reduce_gradients(params)
    return {
        "sparse_still_sparse": bool(emb.weight.grad.is_sparse),
        "sparse_max_abs_err": float((emb.weight.grad.to_dense() - expected["emb"]).abs().max()),
        "dense_max_abs_err": float((dense.grad - expected["dense"]).abs().max()),
        "partial_max_abs_err": float((only_rank0.grad - expected["only0"]).abs().max()),
        "unused_grad_is_none": unused.grad is None,
    }


GLOBAL_BATCH, STEPS = 16, 4


def _sentences(n: int = 96) -> list[str]:
    import random

    words = "the a cat dog sat ran on under mat rug red blue big small quickly slowly home park".split()
    rnd = random.Random(0)
    return [" ".join(rnd.choice(words) for _ in range(rnd.randint(3, 9))) for _ in range(n)]


def fit_runs(out: Path) -> dict:
    import safetensors.torch as st

    from cl_toolkit.models import Encoder
    from cl_toolkit.simcse import unsup_simcse_loss
    from cl_toolkit.train import TrainConfig, fit

    writes = {"model": 0}
    real_save_model = st.save_model

    def counting_save_model(*args, **kwargs):  # which process writes model files
        writes["model"] += 1
        return real_save_model(*args, **kwargs)

    st.save_model = counting_save_model
    w = D.world_size()
    data = _sentences()
    step = lambda model, batch: unsup_simcse_loss(model, batch, 0.05)
    model = lambda: Encoder.tiny(layers=1, hidden=32, heads=2, dropout=0.0, max_length=16, seed=0)
    cfg = lambda run, **kw: TrainConfig(steps=STEPS, batch_size=GLOBAL_BATCH // w, lr=1e-3, warmup_steps=1,
                                        save_every=2, out_dir=str(out / run), seed=3, **kw)

    full = model()
    result = fit(full, data, step, cfg("run"))
    part = model()
    first = fit(part, data, step, cfg("resume", stop_after=2))
    part = model()  # a fresh process would start from scratch: fit restores the checkpoint
    second = fit(part, data, step, cfg("resume"))
    writes_per_rank = [r["model"] for r in D.all_gather_object(writes)]
    st.save_model = real_save_model
    if D.is_main():
        st.save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(out / "final.safetensors"))
        st.save_file({k: v.contiguous() for k, v in part.state_dict().items()}, str(out / "resumed.safetensors"))
    return {
        "world_size": w,
        "losses": result.losses,
        "first_steps": first.steps_done,
        "stopped_early": first.stopped_early,
        "resumed_from": second.resumed_from,
        "resumed_losses": second.losses,
        "model_writes_per_rank": writes_per_rank,
        "checkpoint_files": sorted(p.name for p in (out / "run" / "checkpoint").iterdir()),
    }


def main() -> None:
    mode, path = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    if not D.init() and mode != "fit":
        raise SystemExit("launch with torchrun: WORLD_SIZE is not set")
    if mode == "fit":
        path.mkdir(parents=True, exist_ok=True)
        result = fit_runs(path)
        path = path / "fit.json"
    else:
        result = {"facts": facts}[mode]()
    if D.is_main():
        path.write_text(json.dumps(result, indent=2))
    D.shutdown()  # on success only: after a failure the other ranks may never reach its barrier


if __name__ == "__main__":
    main()
