r"""Training across processes with PyTorch's own engine (``torch.distributed``).

Launch with ``torchrun``; every function here is a no-op (or the identity) when the
process was not launched that way, so the same code runs on one process::

    torchrun --nproc_per_node 2 -m cl_toolkit train simcse --out runs/simcse

On a CPU the processes talk through ``gloo``, on CUDA through ``nccl``. ``torchrun`` is
the one supported launcher: ``accelerate launch --cpu --num_processes 2`` starts a
single process on a CPU machine without saying so.

Why the contrastive loss needs an all-gather *with gradients*
-------------------------------------------------------------
In-batch negatives couple the rows of a batch, so W processes with B rows each are
**not** W independent batches: data-parallel training must compute the loss of the
whole global batch of :math:`N = WB` rows. The recipe (the one :func:`cl_toolkit.train.fit`
follows):

1. every process takes its rank's slice of the global batch (one global permutation,
   :func:`shard`), rank :math:`r` holding rows :math:`R_r`, :math:`|R_r| = B`;
2. it encodes its rows, :math:`Z_r = f_\theta(X_r)` (``[B, d]``), and
   :func:`gather` concatenates every rank's embeddings, :math:`Z = [Z_1; \dots; Z_W]`
   (``[N, d]``), in rank order;
3. it computes the loss :math:`L(Z)` of the full batch, e.g.
   :math:`L = -\frac1N \sum_{i=1}^N \log \frac{e^{s_{ii}/\tau}}{\sum_{j=1}^N e^{s_{ij}/\tau}}`
   (InfoNCE), the same number on every rank;
4. after ``loss.backward()``, :func:`all_reduce_gradients` averages the parameter
   gradients over the processes.

Then loss and gradients equal those of one process with batch :math:`N`:

* the forward values are identical, since :math:`Z` is the same matrix;
* the backward pass of the autograd all-gather
  (``torch.distributed.nn.functional.all_gather``) sends each slice of
  :math:`\partial L/\partial Z` back to the rank that produced it and **sums** over
  ranks. Every rank holds the same :math:`L`, so rank :math:`r` receives
  :math:`W\,\partial L/\partial Z_r` and its parameter gradient is
  :math:`g_r = W\,J_r^\top\,\partial L/\partial Z_r` with :math:`J_r = \partial Z_r/\partial\theta`;
* averaging gives :math:`\frac1W\sum_r g_r = \sum_r J_r^\top\,\partial L/\partial Z_r
  = \nabla_\theta L`, the single-process gradient of the batch of :math:`N` rows
  (the chain rule over the rows of :math:`Z`).

A plain ``dist.all_gather`` returns tensors without a gradient: a rank's gradient then
comes only from its own rows (:math:`J_r^\top\,\partial L/\partial Z_r`), and the average is
:math:`\frac1W \nabla_\theta L` for this recipe — wrong by the factor :math:`W` (other
arrangements, such as each rank's loss over its own queries, lose whole terms instead).
Losses computed on each rank's rows alone (*local negatives*) see :math:`B - 1` negatives
instead of :math:`N - 1`: a different, easier objective. ``tests/test_distributed.py``
measures the three facts on two ``gloo`` processes.

Two details a training loop must get right:

* clip gradients *after* :func:`all_reduce_gradients`, so the norm is the global one;
* dropout: every rank draws its own masks, so W processes reproduce one process
  exactly only with dropout off (the loss is the same in distribution, not bit for bit).
"""

from __future__ import annotations

import atexit
import gc
import os
import warnings
from typing import Any, Iterable, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "init",
    "shutdown",
    "is_distributed",
    "world_size",
    "rank",
    "local_rank",
    "is_main",
    "barrier",
    "gather",
    "all_reduce_gradients",
    "all_reduce_mean",
    "all_gather_object",
    "broadcast_object",
    "shard",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- process group
