"""The run layer: a recipe says *what* to train; :func:`run` does the rest, the same way for all.

A :class:`Recipe` is a dataclass whose fields are the run's configuration, with
sizes per profile in :attr:`Recipe.profiles`. It says how to

* build the model (:meth:`Recipe.build_model`),
* load the data (:meth:`Recipe.load_data`, optionally :meth:`Recipe.collate`),
* take a step (:meth:`Recipe.step` → loss, or ``(loss, metrics)``),
* evaluate (:meth:`Recipe.evaluate`, optional),
* and, where the default AdamW + linear warm-up does not fit, build its optimiser
  (:meth:`Recipe.configure_optimizers`: ``SparseAdam`` for sparse embeddings, a
  learning rate of its own for a learnable temperature, ...).

``run(recipe, profile, out_dir)`` seeds (before the model is built, so that the
initial weights follow the seed), picks the device, joins the process group when
launched by ``torchrun``, fits (:func:`cl_toolkit.train.fit`) and writes three JSON
files into ``out_dir``: ``config.json`` (the resolved recipe and training
configuration), ``history.json`` (per-step losses and metrics, evaluations) and
``env.json`` (versions, threads, device, processes).

A model is anything with ``forward(batch) -> [B, d]`` (for training) and, to be
evaluated, ``encode(items) -> [N, d]``; nothing here knows about text.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import torch
from torch import nn

from . import distributed
from .config import get_device, get_profile, seed_everything
from .train import TrainConfig, TrainResult, fit

__all__ = ["Recipe", "Run", "environment", "run"]


@dataclass
class Recipe:
    """Base class of every recipe: subclass it as a ``@dataclass`` and add your fields.

    The fields below are the optimisation every recipe shares; ``steps=None`` means
    ``epochs`` passes over the data. ``profiles`` maps a profile name (``quick``,
    ``full``) to the field values that differ from the defaults.
    """

    seed: int = 0
    steps: int | None = 100
    epochs: float = 1.0
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    eval_every: int = 0
    cpu_bf16: bool = False

    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {}}
    name: ClassVar[str] = "recipe"
    metric: ClassVar[str] = "score"  # the key of evaluate()'s dict that picks the best weights
    # True when step() gathers what it needs across processes (cl_toolkit.distributed.gather); a
    # recipe that does not would silently train with each process's own negatives, so run()
    # refuses to train it on several processes.
    gathers: ClassVar[bool] = False

    # ----------------------------------------------------------------- profiles
    @classmethod
    def for_profile(cls, profile: str | None = None, **overrides: Any) -> "Recipe":
        """The recipe with ``profile``'s sizes (default: ``CL_PROFILE`` / hardware), then ``overrides``."""
        profile = get_profile(profile)
        if profile not in cls.profiles:
            raise ValueError(f"{cls.__name__} has no profile {profile!r}; choose one of {tuple(cls.profiles)}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {unknown}; its fields are {sorted(names)}")
        return cls(**{**cls.profiles[profile], **overrides})

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)

    # ----------------------------------------------------------------- what a recipe says
    def build_model(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define build_model()")

    def load_data(self) -> Sequence | Iterable:
        raise NotImplementedError(f"{type(self).__name__} must define load_data()")

    def step(self, model: nn.Module, batch: Any):
        raise NotImplementedError(f"{type(self).__name__} must define step(model, batch)")

    def collate(self, examples: list) -> Any:
        """Examples of a sequence → one batch (default: the list itself)."""
        return examples

    def evaluate(self, model: nn.Module) -> float | dict[str, float] | None:
        """Higher ``metric`` is better; the default recipe has no evaluation."""
        return None

    def configure_optimizers(self, model: nn.Module) -> torch.optim.Optimizer | tuple | None:
        """An optimiser, or ``(optimiser, scheduler)``; ``None``: AdamW + linear warm-up/decay."""
        return None

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters to train (default: all that require grad)."""
        return [p for p in model.parameters() if p.requires_grad]

    def on_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimiser step (e.g. a momentum update)."""

    # ----------------------------------------------------------------- derived
    def _has(self, method: str) -> bool:
        return getattr(type(self), method) is not getattr(Recipe, method)

    def train_config(self, n_examples: int | None, out_dir: str | None = None, **overrides: Any) -> TrainConfig:
        """The :class:`~cl_toolkit.train.TrainConfig` of this recipe for a dataset of ``n_examples``."""
        steps = self.steps
        if steps is None:
            if n_examples is None:
                raise ValueError(f"{type(self).__name__}: steps=None (epochs) needs data with a length")
            per_step = self.batch_size * self.grad_accum * distributed.world_size()
            steps = max(1, int(self.epochs * (n_examples // per_step)))
        kwargs: dict[str, Any] = dict(
            steps=steps, batch_size=self.batch_size, grad_accum=self.grad_accum, lr=self.lr,
            weight_decay=self.weight_decay, warmup_steps=self.warmup_steps, max_grad_norm=self.max_grad_norm,
            eval_every=self.eval_every if self._has("evaluate") else 0, out_dir=out_dir, seed=self.seed,
            save_every=self.eval_every or steps if out_dir else 0, desc=self.name, metric=self.metric,
            cpu_bf16=self.cpu_bf16,
        )
        kwargs.update(overrides)
        return TrainConfig(**kwargs)


@dataclass
class Run:
    """What :func:`run` returns: the trained model, the loop's record and what was run."""

    model: nn.Module
    result: TrainResult
    recipe: Recipe
    config: dict[str, Any]
    env: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    @property
    def history(self) -> list[dict[str, float]]:
        return self.result.train_history


def environment(device: torch.device | None = None) -> dict[str, Any]:
    """Versions, threads, device and processes: what a result depends on besides its recipe."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "sentence_transformers", "numpy", "cl_toolkit"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    env: dict[str, Any] = {
        "versions": versions,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "world_size": distributed.world_size(),
        "device": str(device) if device is not None else None,
    }
    if device is not None and device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def run(
    recipe: Recipe | type[Recipe],
    profile: str | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    device: torch.device | str | None = None,
    model: nn.Module | None = None,
    data: Sequence | Iterable | None = None,
    resume: bool = True,
    **train_overrides: Any,
) -> Run:
    """Train ``recipe`` and record what was run.

    Args:
        recipe: a recipe instance, or a recipe class (then ``recipe.for_profile(profile)``).
        profile: ``quick`` / ``full`` for a recipe class (default: ``CL_PROFILE``).
        out_dir: where checkpoints (every ``eval_every`` steps), the best weights and the
            JSON records go; ``None``: nothing is written.
        device: default ``CL_DEVICE``, else CUDA when available, else the CPU (under
            ``torchrun`` on CUDA: the process's local GPU).
        model, data: use these instead of building / loading them (e.g. an encoder
            shared by two runs, or a subset of the data).
        resume: continue from ``out_dir/checkpoint`` when it exists.
        train_overrides: :class:`~cl_toolkit.train.TrainConfig` fields (e.g. ``stop_after=2``).
    """
    if isinstance(recipe, type):
        recipe = recipe.for_profile(profile)
    elif profile is not None:
        raise ValueError("profile applies to a recipe class; a recipe instance already has its sizes")
    distributed.init()
    if distributed.world_size() > 1 and not recipe.gathers:
        raise ValueError(
            f"{type(recipe).__name__} does not gather its batch across processes (gathers=False), so "
            f"{distributed.world_size()} processes would each see only their own negatives; run it on one "
            "process, or gather in its step with cl_toolkit.distributed.gather and set gathers = True"
        )
    if device is None and distributed.world_size() > 1 and torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    device = get_device(device) if not isinstance(device, torch.device) else device
    seed_everything(recipe.seed)  # the model's initial weights follow the seed, on every process alike
    if data is None:
        data = recipe.load_data()
    if model is None:
        model = recipe.build_model()
    model = model.to(device)
    out = Path(out_dir) if out_dir is not None else None
    n = len(data) if hasattr(data, "__len__") else None
    train_config = recipe.train_config(n, str(out) if out is not None else None, **train_overrides)
    built = recipe.configure_optimizers(model)
    optimizer, scheduler = built if isinstance(built, tuple) else (built, None)
    result = fit(
        model, data, recipe.step, train_config,
        eval_fn=recipe.evaluate if recipe._has("evaluate") else None,
        resume=resume,
        params=recipe.parameters(model),
        on_step=recipe.on_step if recipe._has("on_step") else None,
        optimizer=optimizer,
        scheduler=scheduler,
        collate=recipe.collate if recipe._has("collate") else None,
    )
    config = {"recipe": type(recipe).__name__, **asdict(recipe), "train": asdict(train_config)}
    env = environment(device)
    if out is not None and distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
        (out / "history.json").write_text(json.dumps(
            {"train": result.train_history, "eval": result.history, "best_step": result.best_step,
             "best_score": result.best_score, "steps_done": result.steps_done, "seconds": result.seconds},
            indent=1,
        ))
        (out / "env.json").write_text(json.dumps(env, indent=2))
    return Run(model=model, result=result, recipe=recipe, config=config, env=env, out_dir=out)
