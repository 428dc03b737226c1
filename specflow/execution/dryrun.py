"""Dry runs: count, per operation, the tasks a real run of a target executes, running none.

The walker steps the flows the way the executor does (a task id is executed once, however
often it is yielded; ``Dependency`` hands a flow the values of the tasks it names), but
completes each task at once with its *dry value* instead of running it:

* an operation with a dry-value function (``@taskable_operation(dry_run=...)``) gets what
  that function returns: it computes the task's value from its arguments, reading and never
  writing (e.g. the metadata a layer will have);
* a pure operation (``pure=True``) is called: it has no side effects;
* any other task gets an :class:`~specflow.flow.dry.Unknown` value.

Flows are walked depth first: a sub-flow runs to its end before its parent goes on, which is
one of the orders a real run may take, so dry-value functions see the effects of the tasks
before them (through :func:`~specflow.flow.dry.dry_state`).

A flow that uses an unknown value is stopped there: the count is then a lower bound
("at least N") and the result names the flow and the operation whose value it needed. A flow
that raises, a dry-value function that raises, or a flow that yields something it must not,
is a failure the real run would meet: the walk stops (as a real run fails fast) and the
result says where. Memory holds one 128-bit id per distinct task (for deduplication) and the
flows being walked, never the task list.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from specflow.execution.flowgraph import FlowGraph, FlowNode
from specflow.flow.core import Dependency, Flow, FlowSchema, dry_behaviour
from specflow.flow.dry import (
    InnerLevel,
    Unknown,
    UnknownValueUsed,
    contains_unknown,
    dry_scope,
    graph_scope,
)
from specflow.flow.task import Task


@dataclass
class NotCounted:
    """Where a dry run had to stop counting part of the work."""

    flow: str
    reason: str
    operation: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "operation": self.operation, "reason": self.reason}


@dataclass
class DryRunResult:
    """What a dry run found: tasks per operation, and whether the counts are exact.

    ``unknown`` lists the flows that needed a value only a run produces (the counts are then
    lower bounds); ``failure`` says where the real run would fail (the walk stopped there)."""

    counts: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    unknown: list[NotCounted] = field(default_factory=list)
    failure: NotCounted | None = None
    #: the flow graph, when the dry run was asked to draw it
    graph: FlowGraph | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def exact(self) -> bool:
        return not self.unknown and self.failure is None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "counts": dict(sorted(self.counts.items())), "total": self.total,
            "exact": self.exact,
        }
        if self.unknown:
            out["unknown"] = [u.as_dict() for u in self.unknown]
        if self.failure is not None:
            out["failure"] = self.failure.as_dict()
        return out


class DryRunFailure(Exception):
    """The walk met a failure the real run would meet."""

    def __init__(self, where: NotCounted) -> None:
        super().__init__(where.reason)
        self.where = where


class _Frame:
    __slots__ = ("name", "items", "send", "fed_unknown", "is_gen", "taken", "owner", "node")

    def __init__(self, name: str, items: Iterator[Any] | Generator[Any, Any, Any],
                 is_gen: bool) -> None:
        self.name = name
        self.items = items
        self.send: Any = None
        self.fed_unknown: Unknown | None = None
        self.is_gen = is_gen
        self.taken = 0  # tasks yielded (by a flow, and by the lists it yielded)
        self.owner: _Frame = self
        self.node: FlowNode | None = None  # in the flow graph (flows, when it is drawn)


class DryRun:
    """One dry run of one target (see the module doc).

    ``tasks_per_flow`` stops walking each flow after it yielded that many tasks (for checks
    that want every flow started, not every task counted): the counts are then partial.
    ``graph=True`` also draws the flow graph (:mod:`specflow.execution.flowgraph`) in the
    result's ``graph``."""

    def __init__(self, *, tasks_per_flow: int | None = None, graph: bool = False) -> None:
        self.result = DryRunResult()
        self._graph = FlowGraph() if graph else None
        self.result.graph = self._graph
        self.tasks_per_flow = tasks_per_flow
        self.cut_short = 0
        self._seen: set[int] = set()
        self._values: dict[int, Any] = {}
        self._stack: list[_Frame] = []

    def run(self, target: Any) -> DryRunResult:
        notes = graph_scope(_Notes(self)) if self._graph is not None else _no_scope()
        with dry_scope(), notes:
            try:
                self._push_item(None, target)
                self._walk()
            except DryRunFailure as exc:
                self.result.failure = exc.where
        return self.result

    # -- the flow graph ------------------------------------------------------------------
    def _node(self, fr: _Frame | None) -> FlowNode | None:
        """The graph node tasks of frame ``fr`` go to (None: no graph is drawn)."""
        graph = self._graph
        if graph is None:
            return None
        node = fr.owner.node if fr is not None else None
        return node if node is not None else graph.root

    def _closed(self, fr: _Frame) -> None:
        """A flow's frame left the stack: its node joins its parent's."""
        node = fr.node
        if node is None:
            return
        node.close()
        parent = node.parent
        if parent is not None:
            parent.add_flow(node)
        fr.node = None

    # -- walking -------------------------------------------------------------------------
    def _walk(self) -> None:
        stack = self._stack
        counts = self.result.counts
        seen = self._seen
        limit = self.tasks_per_flow
        graph = self._graph
        while stack:
            fr = stack[-1]
            if limit is not None and fr.owner.taken >= limit:
                stack.pop()
                if fr.is_gen:
                    _close(fr.items)
                    self.cut_short += 1
                    self._closed(fr)
                continue
            try:
                if fr.is_gen:
                    send, fr.send = fr.send, None
                    item = fr.items.send(send)  # type: ignore[union-attr]
                else:
                    item = next(fr.items)
            except StopIteration:
                stack.pop()
                if fr.node is not None:
                    self._closed(fr)
                continue
            except UnknownValueUsed as exc:
                stack.pop()
                self._stopped(fr, exc.operation, None)
                continue
            except Exception as exc:
                stack.pop()
                self._flow_raised(fr, exc)
                continue
            if type(item) is Task:
                # the hot path: a plain task (most flows yield little else)
                fr.owner.taken += 1
                key = int(item.id, 16)
                op = item.operation
                if key in seen:
                    self.result.duplicates += 1
                    if graph is not None:
                        self._node(fr).add_duplicate(op)  # type: ignore[union-attr]
                    continue
                seen.add(key)
                counts[op] = counts.get(op, 0) + 1
                if graph is not None:
                    self._node(fr).add_task(op)  # type: ignore[union-attr]
                self._complete(item, key, fr)
                continue
            self._item(fr, item)

    def _item(self, fr: _Frame, item: Any) -> None:
        if isinstance(item, Task):
            self._take(fr, item)
        elif isinstance(item, Dependency) and fr.is_gen:
            node = self._node(fr)
            if node is not None:
                node.add_wait(_waits_on(item.target))
            fr.send = self._dependency(fr, item.target)
        elif isinstance(item, (Flow, FlowSchema, list, tuple)):
            self._push_item(fr, item)
        elif item is None:
            return
        else:
            self._fail(fr.name, f"flow {fr.name!r} yielded {type(item).__name__}; a flow "
                       "yields Tasks, Flows, lists of those, or Dependency markers")

    def _push_item(self, parent: _Frame | None, item: Any) -> None:
        if isinstance(item, FlowSchema):
            item = item()
        if isinstance(item, Flow):
            name = str(item.name)
            held = contains_unknown([list(item.args), item.kwargs])
            parent_node = self._node(parent)
            try:
                gen = item.generator()
            except UnknownValueUsed as exc:
                self._stopped_named(name, exc.operation)
                if parent_node is not None:
                    node = FlowNode(name, stopped=f"uses the value of {exc.operation}")
                    node.close()
                    parent_node.add_flow(node)
                return
            except Exception as exc:  # the flow's function raised before its first yield
                if parent_node is not None:
                    node = FlowNode(name, stopped=f"would fail: {type(exc).__name__}: {exc}")
                    node.close()
                    parent_node.add_flow(node)
                self._fail(name, _error_text(name, exc), exc)
                return
            frame = _Frame(name, gen, True)
            frame.fed_unknown = held
            if parent_node is not None:
                frame.node = FlowNode(name, parent=parent_node)
            self._stack.append(frame)
        elif isinstance(item, (list, tuple)):
            name = parent.name if parent is not None else "target"
            frame = _Frame(name, iter(item), False)
            if parent is not None:
                frame.fed_unknown = parent.fed_unknown
                frame.owner = parent.owner
            self._stack.append(frame)
        elif isinstance(item, Task):
            frame = _Frame("target", iter((item,)), False)
            self._stack.append(frame)
        elif parent is None and callable(item) and callable(getattr(item, "flow", None)):
            flow = item()
            if not isinstance(flow, Flow):
                self._cannot_execute(item)
            self._push_item(parent, flow)
        else:
            self._cannot_execute(item, parent)

    def _cannot_execute(self, item: Any, parent: _Frame | None = None) -> NoReturn:
        if parent is not None:
            self._fail(parent.name, f"flow {parent.name!r} yielded {type(item).__name__}; a "
                       "flow yields Tasks, Flows, lists of those, or Dependency markers")
        self._fail("target", f"cannot execute a {type(item).__name__}: the target must be a "
                   "Flow, a Task, a flow schema or a list of them")

    def _take(self, fr: _Frame, task: Task) -> None:
        fr.owner.taken += 1
        key = int(task.id, 16)
        node = self._node(fr)
        if key in self._seen:
            self.result.duplicates += 1
            if node is not None:
                node.add_duplicate(task.operation)
            return
        self._seen.add(key)
        counts = self.result.counts
        counts[task.operation] = counts.get(task.operation, 0) + 1
        if node is not None:
            node.add_task(task.operation)
        self._complete(task, key, fr)

    def _complete(self, task: Task, key: int, fr: _Frame) -> None:
        dry, pure = dry_behaviour(task.fn)
        if dry is None and not pure:
            return
        try:
            value = dry(**task.kwargs) if dry is not None else task()
        except UnknownValueUsed as exc:
            self._values[key] = Unknown(exc.operation)
            return
        except Exception as exc:
            if self.result.unknown or fr.fed_unknown is not None:
                # what came before was not fully known: this may be a consequence
                self._values[key] = Unknown(task.operation)
                return
            self._fail(fr.name, f"{task.operation} would fail: {type(exc).__name__}: {exc}",
                       exc, task.operation)
        if value is not None:  # a None is not kept: its operation tells (see _dependency)
            self._values[key] = value

    # -- dependencies --------------------------------------------------------------------
    def _dependency(self, fr: _Frame, target: Any) -> Any:
        if target is None or isinstance(target, Flow):
            return None
        if isinstance(target, Task):
            key = int(target.id, 16)
            if key not in self._seen:
                self._fail(fr.name, f"flow {fr.name!r} waits on a task it never yielded "
                           f"({target.id[:12]})")
            value = self._values.get(key)
            if value is None:
                dry, pure = dry_behaviour(target.fn)
                value = Unknown(target.operation) if dry is None and not pure else None
                if value is not None:
                    fr.fed_unknown = value
                return value
            if type(value) is Unknown:
                fr.fed_unknown = value
            return value
        if isinstance(target, (list, tuple)):
            return [self._dependency(fr, t) for t in target]
        self._fail(fr.name, f"FlowError: cannot depend on a {type(target).__name__}")

    # -- stopping ------------------------------------------------------------------------
    def _stopped(self, fr: _Frame, operation: str | None, exc: BaseException | None) -> None:
        if fr.is_gen:
            _close(fr.items)
        op = operation or (fr.fed_unknown.operation if fr.fed_unknown is not None else None)
        why = f"uses the value of {op}, which only a run produces" if op else \
            "uses a value only a run produces"
        if exc is not None:
            why += f" (it raised {type(exc).__name__}: {exc} on the stand-in value)"
        self.result.unknown.append(NotCounted(fr.name, why, op))
        if fr.node is not None:
            fr.node.stopped = f"uses the value of {op}" if op else "uses a value of the run"
            self._closed(fr)

    def _stopped_named(self, name: str, operation: str) -> None:
        self.result.unknown.append(NotCounted(
            name, f"uses the value of {operation}, which only a run produces", operation))

    def _flow_raised(self, fr: _Frame, exc: Exception) -> None:
        if fr.fed_unknown is not None:
            self._stopped(fr, fr.fed_unknown.operation, exc)
            return
        if self.result.unknown:
            # an earlier flow stopped counting: its effects are missing, so this may follow
            self.result.unknown.append(NotCounted(
                fr.name, f"raised {type(exc).__name__}: {exc} (after counting stopped "
                "elsewhere, so the dry run cannot tell whether a real run would)"))
            if fr.node is not None:
                fr.node.stopped = f"raised {type(exc).__name__} after counting stopped elsewhere"
                self._closed(fr)
            return
        if fr.node is not None:
            fr.node.stopped = f"would fail: {type(exc).__name__}: {exc}"
            self._closed(fr)
        self._fail(fr.name, _error_text(fr.name, exc), exc)

    def _fail(self, flow: str, reason: str, exc: BaseException | None = None,
              operation: str | None = None) -> NoReturn:
        for fr in reversed(self._stack):
            if fr.is_gen:
                _close(fr.items)
                self._closed(fr)  # the graph shows what was walked up to here
        self._stack.clear()
        where = NotCounted(flow, reason, operation)
        if exc is not None:
            where.reason += _origin(exc)
        raise DryRunFailure(where)


