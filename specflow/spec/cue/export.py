"""Turning evaluated vertices into plain data."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from specflow.spec.cue.errors import CueError, Pos
from specflow.spec.cue.values import NULL, Disj, is_concrete_scalar
from specflow.spec.cue.vertex import REGULAR, REQUIRED, Vertex, elems, is_hidden_or_def

if TYPE_CHECKING:
    from specflow.spec.cue.evaluator import Evaluator


#: where each exported value was written: spec path (``a.b[0].c``) -> position
Positions = dict[str, Pos]


def export_value(ev: Evaluator, val: Any, positions: Positions | None = None) -> Any:
    """The concrete value with CUE-native scalars (Decimal floats, the NULL marker). With
    ``positions``, the source position of every exported value is recorded under its path."""
    if isinstance(val, Vertex):
        return _export_vertex(ev, val, 0, positions, "")
    if isinstance(val, Disj):
        d = val.default()
        if d is None:
            raise CueError(f"incomplete value {ev.show(val)}", incomplete=True)
        return export_value(ev, d)
    if is_concrete_scalar(val):
        return val
    raise CueError(f"incomplete value {ev.show(val)}", incomplete=True)


def _note(v: Vertex, positions: Positions | None, path: str) -> None:
    if positions is None or path in positions:
        return
    for conjunct in v.conjuncts:
        pos = getattr(conjunct[0], "pos", None)
        if isinstance(pos, Pos) and pos.line > 0:
            positions[path] = pos
            return


def _export_vertex(
    ev: Evaluator, v: Vertex, depth: int, positions: Positions | None = None, path: str = ""
) -> Any:
    if depth > 500:
        raise CueError("structural cycle", path=v.path() or None)
    ev.evaluate(v)
    _note(v, positions, path)
    if v.is_list:
        return [_export_vertex(ev, a, depth + 1, positions, f"{path}[{i}]")
                for i, a in enumerate(elems(v))]
    if v.is_struct:
        out: dict[str, Any] = {}
        for label, a in v.arcs.items():
            if not isinstance(label, str) or is_hidden_or_def(label):
                continue
            if a.arc_type != REGULAR:
                if a.arc_type == REQUIRED:
                    raise CueError("field is required but not present", path=a.path() or None)
                continue
            out[label] = _export_vertex(ev, a, depth + 1, positions,
                                        f"{path}.{label}" if path else label)
        return out
    val = v.value
    if isinstance(val, Disj):
        d = val.default()
        if d is None:
            raise CueError(
                f"incomplete value {ev.show(val)}", path=v.path() or None, incomplete=True
            )
        if isinstance(d, Vertex):
            return _export_vertex(ev, d, depth + 1, positions, path)
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
