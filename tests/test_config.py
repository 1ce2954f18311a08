"""cl_toolkit.config: profiles, pick, seeding, offline detection and the data folder."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_toolkit import config, hub
from cl_toolkit.config import Settings, default_data_dir, get_profile, seed_everything, setup

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "CL_OFFLINE")


@pytest.fixture
def isolated(monkeypatch):
    """Undo everything setup() changes: the environment, the hub libraries' flags, torch threads."""
    saved_env = dict(os.environ)
    threads = torch.get_num_threads()
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE)
    ds = sys.modules.get("datasets.config")
    if ds is not None:
        monkeypatch.setattr(ds, "HF_HUB_OFFLINE", ds.HF_HUB_OFFLINE)
        if hasattr(ds, "HF_DATASETS_OFFLINE"):
            monkeypatch.setattr(ds, "HF_DATASETS_OFFLINE", ds.HF_DATASETS_OFFLINE)
    for name in OFFLINE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub, "hub_reachable", _never_called)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved_env)
    torch.set_num_threads(threads)


def _never_called(*args, **kwargs):
    raise AssertionError("the hub must not be probed here")


# --------------------------------------------------------------------------- profiles
def test_profile_from_env(monkeypatch):
    monkeypatch.setenv("CL_PROFILE", "full")
    assert get_profile() == "full"
    monkeypatch.setenv("CL_PROFILE", " Quick ")
    assert get_profile() == "quick"
    assert get_profile("full") == "full"  # the argument wins over the environment


def test_profile_default_follows_hardware(monkeypatch):
    monkeypatch.delenv("CL_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile() == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_profile() == "full"


def test_bad_profile_raises(monkeypatch):
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        get_profile("fast")
    monkeypatch.setenv("CL_PROFILE", "medium")
    with pytest.raises(ValueError, match="set CL_PROFILE"):
        get_profile()


def test_pick_and_quick():
    quick = Settings("quick", torch.device("cpu"), 0, True, Path("."), 1)
    full = Settings("full", torch.device("cpu"), 0, True, Path("."), 1)
    assert quick.pick(quick=200, full=10_000) == 200 and quick.quick
    assert full.pick(quick=200, full=10_000) == 10_000 and not full.quick
    assert "profile=quick" in str(quick) and "offline=True" in str(quick)


# --------------------------------------------------------------------------- seeding
def _draw():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_reproduces_python_numpy_torch():
    seed_everything(123)
    a = _draw()
    seed_everything(123)
    assert _draw() == a
    seed_everything(124)
    b = _draw()
    assert all(x != y for x, y in zip(a, b))


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_seed_everything_bad_seed(seed):
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(seed)


# --------------------------------------------------------------------------- setup()
def test_setup_hub_offline_env_means_offline(isolated):
    isolated.setenv("HF_HUB_OFFLINE", "1")
    cfg = setup(seed=5, profile="quick", threads=1)
    assert cfg.offline is True
    assert (cfg.profile, cfg.seed, cfg.threads) == ("quick", 5, 1)
    assert torch.get_num_threads() == 1
    assert os.environ["HF_DATASETS_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_setup_cl_offline_env_means_offline(isolated):
    isolated.setenv("CL_OFFLINE", "true")
    assert setup(profile="quick", threads=1).offline is True


def test_setup_probes_the_hub_when_no_variable_says_offline(isolated):
    isolated.setattr(hub, "hub_reachable", lambda *a, **k: False)
    cfg = setup(profile="quick", threads=1)
    assert cfg.offline is True
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set for the libraries imported later
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:  # and for those already imported
        assert hub_constants.HF_HUB_OFFLINE is True

    for name in OFFLINE_VARS:  # a fresh process where the hub answers
        isolated.delenv(name, raising=False)
    isolated.setattr(hub, "hub_reachable", lambda *a, **k: True)
    assert setup(profile="quick", threads=1).offline is False
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_setup_explicit_offline_argument(isolated):
    assert setup(profile="quick", offline=True, threads=1).offline is True


def test_setup_seeds(isolated):
    isolated.setenv("HF_HUB_OFFLINE", "1")
    setup(seed=42, profile="quick", threads=1)
    a = torch.rand(4)
    torch.manual_seed(42)
    assert torch.equal(a, torch.rand(4))


def test_setup_data_dir_from_env(isolated, tmp_path):
    isolated.setenv("HF_HUB_OFFLINE", "1")
    isolated.setenv("CL_DATA_DIR", str(tmp_path))
    assert setup(profile="quick", threads=1).data_dir == tmp_path.resolve()


def test_setup_threads_from_env(isolated):
    isolated.setenv("HF_HUB_OFFLINE", "1")
    isolated.setenv("CL_THREADS", "1")
    assert setup(profile="quick").threads == 1


def test_setup_bad_profile(isolated):
    isolated.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="unknown profile"):
        setup(profile="slow")


def test_default_data_dir_without_env(monkeypatch):
    monkeypatch.delenv("CL_DATA_DIR", raising=False)
    root = config.REPO_ROOT
    expected = next((p.resolve() for p in (root / "data", root.parent / "shared" / "data") if p.is_dir()), (root / "data").resolve())
    assert default_data_dir() == expected


def test_device_from_env(monkeypatch):
    monkeypatch.setenv("CL_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")
    assert config.get_device("meta") == torch.device("meta")


def test_config_imports_no_hub_library():
    # setup() must run before transformers/datasets read the offline switches at import time
    import subprocess

    code = "import sys, cl_toolkit.config; print(sorted({'transformers', 'datasets'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_offline_helpers_live_in_hub():
    for name in ("hub_reachable", "is_offline", "set_offline"):
        assert name not in config.__all__ and name in hub.__all__


def test_quiet_flag(monkeypatch):
    monkeypatch.setenv("CL_QUIET", "1")
    assert config.is_quiet()
    monkeypatch.setenv("CL_QUIET", "0")
    assert not config.is_quiet()


def test_cpu_has_fast_bf16_reads_the_flags(tmp_path):
    from cl_toolkit.config import cpu_has_fast_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_fast_bf16(info) is False
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_fast_bf16(info) is True
    info.write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert cpu_has_fast_bf16(info) is True
    assert cpu_has_fast_bf16(tmp_path / "missing") is False