class _Notes:
    """Takes what the walked flow tells the graph (:func:`specflow.flow.dry.describe_levels`,
    :func:`~specflow.flow.dry.describe_flow`): the flow running is the top of the stack."""

    def __init__(self, walk: DryRun) -> None:
        self.walk = walk

    def _current(self) -> FlowNode | None:
        stack = self.walk._stack
        return self.walk._node(stack[-1] if stack else None)

    def levels(self, operation: str, levels: Sequence[InnerLevel]) -> None:
        node = self._current()
        if node is not None:
            node.add_levels(operation, levels)

    def detail(self, text: str) -> None:
        node = self._current()
        if node is not None:
            node.detail = text


@contextlib.contextmanager
def _no_scope() -> Iterator[None]:
    yield


def _waits_on(target: Any) -> tuple[str, ...]:
    """What a ``Dependency(target)`` waits for, by operation / flow name (empty: all)."""
    if target is None:
        return ()
    if isinstance(target, Task):
        return (target.operation,)
    if isinstance(target, Flow):
        return (f"flow {target.name}",)
    if isinstance(target, (list, tuple)):
        out: list[str] = []
        for t in target:
            for name in _waits_on(t):
                if name not in out:
                    out.append(name)
        return tuple(out) if out else ("nothing",)
    return (type(target).__name__,)


def _error_text(flow: str, exc: BaseException) -> str:
    return f"flow {flow!r} raised {type(exc).__name__}: {exc}"


def _origin(exc: BaseException) -> str:
    """`` (at file:line)`` of the innermost frame that raised ``exc``."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno})"


def _close(gen: Any) -> None:
    try:
        gen.close()
    except BaseException:  # noqa: BLE001 - closing a stopped flow is best effort
        pass


def dry_run(target: Any, *, graph: bool = False) -> DryRunResult:
    """Count the tasks a real run of ``target`` executes, per operation (see the module
    doc); with ``graph``, draw the flow graph too (the result's ``graph``)."""
    return DryRun(graph=graph).run(target)
