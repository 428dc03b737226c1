"""Turning evaluated vertices into plain data."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from specflow.spec.cue.errors import CueError, Pos
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
            text = label_text(label)
            out[text] = _export_vertex(ev, a, depth + 1, positions,
                                       f"{path}.{text}" if path else text)
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


MAX_DEPTH = 500
SCHEMA_DEPTH = 2


def export_checked(
    ev: Evaluator, root: Vertex, positions: Positions | None = None
) -> tuple[Any, list[CueError], list[CueError]]:
    """Evaluate and export ``root`` in one walk: its concrete value, the conflicts found
    anywhere (regular fields, definitions and hidden fields alike; optional fields only once
    they are set) and the regular fields whose values are not concrete.

    Below a definition or a hidden field only the first ``SCHEMA_DEPTH`` levels are
    evaluated for the sake of checking (plus whatever was evaluated anyway): schemas are
    usually large, and their deeper parts are checked where they are used."""
    w = _Walk(ev, positions)
    try:
        value = w.export(root, 0, "")
    except CueError as e:
        w.fail(e)
        value = None
    w.check_schemas()
    w.conflicts.extend(ev.recheck_cycles())
    return value, w.conflicts, w.incompletes


class _Walk:
    def __init__(self, ev: Evaluator, positions: Positions | None = None) -> None:
        self.ev = ev
        self.positions = positions
        self.conflicts: list[CueError] = []
        self.incompletes: list[CueError] = []
        self.schemas: list[tuple[Vertex, int]] = []

    def fail(self, e: CueError) -> None:
        (self.incompletes if e.incomplete else self.conflicts).append(e)

    def export(self, v: Vertex, depth: int, path: str) -> Any:
        if depth > MAX_DEPTH:
            raise CueError("structural cycle", path=v.path() or None)
        self.ev.evaluate(v)
        _note(v, self.positions, path)
        if v.is_list:
            out_l: list[Any] = []
            for i, a in enumerate(elems(v)):
                try:
                    out_l.append(self.export(a, depth + 1, f"{path}[{i}]"))
                except CueError as e:
                    self.fail(e)
            return out_l
        if v.is_struct:
            out: dict[str, Any] = {}
            for label, a in v.arcs.items():
                if a.arc_type != REGULAR:
                    if a.arc_type == REQUIRED and not is_hidden_or_def(label):
                        self.fail(
                            CueError("field is required but not present", path=a.path() or None)
                        )
                    continue
                if not isinstance(label, str):
                    continue
                if is_hidden_or_def(label):
                    self.schemas.append((a, depth + 1))
                    continue
                text = label_text(label)
                try:
                    out[text] = self.export(a, depth + 1, f"{path}.{text}" if path else text)
                except CueError as e:
                    self.fail(e)
            return out
        for a in v.arcs.values():
            # definitions next to an embedded scalar ({3, #x: 4})
            if a.arc_type == REGULAR:
                self.schemas.append((a, depth + 1))
        return _export_vertex(self.ev, v, depth, self.positions, path)

    def check_schemas(self) -> None:
        """Look for conflicts in definitions and hidden fields (and what they contain)."""
        ev = self.ev
        stack: list[tuple[Vertex, int, int]] = [(a, d, 0) for a, d in reversed(self.schemas)]
        while stack:
            a, depth, level = stack.pop()
            if level > SCHEMA_DEPTH and a.status == NEW:
                continue
            try:
                ev.evaluate(a)
            except CueError as e:
                if not e.incomplete:
                    self.conflicts.append(e)
                continue
            if not a.arcs:
                continue
            if depth >= MAX_DEPTH:
                self.conflicts.append(CueError("structural cycle", path=a.path() or None))
                continue
            for b in a.arcs.values():
                if b.arc_type == REGULAR:
                    stack.append((b, depth + 1, level + 1))
