"""The one training loop every chapter uses.

AdamW, linear warm-up then linear decay, gradient clipping, autocast on CUDA, a
tqdm progress bar, evaluation every ``eval_every`` steps keeping the best
weights, and checkpoints every ``save_every`` steps. A checkpoint holds the
model (safetensors), the optimiser and scheduler (loaded with
``torch.load(weights_only=True)``: tensors and numbers, no arbitrary pickles),
the RNG states and the data position, so a killed run resumed from its last
checkpoint ends with the same weights as one that was never interrupted (on the
CPU, bit for bit).

The data order is a pure function of ``(seed, epoch)``: epoch ``e`` visits the
examples in ``randperm(n, generator=seed + e)`` order, so the position is just
the step counter.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .config import is_quiet, seed_everything

StepFn = Callable[[nn.Module, list], Tensor]
EvalFn = Callable[[nn.Module], "float | dict[str, float]"]


@dataclass
class TrainConfig:
    """Sizes and switches of one training run."""

    steps: int  # optimisation steps in the whole run (the schedule's length)
    batch_size: int = 64
    lr: float = 3e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    eval_every: int = 0  # 0: evaluate only at the end (when an eval_fn is given)
    save_every: int = 0  # 0: no checkpoints
    out_dir: str | None = None  # where checkpoints and the best weights go
    seed: int = 0  # the data order and the RNG (dropout masks): a run is a function of its seed
    amp: bool = True  # autocast on CUDA (bf16 where supported, else fp16 + GradScaler)
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
        if self.eval_every < 0 or self.save_every < 0:
            raise ValueError("eval_every and save_every must be >= 0")
        if self.save_every and not self.out_dir:
            raise ValueError("save_every needs out_dir")


@dataclass
class TrainResult:
    steps_done: int
    losses: list[float]  # one per step run in this call (and restored ones before it)
    history: list[dict[str, float]]  # one row per evaluation: {"step": ..., metric: ...}
    best_score: float | None
    best_step: int | None
    seconds: float
    resumed_from: int | None = None
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers
def linear_schedule(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr: 0 → 1 over warm-up, then 1 → 0 linearly (HF's default)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def batches_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The example indices of global step ``step`` (0-based); last partial batch dropped."""
    per_epoch = batches_per_epoch(n, batch_size)
    if per_epoch < 1:
        raise ValueError(f"dataset of {n} examples is smaller than one batch of {batch_size}")
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[k * batch_size : (k + 1) * batch_size].tolist()


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _jsonable_rng(state: dict[str, Any]) -> dict[str, Any]:
    version, internal, gauss = state["python"]
    np_state = state["numpy"]
    return {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def _from_jsonable_rng(state: dict[str, Any]) -> dict[str, Any]:
    version, internal, gauss = state["python"]
    n = state["numpy"]
    return {
        "python": (version, tuple(internal), gauss),
        "numpy": (n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]),
    }