def init(backend: str | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT`` (``env://``). Does nothing and returns ``False`` when
    ``WORLD_SIZE`` is unset (a plain ``python`` run); returns ``True`` once the group
    exists (calling it again is harmless).

    Args:
        backend: ``"gloo"`` or ``"nccl"``; by default ``nccl`` when CUDA is available
            (each process then uses GPU ``LOCAL_RANK``), else ``gloo``.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    if "WORLD_SIZE" not in os.environ:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE is set but this PyTorch build has no torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: launch with "
            "`torchrun --nproc_per_node N ...`, or unset WORLD_SIZE for a single process"
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, init_method="env://")
    if backend == "gloo":  # a process that returns without shutdown() still leaves cleanly
        atexit.register(_destroy_at_exit)
    return True


def _destroy_at_exit() -> None:
    if is_distributed():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def shutdown() -> None:
    """Leave the process group: call it once on every rank at the end of a run.

    Waits for every rank, collects the garbage (autograd graphs that still hold
    communication buffers) and destroys the group. With ``gloo`` in torch 2.13, a process
    that exits without destroying the group aborts now and then at interpreter exit
    ("terminate called without an active exception"); :func:`init` therefore also
    registers this clean-up, without the barrier, to run at exit. No-op when not distributed.
    """
    if is_distributed():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def is_distributed() -> bool:
    """Whether this process belongs to an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in ``[0, world_size())`` (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``; 0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0 (and on a single process): the one that logs and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


# --------------------------------------------------------------------------- tensors
def gather(x: Tensor) -> Tensor:
    """Concatenate every rank's ``x`` along dim 0, in rank order, keeping the gradient.

    ``[B, ...]`` on each of W ranks → ``[W·B, ...]`` on every rank. The backward pass
    returns to each rank the sum over ranks of the gradient of its own slice (see the
    module docstring for why the average of the parameter gradients is then exact).
    Every rank must pass the same shape. Returns ``x`` itself when not distributed.
    """
    if not is_distributed() or world_size() == 1:
        return x
    if not isinstance(x, Tensor) or x.dim() == 0:
        raise ValueError(f"gather needs a tensor of at least one dimension, got {getattr(x, 'shape', type(x))}")
    shapes = all_gather_object(tuple(x.shape))
    if len(set(shapes)) != 1:
        raise ValueError(
            f"gather needs the same shape on every rank, got {shapes} (rank order): give every "
            "process the same number of rows (a global batch divisible by the world size, see shard())"
        )
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # torch 2.13 marks it deprecated; it is still the autograd-aware one
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(x)
    return torch.cat(parts, dim=0)


def all_reduce_gradients(params: Iterable[nn.Parameter], bucket_mb: float = 32.0) -> None:
    """Average ``p.grad`` over the processes, in place (no-op when not distributed).

    * ``None`` gradients: a parameter that has no gradient on *any* rank keeps
      ``None`` (so the optimiser skips it, as on one process); one that has a
      gradient on some ranks only counts as zero on the others.
    * Sparse gradients (``nn.Embedding(sparse=True)``) are summed densely and stored
      back as a coalesced sparse tensor, so a sparse optimiser still works; this
      costs one dense copy of that parameter for the duration of the call.
    * Dense gradients are flattened into buckets of about ``bucket_mb`` MB per
      dtype and device, one ``all_reduce`` per bucket.

    Every rank must pass the same parameters in the same order (the same model).
    """
    if not is_distributed() or world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    w = world_size()
    device = params[0].device if params[0].device.type == "cuda" else torch.device("cpu")
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
    dist.all_reduce(has)  # how many ranks hold a gradient for each parameter
    dense: dict[tuple, list[nn.Parameter]] = {}
    for p, count in zip(params, has.tolist()):
        if count == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if p.grad.is_sparse:
            summed = p.grad.to_dense()
            dist.all_reduce(summed)
            p.grad = (summed / w).to_sparse().coalesce()
        else:
            dense.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    limit = int(bucket_mb * 2**20)
    for group in dense.values():
        bucket: list[nn.Parameter] = []
        size = 0
        for p in group + [None]:
            if p is not None and (not bucket or size + p.grad.numel() * p.grad.element_size() <= limit):
                bucket.append(p)
                size += p.grad.numel() * p.grad.element_size()
                continue
            flat = torch.cat([q.grad.reshape(-1) for q in bucket])
            dist.all_reduce(flat)
            flat /= w
            offset = 0
            for q in bucket:
                n = q.grad.numel()
                q.grad.copy_(flat[offset : offset + n].view_as(q.grad))
                offset += n
            if p is not None:
                bucket, size = [p], p.grad.numel() * p.grad.element_size()


def all_reduce_mean(x: Tensor | float) -> Tensor | float:
    """The mean of ``x`` over the processes (a copy; ``x`` unchanged). For logging losses, metrics."""
    if not is_distributed() or world_size() == 1:
        return x
    t = x.detach().clone() if isinstance(x, Tensor) else torch.tensor(float(x), dtype=torch.float64)
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        t = t.cuda()
    dist.all_reduce(t)
    t /= world_size()
    return t.to(x.device) if isinstance(x, Tensor) else float(t)


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not is_distributed() or world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` when not distributed)."""
    if not is_distributed() or world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# --------------------------------------------------------------------------- data
def shard(batch: Sequence[T]) -> list[T]:
    """This rank's contiguous slice of a global batch (the whole batch when not distributed).

    Rank ``r`` of ``W`` gets ``batch[r·B:(r+1)·B]`` with ``B = len(batch) / W``, so that
    :func:`gather` puts the embeddings back in the global batch's order. The length
    must be divisible by the world size.
    """
    w, r = world_size(), rank()
    if len(batch) % w:
        raise ValueError(
            f"a global batch of {len(batch)} examples cannot be split over {w} processes: "
            f"use a global batch size divisible by {w}"
        )
    b = len(batch) // w
    return list(batch[r * b : (r + 1) * b])
