"""Built objects remember the spec they were built from."""

from __future__ import annotations

import weakref
from typing import Any

_BY_ID: dict[int, tuple[Any, Any]] = {}
_WEAK: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

ATTR = "__built_spec__"


def set_spec(obj: Any, spec: Any) -> None:
    try:
        object.__setattr__(obj, ATTR, spec)
        return
    except (AttributeError, TypeError):
        pass
    try:
        _WEAK[obj] = spec
    except TypeError:
        pass


def get_spec(obj: Any) -> Any | None:
    """The spec ``obj`` was built from, or ``None`` when it was not built by specflow."""
    spec = getattr(obj, ATTR, None)
    if spec is not None:
        return spec
    try:
        return _WEAK.get(obj)
    except TypeError:
        return None
