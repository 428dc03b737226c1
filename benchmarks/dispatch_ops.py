"""The no-op volume operation of benchmarks/dispatch.py (a module of its own, so worker
processes can unpickle it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from specflow.processing.operations import VolumetricOperation


class NoOp(VolumetricOperation):
    """Zeros of the index's shape: nothing read, nothing computed, and nothing stored
    (tensorstore drops chunks equal to the fill value)."""

    def __call__(self, idx: Any, **kwargs: Any) -> Any:
        return np.zeros((1, *idx.shape), dtype=np.uint8)

    def __specflow_id__(self) -> Any:
        return "dispatch_ops.NoOp"
