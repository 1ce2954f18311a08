"""`fit`: the one training loop every chapter uses.

It knows a model, the data, a step function and a :class:`TrainConfig` — nothing
about text, images or any method. Everything method-specific arrives as an
argument: the step (``step_fn(model, batch) -> loss`` or ``(loss, metrics)``),
the optimiser and its schedule (default AdamW with linear warm-up then linear
decay), a collate function, an evaluation, and an ``on_step`` hook (e.g. MoCo's
momentum update).

The loop: gradient accumulation, gradient clipping, autocast (CUDA; bf16 on the
CPU on request), a tqdm progress bar showing the loss and the step's metrics,
evaluation every ``eval_every`` steps keeping the best weights, and checkpoints
every ``save_every`` steps. A checkpoint holds the model (safetensors), the
optimiser and scheduler (loaded with ``torch.load(weights_only=True)``: tensors
and numbers, no arbitrary pickles), every random-number generator and the data
position, so a killed run resumed from its last checkpoint ends with the same
weights as one that was never interrupted (on the CPU, bit for bit).

Data:

* a sequence (``len`` and indexing: a list, a ``torch.utils.data.Dataset``) is
  batched by the loop: micro-batch ``m`` holds the examples
  ``randperm(n, generator=seed·100003 + epoch)[k·B : (k+1)·B]``, so the data
  position is a pure function of the step counter; ``collate`` turns the list of
  examples into the batch (default: the list itself);
* any other iterable (a ``DataLoader`` with its own collate function, a generator
  object with ``__iter__``) is iterated as it comes, one micro-batch per item,
  re-iterated each epoch (``set_epoch(e)`` is called on it, or on its sampler,
  when it has one). Resume skips the batches already consumed in the epoch, so it
  is exact when the iterable yields the same batches for the same epoch.

Across processes (``torchrun``; see :mod:`cl_toolkit.distributed`): with world
size ``W``, a sequence's global micro-batch of ``W·B`` examples is split into ``W``
slices of ``B``, one per process; the step gathers what it needs across processes
(:func:`cl_toolkit.distributed.gather`), gradients are averaged after the
backward pass, and only rank 0 writes checkpoints. Iterables must be sharded by
the caller (e.g. a ``DistributedSampler``).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import torch
from torch import Tensor, nn

from . import distributed
from .config import is_quiet, seed_everything
from .rng import get_state, load_state, save_state, set_state

__all__ = [
    "EvalFn", "StepFn", "TrainConfig", "TrainResult", "batch_indices", "batches_per_epoch",
    "constant_schedule", "copy_model", "default_optimizer", "fit", "linear_schedule",
]

StepOutput = Union[Tensor, "tuple[Tensor, dict[str, float]]"]
StepFn = Callable[[nn.Module, Any], StepOutput]
EvalFn = Callable[[nn.Module], "float | dict[str, float]"]


@dataclass
class TrainConfig:
    """Sizes and switches of one training run."""

    steps: int  # optimiser steps in the whole run (the schedule's length)
    batch_size: int = 64  # examples per micro-batch and process (sequence data)
    lr: float = 3e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0  # None: no clipping (e.g. sparse gradients)
    grad_accum: int = 1  # micro-batches per optimiser step
    eval_every: int = 0  # 0: evaluate only at the end (when an eval_fn is given)
    save_every: int = 0  # 0: no checkpoints
    out_dir: str | None = None  # where checkpoints and the best weights go
    seed: int = 0  # the data order and the RNG (dropout masks): a run is a function of its seed
    amp: bool = True  # autocast on CUDA (bf16 where supported, else fp16 + GradScaler)
    cpu_bf16: bool = False  # autocast to bfloat16 on the CPU (fast on CPUs with avx512_bf16)
    metric: str = "score"  # which key of eval_fn's dict is "higher is better"
    load_best_at_end: bool = True
    eval_at_start: bool = False
    stop_after: int | None = None  # end this call after this global step (as a kill would)
    max_seconds: float | None = None  # end this call once this much wall time has passed
    desc: str = "train"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps], got {self.warmup_steps}")
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be at least 1, got {self.grad_accum}")
        if self.eval_every < 0 or self.save_every < 0:
            raise ValueError("eval_every and save_every must be >= 0")
        if self.save_every and not self.out_dir:
            raise ValueError("save_every needs out_dir")


@dataclass
class TrainResult:
    steps_done: int
    losses: list[float]  # one per optimiser step run in this call (and restored ones before it)
    history: list[dict[str, float]]  # one row per evaluation: {"step": ..., metric: ...}
    best_score: float | None
    best_step: int | None
    seconds: float
    resumed_from: int | None = None
    stopped_early: bool = False
    train_history: list[dict[str, float]] = field(default_factory=list)  # per step: step, loss, lr, metrics
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- schedules and optimisers
def linear_schedule(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr: 0 → 1 over warm-up, then 1 → 0 linearly (HF's default)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def constant_schedule(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """A schedule that keeps every learning rate as it is (pass as ``scheduler=``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def default_optimizer(params: Sequence[nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on biases and norms), as BERT and SimCSE do."""
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


# --------------------------------------------------------------------------- data position
def batches_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The example indices of micro-batch ``step`` (0-based); the last partial batch is dropped."""
    per_epoch = batches_per_epoch(n, batch_size)
    if per_epoch < 1:
        raise ValueError(f"dataset of {n} examples is smaller than one batch of {batch_size}")
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[k * batch_size : (k + 1) * batch_size].tolist()


def _is_sequence(data: Any) -> bool:
    if isinstance(data, (str, bytes, Mapping)):
        return False
    if isinstance(data, torch.utils.data.DataLoader):
        return False
    return isinstance(data, Sequence) or (hasattr(data, "__len__") and hasattr(data, "__getitem__"))


def _identity(examples: list) -> list:
    return examples


class _SequenceBatches:
    """Micro-batch ``m`` of a sequence: a pure function of ``(seed, m)``; this process's slice."""

    def __init__(self, data, batch_size: int, seed: int, collate):
        self.data, self.batch_size, self.seed, self.collate = data, batch_size, seed, collate
        self.world, self.rank = distributed.world_size(), distributed.rank()
        global_batch = batch_size * self.world
        if len(data) < global_batch:
            raise ValueError(
                f"dataset of {len(data)} examples is smaller than one batch of {global_batch}"
                + (f" ({self.world} processes x {batch_size})" if self.world > 1 else "")
            )

    def get(self, m: int):
        idx = batch_indices(len(self.data), self.batch_size * self.world, self.seed, m)
        mine = idx[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return self.collate([self.data[i] for i in mine])


class _IterableBatches:
    """Micro-batch ``m`` of an iterable, re-iterated per epoch; resumable by skipping ahead."""

    def __init__(self, data: Iterable):
        self.data = data
        self.epoch, self.pos, self.it = 0, 0, None  # pos: batches consumed in this epoch

    def _start_epoch(self) -> None:
        for owner in (self.data, getattr(self.data, "sampler", None), getattr(self.data, "batch_sampler", None)):
            if owner is not None and hasattr(owner, "set_epoch"):
                owner.set_epoch(self.epoch)
        self.it, self.pos = iter(self.data), 0

    def seek(self, epoch: int, pos: int) -> None:
        """Skip to batch ``pos`` of ``epoch`` without touching the restored random-number state
        (a ``DataLoader`` draws a seed when iterated; the checkpoint already holds its effect)."""
        self.epoch = epoch
        with torch.random.fork_rng(devices=[]):
            self._start_epoch()
            for _ in range(pos):
                next(self.it)
        self.pos = pos

    def get(self, m: int):
        if self.it is None:
            self._start_epoch()
        try:
            batch = next(self.it)
        except StopIteration:
            if self.pos == 0:
                raise ValueError("the data iterable yielded no batch") from None
            self.epoch += 1
            self._start_epoch()
            batch = next(self.it)
        self.pos += 1
        return batch


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, scaler, state: dict[str, Any]) -> None:
    """Write a checkpoint folder atomically (a half-written one is never left as the latest).

    Every process writes its own random-number state (``rng-<rank>``); rank 0 writes the
    rest and renames the folder into place.
    """
    from safetensors.torch import save_model

    tmp = path.with_name(path.name + ".tmp")
    rank = distributed.rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    save_state(tmp / f"rng-{rank}")
    distributed.barrier()
    if rank == 0:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
            },
            tmp / "optimizer.pt",
        )
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, scaler) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns the trainer state."""
    from safetensors.torch import load_model

    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    bundle = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(bundle["optimizer"])
    scheduler.load_state_dict(bundle["scheduler"])
    if scaler is not None and bundle["scaler"]:
        scaler.load_state_dict(bundle["scaler"])
    state = json.loads((path / "trainer_state.json").read_text())
    rng = path / f"rng-{distributed.rank()}"
    if not rng.with_suffix(".json").exists():
        raise ValueError(f"checkpoint {path} has no random-number state for process {distributed.rank()}: "
                         "resume with the world size it was written with")
    set_state(load_state(rng))
    return state


def _as_metrics(value: float | dict[str, float], metric: str) -> dict[str, float]:
    if isinstance(value, dict):
        if metric not in value:
            raise ValueError(f"eval_fn returned {sorted(value)}, which lacks the metric {metric!r}")
        return {k: float(v) for k, v in value.items()}
    return {metric: float(value)}


def _split_step_output(out: StepOutput) -> tuple[Tensor, dict[str, float]]:
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], Mapping):
            raise ValueError("step_fn must return a loss tensor or (loss, metrics dict)")
        loss, metrics = out
    else:
        loss, metrics = out, {}
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        raise ValueError(f"step_fn must return a scalar loss tensor, got {type(loss).__name__}"
                         + (f" of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else ""))
    return loss, {k: float(v) for k, v in metrics.items()}


# --------------------------------------------------------------------------- the loop
def fit(
    model: nn.Module,
    data: Sequence | Iterable,
    step_fn: StepFn,
    config: TrainConfig,
    eval_fn: EvalFn | None = None,
    resume: bool = True,
    params: Sequence[nn.Parameter] | None = None,
    on_step: Callable[[nn.Module, int], None] | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | Callable[[torch.optim.Optimizer], Any] | None = None,
    collate: Callable[[list], Any] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimiser steps on batches of ``data``.

    Args:
        model: the module to train (its whole ``state_dict`` is checkpointed, buffers
            such as a MoCo queue included).
        data: a sequence of examples (batched here, see the module docstring) or an
            iterable of ready batches (a ``DataLoader``).
        step_fn: ``step_fn(model, batch) -> loss`` or ``-> (loss, metrics)``; ``metrics``
            (a dict of numbers) goes into ``result.train_history`` and the progress bar.
        config: a :class:`TrainConfig`.
        eval_fn: ``eval_fn(model) -> float | dict``; higher ``config.metric`` is better.
            It runs with the RNG state forked, so evaluating does not change training.
        resume: continue from ``out_dir/checkpoint`` when it exists.
        params: the parameters to clip (and, without ``optimizer``, to optimise;
            default: all that require grad).
        on_step: called as ``on_step(model, step)`` after each optimiser step
            (e.g. a momentum-encoder update).
        optimizer: a built optimiser (e.g. ``SparseAdam`` for sparse embeddings, or AdamW
            with a parameter group of its own for a learnable temperature); default
            :func:`default_optimizer` with ``config.lr`` and ``config.weight_decay``.
        scheduler: a built LR scheduler, or a callable ``scheduler(optimizer)`` making one
            (e.g. :func:`constant_schedule`); default: linear warm-up over
            ``config.warmup_steps``, then linear decay to 0 at ``config.steps``.
        collate: turns a list of examples into a batch (sequence data only).
    """
    if not _is_sequence(data) and collate is not None:
        raise ValueError("collate applies to sequence data; give a DataLoader its own collate_fn")
    seed_everything(config.seed + distributed.rank())  # dropout masks follow the seed (restored on resume)
    device = next(model.parameters()).device
    out_dir = Path(config.out_dir) if config.out_dir else None
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        params = [p for p in params if p.requires_grad]
    if optimizer is None:
        optimizer = default_optimizer(params, config.lr, config.weight_decay)
    if scheduler is None:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(config.warmup_steps, config.steps))
    elif not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        scheduler = scheduler(optimizer)
    batches = (
        _SequenceBatches(data, config.batch_size, config.seed, collate or _identity)
        if _is_sequence(data) else _IterableBatches(data)
    )
    use_amp = (config.amp and device.type == "cuda") or (config.cpu_bf16 and device.type == "cpu")
    if device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        amp_dtype = torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype == torch.float16 else None
    world = distributed.world_size()

    start_step, losses, history, train_history = 0, [], [], []
    best_score, best_step, best_state = None, None, None
    resumed_from = None
    ckpt = out_dir / "checkpoint" if out_dir else None
    if resume and ckpt is not None and (ckpt / "trainer_state.json").exists():
        state = load_checkpoint(ckpt, model, optimizer, scheduler, scaler)
        for key in ("steps", "seed", "batch_size", "grad_accum"):
            if state["config"].get(key) != getattr(config, key):
                raise ValueError(
                    f"checkpoint in {ckpt} was made with {key}={state['config'].get(key)}; this run has "
                    f"{key}={getattr(config, key)}. Use another out_dir or resume=False."
                )
        start_step, losses, history = state["step"], state["losses"], state["history"]
        train_history = state.get("train_history", [])
        best_score, best_step = state["best_score"], state["best_step"]
        if isinstance(batches, _IterableBatches):
            batches.seek(*state["data_position"])
        resumed_from = start_step

    def evaluate(step: int) -> None:
        nonlocal best_score, best_step, best_state
        if eval_fn is None:
            return
        was_training = model.training
        model.eval()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            metrics = _as_metrics(eval_fn(model), config.metric)
        model.train(was_training)
        history.append({"step": step, **metrics})
        score = metrics[config.metric]
        if best_score is None or score > best_score:
            best_score, best_step = score, step
            if out_dir is not None:
                from safetensors.torch import save_model

                if distributed.is_main():
                    (out_dir / "best").mkdir(parents=True, exist_ok=True)
                    save_model(model, str(out_dir / "best" / "model.safetensors"))
                distributed.barrier()
            else:
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    model.train()
    t0 = time.perf_counter()
    if config.eval_at_start and start_step == 0 and not history:
        evaluate(0)
    from tqdm.auto import tqdm

    quiet = is_quiet() or not distributed.is_main()
    bar = tqdm(total=config.steps, initial=start_step, desc=config.desc, disable=quiet or None, leave=False)
    stopped_early = False
    for step in range(start_step, config.steps):
        optimizer.zero_grad(set_to_none=True)
        step_loss, step_metrics = 0.0, {}
        for j in range(config.grad_accum):
            batch = batches.get(step * config.grad_accum + j)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                loss, metrics = _split_step_output(step_fn(model, batch))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step + 1}")
            scaled = loss / config.grad_accum
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
            step_loss += float(loss.detach()) / config.grad_accum
            for k, v in metrics.items():
                step_metrics[k] = step_metrics.get(k, 0.0) + v / config.grad_accum
        if world > 1:
            distributed.all_reduce_gradients(params)
        if scaler is not None:
            scaler.unscale_(optimizer)
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        if on_step is not None:
            on_step(model, step + 1)
        done = step + 1
        losses.append(step_loss)
        train_history.append({"step": done, "loss": step_loss, "lr": scheduler.get_last_lr()[0], **step_metrics})
        bar.update(1)
        shown = {"loss": f"{step_loss:.4f}", **{k: f"{v:.4g}" for k, v in list(step_metrics.items())[:3]}}
        if best_score is not None:
            shown["best"] = f"{best_score:.2f}"
        bar.set_postfix(shown)
        if (config.eval_every and done % config.eval_every == 0) or done == config.steps:
            if not (history and history[-1]["step"] == done):
                evaluate(done)
        if config.save_every and (done % config.save_every == 0 or done == config.steps):
            state = {
                "step": done,
                "losses": losses,
                "history": history,
                "train_history": train_history,
                "best_score": best_score,
                "best_step": best_step,
                "config": asdict(config),
                "data_position": [batches.epoch, batches.pos] if isinstance(batches, _IterableBatches) else None,
            }
            save_checkpoint(ckpt, model, optimizer, scheduler, scaler, state)
        if config.stop_after is not None and done >= config.stop_after and done < config.steps:
            stopped_early = True
            break
        if config.max_seconds is not None:
            out_of_time = time.perf_counter() - t0 > config.max_seconds
            if world > 1:  # rank 0's clock decides, or one rank would wait for the others forever
                out_of_time = distributed.broadcast_object(out_of_time)
            if out_of_time:
                stopped_early = done < config.steps
                break
    bar.close()
    steps_done = len(losses)

    if config.load_best_at_end and not stopped_early and best_step is not None and best_step != steps_done:
        if out_dir is not None:
            from safetensors.torch import load_model

            load_model(model, str(out_dir / "best" / "model.safetensors"), device=str(device))
        elif best_state is not None:
            model.load_state_dict(best_state)
    return TrainResult(
        steps_done=steps_done,
        losses=losses,
        history=history,
        best_score=best_score,
        best_step=best_step,
        seconds=time.perf_counter() - t0,
        resumed_from=resumed_from,
        stopped_early=stopped_early,
        train_history=train_history,
    )


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy (e.g. a MoCo key encoder)."""
    return copy.deepcopy(model)
