"""What a spec's ``lambda`` sees as ``torch`` when PyTorch is not installed: the array
constructors and dtypes zetta specs use, on numpy (specflow hands lambdas numpy arrays, so
their results are numpy arrays too). Anything else names itself as missing."""

from __future__ import annotations

import importlib
import types
from typing import Any

import numpy as np

_DTYPES = {
    "uint8": np.uint8, "int8": np.int8, "int16": np.int16, "int32": np.int32,
    "int64": np.int64, "float16": np.float16, "float32": np.float32, "float64": np.float64,
    "bool": np.bool_, "half": np.float16, "float": np.float32, "double": np.float64,
    "int": np.int32, "long": np.int64,
}


def _shape(size: Any) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(int(s) for s in size[0])
    return tuple(int(s) for s in size)


def _full(size: Any, fill_value: Any, *, dtype: Any = None, **_: Any) -> Any:
    return np.full(_shape((size,)) if not isinstance(size, int) else (size,), fill_value,
                   dtype=dtype)


def _zeros(*size: Any, dtype: Any = None, **_: Any) -> Any:
    return np.zeros(_shape(size), dtype=dtype or np.float32)


def _ones(*size: Any, dtype: Any = None, **_: Any) -> Any:
    return np.ones(_shape(size), dtype=dtype or np.float32)


def _tensor(data: Any, dtype: Any = None, **_: Any) -> Any:
    return np.asarray(data, dtype=dtype)


class _Missing(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"torch.{name} is not available: PyTorch is not installed, and specflow's stand-in "
            "offers only torch's array constructors (full, zeros, ones, *_like, tensor) and "
            "dtypes; install torch to use it in a lambda")


def standin() -> types.ModuleType:
    """A module named ``torch`` with numpy constructors and dtypes."""
    mod = _Missing("torch", "specflow's numpy stand-in for torch in lambdas")
    for name, dt in _DTYPES.items():
        setattr(mod, name, dt)
    mod.full = _full  # type: ignore[attr-defined]
    mod.zeros = _zeros  # type: ignore[attr-defined]
    mod.ones = _ones  # type: ignore[attr-defined]
    mod.zeros_like = lambda a, dtype=None, **_: np.zeros_like(a, dtype=dtype)  # type: ignore[attr-defined]
    mod.ones_like = lambda a, dtype=None, **_: np.ones_like(a, dtype=dtype)  # type: ignore[attr-defined]
    mod.full_like = (  # type: ignore[attr-defined]
        lambda a, fill_value, dtype=None, **_: np.full_like(a, fill_value, dtype=dtype))
    mod.tensor = _tensor  # type: ignore[attr-defined]
    mod.as_tensor = _tensor  # type: ignore[attr-defined]
    mod.from_numpy = np.asarray  # type: ignore[attr-defined]
    return mod


def torch_module() -> types.ModuleType:
    """PyTorch when it is installed, the stand-in otherwise."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return standin()
