"""Random-number state: capture it, replay a block from it, save it with a checkpoint.

Three things in the toolkit need the state of the random-number generators:

* the cached (GradCache) loss replays each chunk's forward pass with the dropout
  masks it drew the first time (:class:`RngSnapshot`);
* SimCSE's "same mask" ablation runs the second view from the first view's state
  (:class:`RngSnapshot` again);
* a training checkpoint stores every generator (Python, NumPy, torch CPU and CUDA)
  so that a resumed run draws what an uninterrupted one would have drawn
  (:func:`get_state`, :func:`set_state`, :func:`save_state`, :func:`load_state`).
"""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.checkpoint import get_device_states, set_device_states

__all__ = ["RngSnapshot", "get_state", "load_state", "save_state", "set_state"]


class RngSnapshot:
    """The CPU and CUDA random-number states at one moment, to replay a forward pass's dropout.

    Every initialised CUDA device is included, not only those of ``tensors``: the inputs
    often sit on the CPU while the model (and its dropout) runs on a GPU.
    """

    def __init__(self, *tensors: Any):
        self.cpu = torch.get_rng_state()
        self.devices, self.states = get_device_states(*tensors)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for device in range(torch.cuda.device_count()):
                if device not in self.devices:
                    self.devices.append(device)
                    self.states.append(torch.cuda.get_rng_state(device))

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from the saved state; the state outside the block is left untouched."""
        with torch.random.fork_rng(devices=self.devices):
            self.restore()
            yield

    def restore(self) -> None:
        """Set the generators to the saved state (the state is consumed from here on)."""
        torch.set_rng_state(self.cpu)
        set_device_states(self.devices, self.states)


def get_state() -> dict[str, Any]:
    """Every generator's state: Python, NumPy, torch CPU and (if any) each CUDA device."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | Path, state: dict[str, Any] | None = None) -> None:
    """Write a state to ``path.safetensors`` (torch generators) and ``path.json`` (Python, NumPy).

    No pickle: the files load without executing code.
    """
    from safetensors.torch import save_file

    state = get_state() if state is None else state
    path = Path(path)
    tensors = {"torch": state["torch"], **{f"cuda{i}": s for i, s in enumerate(state["cuda"])}}
    save_file(tensors, str(path.with_suffix(".safetensors")))
    version, internal, gauss = state["python"]
    np_state = state["numpy"]
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    path.with_suffix(".json").write_text(json.dumps(plain))


def load_state(path: str | Path) -> dict[str, Any]:
    """Read what :func:`save_state` wrote (pass the result to :func:`set_state`)."""
    from safetensors.torch import load_file

    path = Path(path)
    tensors = load_file(str(path.with_suffix(".safetensors")))
    plain = json.loads(path.with_suffix(".json").read_text())
    version, internal, gauss = plain["python"]
    n = plain["numpy"]
    return {
        "python": (version, tuple(internal), gauss),
        "numpy": (n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]),
        "torch": tensors["torch"],
        "cuda": [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda")), key=lambda k: int(k[4:]))],
    }
