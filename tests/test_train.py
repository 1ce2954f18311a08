"""cl_toolkit.train.fit: resuming a killed run bit for bit, determinism, keeping the
best weights, the checkpoint format, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from cl_toolkit.losses import info_nce
from cl_toolkit.models import Encoder
from cl_toolkit.train import TrainConfig, batch_indices, fit, linear_schedule

WORDS = "red green blue small large old new happy sad quick slow bright dark warm cold".split()
DATA = [f"the {WORDS[i % 15]} {w} number {i} sits near the {WORDS[(3 * i) % 15]} wall" for i, w in enumerate(WORDS + WORDS[:5])]
assert len(DATA) == 20  # 2 batches of 8 per epoch: 6 steps cross two epoch boundaries


def make_model() -> Encoder:
    """A very small encoder with dropout on (unsupervised SimCSE needs it)."""
    return Encoder.tiny(layers=1, hidden=32, heads=2, intermediate=64, max_length=16, dropout=0.1, seed=0)


def simcse_step(model: Encoder, batch: list[str]) -> torch.Tensor:
    """Unsupervised SimCSE: the same batch twice, two dropout masks, in-batch negatives."""
    tokens = model.tokenize(batch)
    return info_nce(model(tokens), model(tokens), 0.05)


def weight_score(model) -> dict[str, float]:
    """A deterministic 'metric' that depends on the weights (and draws random numbers, which must not matter)."""
    torch.rand(10)
    return {"score": float(model.model.embeddings.word_embeddings.weight[:50].detach().sum()), "aux": 1.0}


def config(tmp_path=None, **kw) -> TrainConfig:
    base = dict(steps=6, batch_size=8, lr=1e-3, warmup_steps=2, seed=3)
    if tmp_path is not None:
        base.update(out_dir=str(tmp_path), save_every=2)
    base.update(kw)
    return TrainConfig(**base)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("stop_after", [2, 3], ids=["killed-at-checkpoint", "killed-after-checkpoint"])
def test_resume_after_kill_is_bit_identical(tmp_path, stop_after):
    full_model = make_model()
    torch.manual_seed(100)
    full = fit(full_model, DATA, simcse_step, config(tmp_path / "full", eval_every=2), eval_fn=weight_score)

    killed_model = make_model()
    torch.manual_seed(100)
    killed = fit(killed_model, DATA, simcse_step, config(tmp_path / "run", eval_every=2, stop_after=stop_after), eval_fn=weight_score)
    assert killed.stopped_early and killed.steps_done == stop_after
    assert killed.losses == full.losses[:stop_after]

    # the checkpoint holds the last save (step 2); its schedule is where the run was
    bundle = torch.load(tmp_path / "run" / "checkpoint" / "optimizer.pt", weights_only=True)
    assert bundle["scheduler"]["last_epoch"] == 2
    assert bundle["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * linear_schedule(2, 6)(2))

    torch.manual_seed(999)  # a new process: different RNG state, fresh weights
    resumed_model = make_model()
    resumed = fit(resumed_model, DATA, simcse_step, config(tmp_path / "run", eval_every=2), eval_fn=weight_score, resume=True)
    assert resumed.resumed_from == 2 and not resumed.stopped_early
    assert resumed.steps_done == 6
    assert resumed.losses == full.losses  # restored ones + new ones, exactly
    assert resumed.history == full.history
    assert (resumed.best_score, resumed.best_step) == (full.best_score, full.best_step)
    assert_same_weights(resumed_model, full_model)

    # optimiser moments, step counts and the scheduler's learning rates match too
    a = torch.load(tmp_path / "full" / "checkpoint" / "optimizer.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "checkpoint" / "optimizer.pt", weights_only=True)
    assert a["scheduler"] == b["scheduler"]
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [g["lr"] for g in b["optimizer"]["param_groups"]]
    for i, state in a["optimizer"]["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state[key], b["optimizer"]["state"][i][key]), (i, key)


def test_resume_false_starts_over_and_mismatched_checkpoint_raises(tmp_path):
    fit(make_model(), DATA, simcse_step, config(tmp_path, stop_after=2))
    again = fit(make_model(), DATA, simcse_step, config(tmp_path, stop_after=2), resume=False)
    assert again.resumed_from is None and len(again.losses) == 2
    with pytest.raises(ValueError, match="checkpoint in .* was made with steps=6"):
        fit(make_model(), DATA, simcse_step, config(tmp_path, steps=8))
    with pytest.raises(ValueError, match="seed=3"):
        fit(make_model(), DATA, simcse_step, config(tmp_path, seed=4))


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_same_losses_and_metrics():
    runs = []
    for global_seed in (1, 2):  # whatever the caller's RNG state, config.seed decides
        torch.manual_seed(global_seed)
        model = make_model()
        result = fit(model, DATA, simcse_step, config(eval_every=2), eval_fn=weight_score)
        runs.append((result, model))
    (a, ma), (b, mb) = runs
    assert a.losses == b.losses and len(a.losses) == 6
    assert a.history == b.history
    assert_same_weights(ma, mb)
    other = fit(make_model(), DATA, simcse_step, config(eval_every=2, seed=4), eval_fn=weight_score)
    assert other.losses != a.losses


def test_evaluation_does_not_change_training():
    with_eval = fit(make_model(), DATA, simcse_step, config(eval_every=1, load_best_at_end=False), eval_fn=weight_score)
    without = fit(make_model(), DATA, simcse_step, config())
    assert with_eval.losses == without.losses
    assert [row["step"] for row in with_eval.history] == [1, 2, 3, 4, 5, 6]


# --------------------------------------------------------------------------- best checkpoint
class PeakingEval:
    """Scores 1, 5, 2 at the 1st, 2nd, 3rd evaluation: the best weights are mid-run."""

    def __init__(self, scores=(1.0, 5.0, 2.0)):
        self.scores, self.calls = list(scores), 0

    def __call__(self, model):
        self.calls += 1
        return self.scores[self.calls - 1]


@pytest.mark.parametrize("use_out_dir", [False, True], ids=["in-memory", "out_dir"])
def test_final_model_is_the_best_one(tmp_path, use_out_dir):
    snapshots = {}
    model = make_model()

    def snapshot(m, step):
        snapshots[step] = {k: v.detach().clone() for k, v in m.state_dict().items()}

    cfg = config(tmp_path if use_out_dir else None, eval_every=2)
    result = fit(model, DATA, simcse_step, cfg, eval_fn=PeakingEval(), on_step=snapshot)
    assert sorted(snapshots) == [1, 2, 3, 4, 5, 6]
    assert result.history == [{"step": 2, "score": 1.0}, {"step": 4, "score": 5.0}, {"step": 6, "score": 2.0}]
    assert (result.best_step, result.best_score) == (4, 5.0)
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[4][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[6][k]) for k in final)
    if use_out_dir:
        assert (tmp_path / "best" / "model.safetensors").is_file()


def test_load_best_at_end_false_keeps_the_last_weights():
    snapshots = {}
    model = make_model()
    on_step = lambda m, step: snapshots.__setitem__(step, {k: v.detach().clone() for k, v in m.state_dict().items()})
    fit(model, DATA, simcse_step, config(eval_every=2, load_best_at_end=False), eval_fn=PeakingEval(), on_step=on_step)
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[6][k]) for k in final)


def test_eval_at_start_and_dict_metric():
    scores = iter([{"stsb": 3.0, "x": 0.0}, {"stsb": 1.0, "x": 0.0}, {"stsb": 2.0, "x": 0.0}])
    result = fit(make_model(), DATA, simcse_step, config(steps=4, eval_every=2, metric="stsb", eval_at_start=True),
                 eval_fn=lambda m: next(scores))
    assert [row["step"] for row in result.history] == [0, 2, 4]
    assert (result.best_step, result.best_score) == (0, 3.0)


# --------------------------------------------------------------------------- checkpoint format
def test_checkpoint_files_are_safetensors_and_weights_only(tmp_path):
    from safetensors import safe_open

    model = make_model()
    fit(model, DATA, simcse_step, config(tmp_path, eval_every=2), eval_fn=weight_score)
    ckpt = tmp_path / "checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "checkpoint"]  # no .tmp / .old left behind
    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict().keys())
    bundle = torch.load(ckpt / "optimizer.pt", weights_only=True)  # tensors and numbers only
    assert set(bundle) == {"optimizer", "scheduler", "scaler"}
    assert bundle["scheduler"]["last_epoch"] == 6
    with safe_open(str(ckpt / "rng-0.safetensors"), framework="pt") as f:
        assert "torch" in f.keys()
    assert json.loads((ckpt / "rng-0.json").read_text()).keys() == {"python", "numpy"}
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 6 and len(state["losses"]) == 6 and state["config"]["steps"] == 6


def test_checkpoint_holds_the_last_weights(tmp_path):
    from safetensors.torch import load_file

    model = make_model()
    fit(model, DATA, simcse_step, config(tmp_path, load_best_at_end=False))
    saved = load_file(str(tmp_path / "checkpoint" / "model.safetensors"))
    current = model.state_dict()
    assert all(torch.equal(saved[k], current[k]) for k in saved)


# --------------------------------------------------------------------------- the loop's pieces
def test_only_the_given_params_are_trained_and_on_step_sees_every_step():
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    fit(model, DATA, simcse_step, config(), params=list(model.model.encoder.parameters()), on_step=lambda m, s: steps.append(s))
    after = model.state_dict()
    assert steps == [1, 2, 3, 4, 5, 6]
    assert torch.equal(before["model.embeddings.word_embeddings.weight"], after["model.embeddings.word_embeddings.weight"])
    assert not torch.equal(before["model.encoder.layer.0.attention.self.query.weight"], after["model.encoder.layer.0.attention.self.query.weight"])


def test_linear_schedule():
    f = linear_schedule(2, 6)
    assert [f(s) for s in range(7)] == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    g = linear_schedule(0, 4)
    assert [g(s) for s in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_batch_indices_epochs_are_permutations():
    n, bs = 20, 8
    epoch0 = batch_indices(n, bs, 3, 0) + batch_indices(n, bs, 3, 1)
    epoch1 = batch_indices(n, bs, 3, 2) + batch_indices(n, bs, 3, 3)
    assert len(set(epoch0)) == 16 and len(set(epoch1)) == 16  # no repeats within an epoch, tail dropped
    assert epoch0 != epoch1  # reshuffled every epoch
    assert batch_indices(n, bs, 3, 1) == batch_indices(n, bs, 3, 1)  # a pure function of (seed, step)
    assert batch_indices(n, bs, 4, 0) != batch_indices(n, bs, 3, 0)
    with pytest.raises(ValueError, match="smaller than one batch"):
        batch_indices(5, 8, 0, 0)


def test_non_finite_loss_stops_training():
    bad = lambda m, batch: m(m.tokenize(batch)).sum() * float("nan")
    with pytest.raises(FloatingPointError, match="step 1"):
        fit(make_model(), DATA, bad, config())


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=0), "steps must be at least 1"),
        (dict(batch_size=0), "batch_size must be at least 1"),
        (dict(lr=0.0), "lr must be positive"),
        (dict(lr=-1e-3), "lr must be positive"),
        (dict(lr=float("nan")), "lr must be positive"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(warmup_steps=7), "warmup_steps"),
        (dict(eval_every=-1), "eval_every and save_every"),
        (dict(save_every=-2), "eval_every and save_every"),
        (dict(save_every=2), "save_every needs out_dir"),
    ],
    ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) if isinstance(v, dict) else "",
)
def test_train_config_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{"steps": 6, **kwargs})


def test_fit_dataset_smaller_than_a_batch():
    with pytest.raises(ValueError, match="dataset of 5 examples is smaller than one batch of 8"):
        fit(make_model(), DATA[:5], simcse_step, config())


def test_fit_eval_fn_without_the_metric():
    with pytest.raises(ValueError, match="lacks the metric 'score'"):
        fit(make_model(), DATA, simcse_step, config(steps=2), eval_fn=lambda m: {"stsb": 1.0})


# --------------------------------------------------------------------------- the general loop
class PerExample(torch.nn.Module):
    """A linear map trained with a per-example loss (so micro-batches add up exactly)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(x)


