"""cl_toolkit.run: a recipe with no text at all trains through `run`, resumes bit for bit,
and leaves its configuration, history and environment as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cl_toolkit.losses import info_nce
from cl_toolkit.run import Recipe, run


class LinearEncoder(nn.Module):
    """Points in R^8 -> unit vectors in R^4: `forward(batch) -> [B, d]`, `encode(items) -> [N, d]`."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 4)

    def forward(self, x):
        return self.lin(x)  # [B, 4]

    @torch.no_grad()
    def encode(self, items):
        return F.normalize(self.lin(torch.stack(list(items))), dim=-1)


@dataclass
class Sphere(Recipe):
    """Two noisy views of a point on the sphere are a positive pair; the batch's others are negatives."""

    noise: float = 0.1
    n_points: int = 96
    steps: int | None = 12
    batch_size: int = 16
    lr: float = 0.05
    eval_every: int = 4

    name: ClassVar[str] = "sphere"
    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"steps": 12}, "full": {"steps": 1000}}

    def build_model(self):
        return LinearEncoder()

    def load_data(self):
        g = torch.Generator().manual_seed(7)
        return list(F.normalize(torch.randn(self.n_points, 8, generator=g), dim=-1))

    def collate(self, examples):
        return torch.stack(examples)  # [B, 8]

    def step(self, model, x):
        z1 = model(x + self.noise * torch.randn_like(x))  # [B, 4]
        z2 = model(x + self.noise * torch.randn_like(x))  # [B, 4]
        loss = info_nce(z1, z2, 0.1)
        return loss, {"pos_cos": F.cosine_similarity(z1, z2).mean().item()}

    def evaluate(self, model):
        points = self.load_data()
        a, b = model.encode(points), model.encode([p + 0.05 for p in points])
        return {"score": (a @ b.T).argmax(1).eq(torch.arange(len(points))).float().mean().item()}

    def configure_optimizers(self, model):
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.9)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_recipe_without_text_runs_resumes_and_records(tmp_path):
    whole = run(Sphere, "quick", tmp_path / "whole")
    killed = run(Sphere, "quick", tmp_path / "run", stop_after=8)
    assert killed.result.stopped_early and killed.result.steps_done == 8
    resumed = run(Sphere, "quick", tmp_path / "run")
    assert resumed.result.resumed_from == 8
    assert same_weights(whole.model, resumed.model)  # bit for bit: weights, SGD momentum, RNG, data position
    assert whole.result.losses == resumed.result.losses

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"] == "Sphere" and config["noise"] == 0.1 and config["train"]["steps"] == 12
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [r["step"] for r in history["train"]] == list(range(1, 13))
    assert all("pos_cos" in r and "loss" in r for r in history["train"])
    assert [r["step"] for r in history["eval"]] == [4, 8, 12]
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["versions"]["torch"] == torch.__version__ and env["world_size"] == 1
    assert env["torch_threads"] == torch.get_num_threads() and env["device"] == "cpu"


def test_the_recipe_learns():
    trained = run(Sphere.for_profile("quick", steps=60, eval_every=0))
    losses = trained.result.losses
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_seed_decides_the_initial_weights():
    a = run(Sphere.for_profile("quick", steps=1, seed=3)).model
    b = run(Sphere.for_profile("quick", steps=1, seed=3)).model
    c = run(Sphere.for_profile("quick", steps=1, seed=4)).model
    assert same_weights(a, b) and not same_weights(a, c)


def test_profiles_and_overrides():
    assert Sphere.for_profile("full").steps == 1000
    assert Sphere.for_profile("quick", noise=0.3).noise == 0.3
    with pytest.raises(ValueError, match="no field"):
        Sphere.for_profile("quick", nosie=0.3)
    with pytest.raises(ValueError, match="unknown profile"):
        Sphere.for_profile("medium")
    with pytest.raises(ValueError, match="recipe class"):
        run(Sphere(), "quick")


def test_the_run_layer_imports_no_method():
    """The layer is general: running a recipe loads neither SimCSE nor MoCo nor a text model."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        from test_run import Sphere
        from cl_toolkit.run import run
        run(Sphere.for_profile("quick", steps=2))
        loaded = sorted(m for m in ("cl_toolkit.simcse", "cl_toolkit.moco", "cl_toolkit.models",
                                    "cl_toolkit.text_recipe", "transformers") if m in sys.modules)
        print(loaded)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_recipe_that_does_not_gather_is_refused_on_several_processes(monkeypatch):
    """Several processes would each train with their own negatives only: refuse, don't go wrong quietly."""
    from cl_toolkit import distributed

    monkeypatch.setattr(distributed, "init", lambda backend=None: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(ValueError, match="gather"):
        run(Sphere.for_profile("quick", steps=1))
    from cl_toolkit.simcse import SimCSE

    assert SimCSE.gathers and not Sphere.gathers
