"""Turning evaluated vertices into plain data."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from specflow.spec.cue.errors import CueError
from specflow.spec.cue.values import NULL, Disj, is_concrete_scalar
from specflow.spec.cue.vertex import (
    NEW,
    REGULAR,
    REQUIRED,
    Vertex,
    elems,
    is_hidden_or_def,
    label_text,
)

if TYPE_CHECKING:
    from specflow.spec.cue.evaluator import Evaluator


def export_value(ev: Evaluator, val: Any) -> Any:
    """The concrete value with CUE-native scalars (Decimal floats, the NULL marker)."""
    if isinstance(val, Vertex):
        return _export_vertex(ev, val, 0)
    if isinstance(val, Disj):
        d = val.default()
        if d is None:
            raise CueError(f"incomplete value {ev.show(val)}", incomplete=True)
        return export_value(ev, d)
    if is_concrete_scalar(val):
        return val
    raise CueError(f"incomplete value {ev.show(val)}", incomplete=True)


def _export_vertex(ev: Evaluator, v: Vertex, depth: int) -> Any:
    if depth > 500:
        raise CueError("structural cycle", path=v.path() or None)
    ev.evaluate(v)
    if v.is_list:
        return [_export_vertex(ev, a, depth + 1) for a in elems(v)]
    if v.is_struct:
        out: dict[str, Any] = {}
        for label, a in v.arcs.items():
            if not isinstance(label, str) or is_hidden_or_def(label):
                continue
            if a.arc_type != REGULAR:
                if a.arc_type == REQUIRED:
                    raise CueError("field is required but not present", path=a.path() or None)
                continue
            out[label_text(label)] = _export_vertex(ev, a, depth + 1)
        return out
    val = v.value
    if isinstance(val, Disj):
        d = val.default()
        if d is None:
            raise CueError(
                f"incomplete value {ev.show(val)}", path=v.path() or None, incomplete=True
            )
        if isinstance(d, Vertex):
            return _export_vertex(ev, d, depth + 1)
        val = d
    if is_concrete_scalar(val):
        return val
    raise CueError(f"incomplete value {ev.show(val)}", path=v.path() or None, incomplete=True)


def to_json(val: Any) -> Any:
    """CUE-native data to JSON-like Python data."""
    if val is NULL:
        return None
    t = type(val)
    if t is dict:
        return {k: to_json(x) for k, x in val.items()}
    if t is list:
        return [to_json(x) for x in val]
    if t is Decimal:
        return float(val)
    if t is bytes:
        return base64.b64encode(val).decode("ascii")
    return val


MAX_DEPTH = 500
SCHEMA_DEPTH = 2


def collect_conflicts(ev: Evaluator, root: Vertex) -> list[CueError]:
    """Every error below ``root`` that is not merely an incomplete value: regular fields,
    definitions and hidden fields alike (optional fields only once they are set).

    Below a definition or a hidden field the walk evaluates only the first
    ``SCHEMA_DEPTH`` levels (and whatever was evaluated anyway): schemas are usually
    large, and their deeper parts are checked where they are used."""
    errors: list[CueError] = []
    try:
        ev.evaluate(root)
    except CueError as e:
        return [] if e.incomplete else [e]
    # (vertex, depth, levels below the nearest definition or hidden field, or -1)
    stack: list[tuple[Vertex, int, int]] = [(root, 0, -1)]
    while stack:
        v, depth, in_schema = stack.pop()
        for label, a in list(v.arcs.items()):
            if a.arc_type != REGULAR:
                continue
            sub = in_schema + 1 if in_schema >= 0 else (0 if is_hidden_or_def(label) else -1)
            if sub > SCHEMA_DEPTH and a.status == NEW:
                continue
            try:
                ev.evaluate(a)
            except CueError as e:
                if not e.incomplete:
                    errors.append(e)
                continue
            if a.arcs:
                if depth >= MAX_DEPTH:
                    errors.append(CueError("structural cycle", path=a.path() or None))
                    continue
                stack.append((a, depth + 1, sub))
    return errors


def export_all(ev: Evaluator, root: Vertex) -> tuple[Any, list[CueError]]:
    """The concrete value of ``root`` and the errors of the fields that have none."""
    errors: list[CueError] = []
    try:
        value = _export_collect(ev, root, 0, errors)
    except CueError as e:
        errors.append(e)
        value = None
    return value, errors


def _export_collect(ev: Evaluator, v: Vertex, depth: int, errors: list[CueError]) -> Any:
    if depth > MAX_DEPTH:
        raise CueError("structural cycle", path=v.path() or None)
    ev.evaluate(v)
    if v.is_list:
        out_l: list[Any] = []
        for a in elems(v):
            try:
                out_l.append(_export_collect(ev, a, depth + 1, errors))
            except CueError as e:
                errors.append(e)
        return out_l
    if v.is_struct:
        out: dict[str, Any] = {}
        for label, a in v.arcs.items():
            if not isinstance(label, str) or is_hidden_or_def(label):
                continue
            if a.arc_type != REGULAR:
                if a.arc_type == REQUIRED:
                    errors.append(
                        CueError("field is required but not present", path=a.path() or None)
                    )
                continue
            try:
                out[label_text(label)] = _export_collect(ev, a, depth + 1, errors)
            except CueError as e:
                errors.append(e)
        return out
    return _export_vertex(ev, v, depth)