POINTS = [torch.tensor([float(i % 5), float(i % 3), 1.0, float(i) / 10]) for i in range(32)]


def mse_step(model, batch):
    x = torch.stack(batch)
    return (model(x) - x[:, :2]).pow(2).mean()


def test_grad_accum_two_micro_batches_equal_one_batch_of_twice_the_size():
    a, b = PerExample(), PerExample()
    fit(a, POINTS, mse_step, TrainConfig(steps=3, batch_size=8, lr=0.1, seed=1))
    fit(b, POINTS, mse_step, TrainConfig(steps=3, batch_size=4, grad_accum=2, lr=0.1, seed=1))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    c = PerExample()
    fit(c, POINTS, mse_step, TrainConfig(steps=3, batch_size=4, lr=0.1, seed=1))  # control: half the data
    assert not torch.allclose(a.lin.weight, c.lin.weight, atol=1e-4)


def test_step_metrics_go_into_the_history_and_custom_optimizer_and_schedule_are_used():
    model = PerExample()

    def step(m, batch):
        loss = mse_step(m, batch)
        return loss, {"double": 2 * loss.item()}

    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    from cl_toolkit.train import constant_schedule

    result = fit(model, POINTS, step, TrainConfig(steps=4, batch_size=8, lr=1.0), optimizer=sgd,
                 scheduler=constant_schedule)
    assert [r["step"] for r in result.train_history] == [1, 2, 3, 4]
    for row, loss in zip(result.train_history, result.losses):
        assert row["loss"] == loss and row["double"] == pytest.approx(2 * loss)
        assert row["lr"] == 0.05  # SGD's own lr, kept constant (config.lr is not used)
    assert result.losses[-1] < result.losses[0]


