"""The volume operations of benchmarks/dispatch.py (a module of its own, so worker processes
can unpickle them)."""

from __future__ import annotations

from typing import Any

import numpy as np

from specflow.processing.operations import VolumetricOperation


class Zeros(VolumetricOperation):
    """Zeros of the index's shape: nothing read or computed, but every chunk goes through
    tensorstore's write path (a chunk equal to the fill value is stored as no key: its key
    is deleted, and the disk stays empty)."""

    def __call__(self, idx: Any, **kwargs: Any) -> Any:
        return np.zeros((1, *idx.shape), dtype=np.uint8)

    def __specflow_id__(self) -> Any:
        return "dispatch_ops.Zeros"


class Nothing(VolumetricOperation):
    """An operation that computes and writes nothing (returns None): what is left is the
    framework's own work per chunk task."""

    def __call__(self, idx: Any, **kwargs: Any) -> Any:
        return None

    def __specflow_id__(self) -> Any:
        return "dispatch_ops.Nothing"