def save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, scaler, state: dict[str, Any]) -> None:
    """Write a checkpoint folder atomically (a half-written one is never left as the latest)."""
    from safetensors.torch import save_file, save_model

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
        },
        tmp / "optimizer.pt",
    )
    rng = _rng_state()
    tensors = {"torch": rng["torch"]}
    for i, s in enumerate(rng["cuda"]):
        tensors[f"cuda{i}"] = s
    save_file(tensors, str(tmp / "rng.safetensors"))
    (tmp / "trainer_state.json").write_text(json.dumps({**state, "rng": _jsonable_rng(rng)}))
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, scaler) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns the trainer state."""
    from safetensors.torch import load_file, load_model

    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    bundle = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(bundle["optimizer"])
    scheduler.load_state_dict(bundle["scheduler"])
    if scaler is not None and bundle["scaler"]:
        scaler.load_state_dict(bundle["scaler"])
    state = json.loads((path / "trainer_state.json").read_text())
    tensors = load_file(str(path / "rng.safetensors"))
    rng = _from_jsonable_rng(state.pop("rng"))
    rng["torch"] = tensors["torch"]
    rng["cuda"] = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda"))]
    _set_rng_state(rng)
    return state


def _as_metrics(value: float | dict[str, float], metric: str) -> dict[str, float]:
    if isinstance(value, dict):
        if metric not in value:
            raise ValueError(f"eval_fn returned {sorted(value)}, which lacks the metric {metric!r}")
        return {k: float(v) for k, v in value.items()}
    return {metric: float(value)}


# --------------------------------------------------------------------------- the loop
def fit(
    model: nn.Module,
    data: Sequence,
    step_fn: StepFn,
    config: TrainConfig,
    eval_fn: EvalFn | None = None,
    resume: bool = True,
    params: Sequence[nn.Parameter] | None = None,
    on_step: Callable[[nn.Module, int], None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` steps on batches of ``data``.

    Args:
        model: the module to train (its whole ``state_dict`` is checkpointed, buffers
            such as a MoCo queue included).
        data: a sequence of examples; a batch is a list of them.
        step_fn: ``step_fn(model, batch) -> loss`` (a scalar tensor).
        config: a :class:`TrainConfig`.
        eval_fn: ``eval_fn(model) -> float | dict``; higher ``config.metric`` is better.
            It runs with the RNG state forked, so evaluating does not change training.
        resume: continue from ``out_dir/checkpoint`` when it exists.
        params: the parameters to optimise (default: all that require grad).
        on_step: called as ``on_step(model, step)`` after each optimiser step
            (e.g. a momentum-encoder update).
    """
    if len(data) < config.batch_size:
        raise ValueError(f"dataset of {len(data)} examples is smaller than one batch of {config.batch_size}")
    seed_everything(config.seed)  # dropout masks follow config.seed (a resumed run restores its RNG state below)
    device = next(model.parameters()).device
    out_dir = Path(config.out_dir) if config.out_dir else None
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(config.warmup_steps, config.steps))
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype == torch.float16 else None

    start_step, losses, history = 0, [], []
    best_score, best_step, best_state = None, None, None
    resumed_from = None
    ckpt = out_dir / "checkpoint" if out_dir else None
    if resume and ckpt is not None and (ckpt / "trainer_state.json").exists():
        state = load_checkpoint(ckpt, model, optimizer, scheduler, scaler)
        if state["config"]["steps"] != config.steps or state["config"]["seed"] != config.seed:
            raise ValueError(
                f"checkpoint in {ckpt} was made with steps={state['config']['steps']}, seed={state['config']['seed']}; "
                f"this run has steps={config.steps}, seed={config.seed}. Use another out_dir or resume=False."
            )
        start_step, losses, history = state["step"], state["losses"], state["history"]
        best_score, best_step = state["best_score"], state["best_step"]
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

                (out_dir / "best").mkdir(parents=True, exist_ok=True)
                save_model(model, str(out_dir / "best" / "model.safetensors"))
            else:
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    model.train()
    t0 = time.perf_counter()
    if config.eval_at_start and start_step == 0 and not history:
        evaluate(0)
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=start_step, desc=config.desc, disable=is_quiet() or None, leave=False)
    stopped_early = False
    step = start_step
    for step in range(start_step, config.steps):
        batch = [data[i] for i in batch_indices(len(data), config.batch_size, config.seed, step)]
        with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
            loss = step_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
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
        losses.append(float(loss.detach()))
        done = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", best=f"{best_score:.2f}" if best_score is not None else "-")
        if (config.eval_every and done % config.eval_every == 0) or done == config.steps:
            if not (history and history[-1]["step"] == done):
                evaluate(done)
        if config.save_every and (done % config.save_every == 0 or done == config.steps):
            state = {
                "step": done,
                "losses": losses,
                "history": history,
                "best_score": best_score,
                "best_step": best_step,
                "config": asdict(config),
            }
            save_checkpoint(ckpt, model, optimizer, scheduler, scaler, state)
        if config.stop_after is not None and done >= config.stop_after and done < config.steps:
            stopped_early = True
            break
        if config.max_seconds is not None and time.perf_counter() - t0 > config.max_seconds:
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
    )


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy (e.g. a MoCo key encoder)."""
    return copy.deepcopy(model)