def test_collate_builds_the_batch():
    seen = []

    def step(m, batch):
        seen.append(type(batch))
        return mse_step(m, list(batch))

    fit(PerExample(), POINTS, step, TrainConfig(steps=2, batch_size=8), collate=tuple)
    assert seen == [tuple, tuple]


def test_sparse_embeddings_with_sparse_adam_and_no_clipping():
    emb = torch.nn.Embedding(20, 3, sparse=True)
    before = emb.weight.detach().clone()
    ids = list(range(20))

    def step(m, batch):
        return m(torch.tensor(batch)).pow(2).sum(-1).mean()

    fit(emb, ids, step, TrainConfig(steps=2, batch_size=5, max_grad_norm=None),
        optimizer=torch.optim.SparseAdam(list(emb.parameters()), lr=0.1))
    changed = (emb.weight.detach() != before).any(-1)
    assert 0 < int(changed.sum()) <= 10  # only the rows of the two batches moved


class Loader:
    """A re-iterable of ready batches, deterministic per epoch (like a DataLoader with set_epoch)."""

    def __init__(self):
        self.epoch, self.calls = 0, []

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.calls.append(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(100 + self.epoch)
        order = torch.randperm(len(POINTS), generator=g).tolist()
        for k in range(0, 24, 8):  # 3 batches per epoch
            yield [POINTS[i] for i in order[k : k + 8]]


def test_iterable_data_resumes_bit_for_bit(tmp_path):
    full = PerExample()
    fit(full, Loader(), mse_step, TrainConfig(steps=7, lr=0.1, seed=2))
    killed = PerExample()
    cfg = dict(steps=7, lr=0.1, seed=2, out_dir=str(tmp_path), save_every=1)
    fit(killed, Loader(), mse_step, TrainConfig(stop_after=4, **cfg))
    resumed, loader = PerExample(), Loader()
    result = fit(resumed, loader, mse_step, TrainConfig(**cfg))
    assert result.resumed_from == 4 and loader.calls[0] == 1  # step 5 is batch 2 of epoch 1
    assert_same_weights(full, resumed)


def test_torch_dataloader_is_accepted():
    loader = torch.utils.data.DataLoader(torch.stack(POINTS), batch_size=8, shuffle=False)
    result = fit(PerExample(), loader, lambda m, x: (m(x) - x[:, :2]).pow(2).mean(), TrainConfig(steps=5))
    assert result.steps_done == 5
    with pytest.raises(ValueError, match="collate"):
        fit(PerExample(), loader, mse_step, TrainConfig(steps=1), collate=list)


def test_step_must_return_a_scalar_loss():
    with pytest.raises(ValueError, match="scalar loss"):
        fit(PerExample(), POINTS, lambda m, b: m(torch.stack(b)), TrainConfig(steps=1, batch_size=8))
