"""cl_toolkit.hub: offline detection, models laid into the hub cache, and the one dataset
contract — online a hub error is an error, offline the data folder, else a fast clear error."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

import pytest

from cl_toolkit import config, data, hub, models
from cl_toolkit.hub import DatasetUnavailable, HubDatasetError, resolve_dataset


# --------------------------------------------------------------------------- online or offline
def test_hub_reachable(monkeypatch):
    calls = []

    def refuse(address, timeout):
        calls.append((address, timeout))
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert hub.hub_reachable(timeout=0.5) is False
    assert calls == [(("huggingface.co", 443), 0.5)]
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: contextlib.nullcontext())
    assert hub.hub_reachable() is True


@pytest.mark.parametrize("name", ["HF_HUB_OFFLINE", "CL_OFFLINE"])
def test_is_offline_reads_either_variable(monkeypatch, name):
    for var in ("HF_HUB_OFFLINE", "CL_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert hub.is_offline() is False
    monkeypatch.setenv(name, "yes")
    assert hub.is_offline() is True
    monkeypatch.setenv(name, "0")
    assert hub.is_offline() is False


def test_set_offline_reaches_imported_libraries(monkeypatch):
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, os.environ.get(var, ""))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    hub.set_offline(False)
    assert os.environ["HF_HUB_OFFLINE"] == "0" and constants.HF_HUB_OFFLINE is False
    hub.set_offline(True)
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True


def test_the_hub_helpers_have_one_home():
    for name in ("hub_reachable", "is_offline", "set_offline"):
        assert name in hub.__all__ and name not in config.__all__
    for name in ("resolve_model", "ensure_in_hub_cache", "offline_model_path", "tokenizer_path"):
        assert name in hub.__all__ and name not in models.__all__
    assert data.DatasetUnavailable is hub.DatasetUnavailable
    assert models.MINILM == hub.MINILM


# --------------------------------------------------------------------------- models
def test_ensure_in_hub_cache_lays_out_a_local_copy(tmp_path, monkeypatch):
    from huggingface_hub import constants

    source = tmp_path / "pkg"
    source.mkdir()
    (source / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "offline_model_path", lambda name: source if name == "org/model" else None)
    assert hub.ensure_in_hub_cache("org/model") is True
    repo = tmp_path / "cache" / "models--org--model"
    revision = (repo / "refs" / "main").read_text()
    assert len(revision) == 40
    assert (repo / "snapshots" / revision / "config.json").read_text() == "{}"
    assert hub.ensure_in_hub_cache("org/model") is True  # idempotent
    assert hub.ensure_in_hub_cache("org/other") is False


def test_resolve_model_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.resolve_model(str(tmp_path)) == str(tmp_path)  # a local folder as is
    with pytest.raises(FileNotFoundError, match="'org/absent' is not in the Hugging Face cache"):
        hub.resolve_model("org/absent")


def test_tokenizer_path_is_an_uncased_wordpiece_folder():
    path = Path(hub.tokenizer_path())
    vocab = (path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert len([v for v in vocab if v]) == 30522 and "[CLS]" in vocab


# --------------------------------------------------------------------------- the dataset contract
class Calls:
    """Stand-ins for a loader's readers that record what was called."""

    def __init__(self, hub_error: Exception | None = None, cached_result=None, cached_error: Exception | None = None):
        self.called: list[str] = []
        self.hub_error, self.cached_result, self.cached_error = hub_error, cached_result, cached_error

    def local(self, folder: Path):
        self.called.append("local")
        return "local rows"

    def hub(self):
        self.called.append("hub")
        if self.hub_error is not None:
            raise self.hub_error
        return "hub rows"

    def cached(self):
        self.called.append("cached")
        if self.cached_error is not None:
            raise self.cached_error
        return self.cached_result


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "rows.txt").write_text("x\n")
    return tmp_path / "set"


def _resolve(calls: Calls, folder: Path, repo: str | None = "org/set", cached: bool = False):
    return resolve_dataset(
        "toy", repo=repo, folder=folder, expected="rows.txt", local=calls.local, hub=calls.hub,
        cached=calls.cached if cached else None,
    )


def test_online_the_hub_answers(folder, monkeypatch):
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    calls = Calls()
    assert _resolve(calls, folder) == "hub rows" and calls.called == ["hub"]


def test_online_a_hub_error_is_an_error_not_local_files(folder, monkeypatch):
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    calls = Calls(hub_error=KeyError("sent0"))
    with pytest.raises(HubDatasetError) as info:
        _resolve(calls, folder, cached=True)
    assert calls.called == ["hub"]  # neither the cache nor the local files were read
    message = str(info.value)
    assert "'toy'" in message and "org/set" in message and "KeyError" in message and "sent0" in message
    assert "HF_HUB_OFFLINE=1" in message  # how to choose the local copy deliberately
    assert isinstance(info.value.__cause__, KeyError)


def test_offline_reads_the_local_folder(folder, monkeypatch):
    monkeypatch.setattr(hub, "is_offline", lambda: True)
    calls = Calls()
    assert _resolve(calls, folder) == "local rows" and calls.called == ["local"]


def test_offline_cache_hit_and_cache_miss(folder, monkeypatch):
    monkeypatch.setattr(hub, "is_offline", lambda: True)
    hit = Calls(cached_result="cached rows")
    assert _resolve(hit, folder, cached=True) == "cached rows" and hit.called == ["cached"]
    miss = Calls(cached_result=None)
    assert _resolve(miss, folder, cached=True) == "local rows" and miss.called == ["cached", "local"]


def test_offline_a_broken_cache_copy_is_an_error_not_local_files(folder, monkeypatch):
    monkeypatch.setattr(hub, "is_offline", lambda: True)
    calls = Calls(cached_error=ValueError("bad csv"))
    with pytest.raises(HubDatasetError, match="'toy'.*org/set.*ValueError: bad csv") as info:
        _resolve(calls, folder, cached=True)
    assert calls.called == ["cached"] and isinstance(info.value.__cause__, ValueError)


def test_offline_and_no_folder_fails_fast_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "is_offline", lambda: True)
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path))
    calls = Calls()
    t0 = time.perf_counter()
    with pytest.raises(DatasetUnavailable) as info:
        _resolve(calls, tmp_path / "absent")
    assert time.perf_counter() - t0 < 1.0
    assert calls.called == []
    message = str(info.value)
    for part in ("'toy'", str(tmp_path / "absent"), "rows.txt", "offline", f"CL_DATA_DIR={tmp_path}", "org/set"):
        assert part in message, part


def test_no_hub_copy_reads_the_folder_online_too(folder, monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    calls = Calls()
    assert _resolve(calls, folder, repo=None) == "local rows" and calls.called == ["local"]
    with pytest.raises(DatasetUnavailable, match="no canonical copy on the Hugging Face hub"):
        _resolve(calls, tmp_path / "absent", repo=None)


def test_cached_hub_file_hit_and_miss(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "datasets--org--set"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "snapshots" / revision / "rows.csv").write_text("a\n")
    assert hub.cached_hub_file("org/set", "rows.csv") == str(repo / "snapshots" / revision / "rows.csv")
    assert hub.cached_hub_file("org/set", "other.csv") is None
    assert hub.cached_hub_file("org/absent", "rows.csv") is None
