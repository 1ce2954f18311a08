"""Profiles, seeding and the one `setup()` call every notebook starts with.

Two profiles share one code path and differ only in sizes:

* ``quick`` — CPU, offline-capable, a couple of minutes per chapter (what CI runs);
* ``full``  — the papers' recipes on a GPU, with hub models and data.

The profile comes from ``CL_PROFILE``; by default it is ``full`` when CUDA is
available and ``quick`` otherwise.

Offline detection lives in :mod:`cl_toolkit.hub`. This module imports neither
transformers nor datasets: the offline switches
(``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``) are read by those libraries when
they are imported, so ``setup()`` must run first.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import hub

__all__ = [
    "PROFILES",
    "REPO_ROOT",
    "Settings",
    "cpu_has_fast_bf16",
    "default_data_dir",
    "default_threads",
    "get_device",
    "get_profile",
    "is_quiet",
    "quiet_libraries",
    "seed_everything",
    "setup",
]

PROFILES = ("quick", "full")
REPO_ROOT = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def get_profile(profile: str | None = None) -> str:
    """The active profile: the argument, else ``CL_PROFILE``, else by hardware."""
    profile = profile or os.environ.get("CL_PROFILE") or None
    if profile is None:
        return "full" if torch.cuda.is_available() else "quick"
    profile = profile.strip().lower()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES} (set CL_PROFILE)")
    return profile


def get_device(device: str | None = None) -> torch.device:
    """``CL_DEVICE`` if set, else CUDA when available, else CPU."""
    device = device or os.environ.get("CL_DEVICE")
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_threads() -> int:
    """``CL_THREADS``, else ``OMP_NUM_THREADS`` (as ``torchrun`` and schedulers set it), else
    ``min(cores, 8)``."""
    for name in ("CL_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                threads = int(value)
            except ValueError:
                raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
            if threads < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            return threads
    return min(os.cpu_count() or 1, 8)


def cpu_has_fast_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """True when the CPU computes bfloat16 in hardware (``avx512_bf16`` or AMX; read from Linux's
    ``/proc/cpuinfo``, so False elsewhere). There, training with ``cpu_bf16=True`` is faster
    (1.4-1.8x measured on this book's machines); without it, bfloat16 is emulated and slower.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def is_quiet() -> bool:
    """True when progress bars should stay silent (``CL_QUIET=1``, set for nbval and CI)."""
    return _env_flag("CL_QUIET")


def quiet_libraries() -> None:
    """Silence progress bars and chatty warnings (for nbval's stable outputs)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", message=".*IProgress not found.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def default_data_dir() -> Path:
    """``CL_DATA_DIR`` if set, else ``<repo>/data``, else ``<repo>/../shared/data``."""
    env = os.environ.get("CL_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    for candidate in (REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return (REPO_ROOT / "data").resolve()


@dataclass
class Settings:
    """What ``setup()`` decided; notebooks read their sizes from it."""

    profile: str
    device: torch.device
    seed: int
    offline: bool
    data_dir: Path
    threads: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.profile == "quick"

    def pick(self, quick: Any, full: Any) -> Any:
        """Return the value for the active profile: ``cfg.pick(quick=200, full=10_000)``."""
        return quick if self.profile == "quick" else full

    def __str__(self) -> str:
        return (
            f"profile={self.profile} device={self.device.type} seed={self.seed} "
            f"offline={self.offline} threads={self.threads}"
        )


def setup(
    seed: int = 0,
    profile: str | None = None,
    offline: bool | None = None,
    threads: int | None = None,
    quiet: bool | None = None,
) -> Settings:
    """Seed, pick device and profile, decide offline mode, quiet the libraries.

    Offline mode is on when ``HF_HUB_OFFLINE``/``CL_OFFLINE`` is set, or when the
    hub cannot be reached within two seconds; then every hub lookup is answered
    from local files at once instead of retrying for minutes.
    """
    profile = get_profile(profile)
    device = get_device()
    if offline is None:
        offline = hub.is_offline() or not hub.hub_reachable()
    hub.set_offline(offline)
    if quiet is None:
        quiet = is_quiet()
    if quiet:
        quiet_libraries()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads is None:
        threads = default_threads()
    torch.set_num_threads(threads)
    seed_everything(seed)
    try:  # figures: a consistent, readable default
        import matplotlib

        matplotlib.rcParams.update({"figure.dpi": 150, "savefig.dpi": 150,
                                    "axes.grid": True, "grid.alpha": 0.3})
    except ImportError:  # pragma: no cover
        pass
    return Settings(profile, device, seed, offline, default_data_dir(), threads)
