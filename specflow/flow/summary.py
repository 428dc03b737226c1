"""Short, human-readable summaries of a task's arguments, for failure lines, ``status`` and
the report.

An operation may give its own summariser (``TaskableOperation(..., summary=fn)``, where
``fn(**kwargs) -> str``, or a ``summarise_args(**kwargs)`` method on an operation class);
otherwise the arguments are shown as ``name=value`` pairs, each value cut short. An object
may describe itself in one line with a ``__specflow_summary__()`` method (volume indices and
layers do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from specflow.flow.task import Task

#: the longest summary kept (characters)
MAX_SUMMARY = 240
_MAX_VALUE = 48
_SCALARS = (int, float, bool, type(None))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_value(value: Any) -> str:
    """One value, in a few words."""
    if isinstance(value, str):
        return repr(_cut(value, _MAX_VALUE))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, _SCALARS):
        return repr(value)
    own = getattr(value, "__specflow_summary__", None)
    if own is not None and callable(own):
        try:
            return str(own())
        except Exception:  # noqa: BLE001 - a summary never stops a run
            return type(value).__name__
    if isinstance(value, (list, tuple)):
        if len(value) <= 4 and all(isinstance(v, (*_SCALARS, str)) for v in value):
            return _cut("[" + ", ".join(describe_value(v) for v in value) + "]", _MAX_VALUE)
        return f"[{len(value)} items]"
    if isinstance(value, Mapping):
        return f"{{{len(value)} keys}}"
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{dtype}{list(shape)}"
    return type(value).__name__


def describe_kwargs(kwargs: Mapping[str, Any]) -> str:
    """``name=value, ...`` for every argument, cut to :data:`MAX_SUMMARY` characters."""
    parts = []
    total = 0
    for k, v in kwargs.items():
        part = f"{k}={describe_value(v)}"
        parts.append(part)
        total += len(part) + 2
        if total > MAX_SUMMARY:
            break
    return _cut(", ".join(parts), MAX_SUMMARY)


def summarise(task: Task) -> str:
    """The summary of ``task``'s arguments (never raises)."""
    fn = task.fn
    hook = getattr(fn, "summarise_args", None)
    try:
        if hook is not None:
            text = hook(**task.kwargs)
            if text is not None:
                return _cut(str(text), MAX_SUMMARY)
        return describe_kwargs(task.kwargs)
    except Exception as exc:  # noqa: BLE001 - a summary never stops a run
        return f"(no summary: {type(exc).__name__})"
