"""What operations tell a dry run.

A dry run (``specflow run --dry-run``) walks the flows without running a task. A flow that
reads a task's value (``value = yield Dependency(task)``) needs that value to go on, so an
operation may say how to get it without side effects:

* ``@taskable_operation(dry_run=fn)``: ``fn`` takes the task's arguments and returns what the
  task would return, reading (never writing) whatever it needs. It may keep notes for later
  dry-value functions of the same dry run in :func:`dry_state` (e.g. "this layer would exist
  with this metadata").
* ``@taskable_operation(pure=True)``: the operation has no side effects, so a dry run calls it
  for its value.

Any other task's value is an :class:`Unknown`. A flow that uses one (indexes it, iterates it,
does arithmetic with it, passes it to a new task, prints it, ...) is stopped there, and the
dry run's count becomes "at least N", naming the flow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol


class UnknownValueUsed(BaseException):  # noqa: N818 - a signal, not an error of the flow
    """A flow used a value only a real run produces. A ``BaseException``, so that a flow's
    ``except Exception`` does not swallow it and go on with a wrong value."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"the value of {operation} is only known after a real run")
        self.operation = operation


class Unknown:
    """Stands in a dry run for the value of a task that was not run. Any use raises
    :class:`UnknownValueUsed`; only ``repr`` and identity checks are allowed."""

    __slots__ = ("operation",)

    def __init__(self, operation: str) -> None:
        object.__setattr__(self, "operation", operation)

    def __repr__(self) -> str:
        return f"<value of {self.operation}, unknown in a dry run>"

    def _used(self, *_: Any, **__: Any) -> NoReturn:
        raise UnknownValueUsed(object.__getattribute__(self, "operation"))

    def __getattr__(self, name: str) -> Any:
        self._used()

    def __specflow_id__(self) -> Any:  # a task made from an unknown value
        self._used()

    def __reduce__(self) -> Any:
        self._used()

    __setattr__ = _used
    __getitem__ = _used
    __setitem__ = _used
    __contains__ = _used
    __iter__ = _used
    __len__ = _used
    __bool__ = _used
    __str__ = _used
    __format__ = _used
    __bytes__ = _used
    __int__ = _used
    __float__ = _used
    __index__ = _used
    __hash__ = _used
    __eq__ = _used
    __ne__ = _used
    __lt__ = _used
    __le__ = _used
    __gt__ = _used
    __ge__ = _used
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _used
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _used
    __mod__ = __rmod__ = __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = _used
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = _used
    __call__ = _used
    __array__ = _used


def contains_unknown(value: Any, depth: int = 0) -> Unknown | None:
    """The first :class:`Unknown` inside ``value`` (lists, tuples and dicts are searched)."""
    if type(value) is Unknown:
        return value
    if depth > 20:
        return None
    if isinstance(value, (list, tuple)):
        for v in value:
            found = contains_unknown(v, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, dict):
        for v in value.values():
            found = contains_unknown(v, depth + 1)
            if found is not None:
                return found
    return None


_STATE: ContextVar[dict[str, Any] | None] = ContextVar("specflow_dry_state", default=None)


def in_dry_run() -> bool:
    """True inside a dry run (while flows are walked and dry-value functions called)."""
    return _STATE.get() is not None


def dry_state() -> dict[str, Any]:
    """Notes that dry-value functions of one dry run share (keys: a module's name)."""
    state = _STATE.get()
    if state is None:
        raise RuntimeError("dry_state() is only available during a dry run")
    return state


@contextlib.contextmanager
def dry_scope() -> Iterator[dict[str, Any]]:
    """Start a dry run's shared notes (the dry-run walker enters this)."""
    token = _STATE.set({})
    try:
        state = _STATE.get()
        assert state is not None
        yield state
    finally:
        _STATE.reset(token)


# -- what flows tell the flow graph of a dry run (``specflow run --dry-run --graph``) --------
@dataclass(frozen=True)
class InnerLevel:
    """A level of work inside each task of an operation, which the task does itself (no
    task of its own): e.g. the sub-chunks a subchunkable task computes in its memory.
    ``per_parent`` is how many of this level each unit of the level above holds (the first
    level's units are the tasks themselves)."""

    name: str
    label: str
    per_parent: int


class GraphNotes(Protocol):
    """Where a dry run that draws the flow graph takes the notes of the flow it walks."""

    def levels(self, operation: str, levels: Sequence[InnerLevel]) -> None: ...

    def detail(self, text: str) -> None: ...


_GRAPH: ContextVar[GraphNotes | None] = ContextVar("specflow_dry_graph", default=None)


def describe_levels(operation: str, levels: Sequence[InnerLevel]) -> None:
    """Tell the flow graph the levels inside each task of ``operation`` that the calling
    flow yields next (nothing happens outside a dry run drawing the graph)."""
    notes = _GRAPH.get()
    if notes is not None:
        notes.levels(operation, levels)


def describe_flow(text: str) -> None:
    """A short description of the calling flow for the flow graph (e.g. what it writes)."""
    notes = _GRAPH.get()
    if notes is not None:
        notes.detail(text)


@contextlib.contextmanager
def graph_scope(notes: GraphNotes) -> Iterator[None]:
    """Take the flows' notes while a dry run draws the flow graph (the walker enters this)."""
    token = _GRAPH.set(notes)
    try:
        yield
    finally:
        _GRAPH.reset(token)
