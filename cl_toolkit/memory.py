"""The activation-memory meter: how many bytes autograd keeps for the backward pass.

:func:`saved_activation_bytes` is deterministic and device-independent (unlike a
process's resident memory), so tests and chapters can compare the memory of the
plain and the cached (GradCache) losses exactly.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor

__all__ = ["saved_activation_bytes"]


class _Held:
    """A tensor autograd saved for backward; tells the meter when autograd lets go of it."""

    __slots__ = ("meter", "ptr", "tensor")

    def __init__(self, meter: "_SavedMeter", ptr: int, tensor: Tensor):
        self.meter, self.ptr, self.tensor = meter, ptr, tensor

    def __del__(self) -> None:
        self.meter.release(self.ptr)


class _SavedMeter:
    def __init__(self, exclude: Iterable[Tensor]):
        self.skip = {t.untyped_storage().data_ptr() for t in exclude}
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, references]
        self.now = self.peak = 0

    def pack(self, t: Tensor):
        storage = t.untyped_storage()
        ptr, size = storage.data_ptr(), storage.nbytes()
        if ptr in self.skip or size == 0:
            return t
        entry = self.live.setdefault(ptr, [size, 0])
        if entry[1] == 0:
            self.now += size
            self.peak = max(self.peak, self.now)
        entry[1] += 1
        return _Held(self, ptr, t)

    @staticmethod
    def unpack(held):
        return held.tensor if isinstance(held, _Held) else held

    def release(self, ptr: int) -> None:
        entry = self.live[ptr]
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[ptr]


def saved_activation_bytes(fn: Callable[[], Any], exclude: Iterable[Tensor] = ()) -> int:
    """Peak bytes of the tensors that autograd keeps for the backward pass while ``fn()`` runs.

    Every tensor that an operation saves for backward goes through
    ``torch.autograd.graph.saved_tensors_hooks``; this counts each distinct storage
    from the moment it is saved until autograd frees it, and returns the peak.
    Tensors in ``exclude`` (pass the parameters: they live anyway) are not counted.
    It is the part of training memory that grows with the batch — the activations —
    and leaves out parameters, gradients, optimiser state and short-lived temporaries.
    Deterministic and device-independent, unlike a process's resident memory.
    ``fn`` should run the forward *and* the backward pass (e.g. ``lambda: loss_fn().backward()``).
    """
    meter = _SavedMeter(list(exclude))
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        fn()
    return meter.peak
