"""The flow graph a dry run draws (``specflow run --dry-run --graph``).

While a dry run walks the flows, it records which flow yielded which sub-flows and tasks,
and where a flow waited (a ``Dependency``). Tasks are grouped by operation between two
waits, so a flow that yields 4,096 chunks is one line, "process_chunk × 4,096", never a node
per task; sibling sub-flows of one shape between two waits are merged the same way
("repeat × 16"), their counts added. Memory holds the shapes of the flows, not the tasks.

The graph is printed as a text tree, as Graphviz DOT, or as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from specflow.flow.dry import InnerLevel


@dataclass
class TaskGroup:
    """The distinct tasks of one operation a flow yielded between two waits."""

    operation: str
    count: int = 0
    duplicates: int = 0  # yielded again (by id): they run once
    levels: tuple[InnerLevel, ...] = ()

    def signature(self) -> Any:
        return ("t", self.operation, self.levels)


@dataclass
class Wait:
    """A ``Dependency``: the flow waits for everything it yielded before (``on`` empty) or
    for the tasks of the operations / the flows ``on`` names."""

    on: tuple[str, ...] = ()

    def signature(self) -> Any:
        return ("w", self.on)

    @property
    def text(self) -> str:
        return "wait for all above" if not self.on else "wait for " + ", ".join(self.on)


@dataclass
class FlowNode:
    """One flow (or ``instances`` sibling flows of one shape, merged)."""

    name: str
    instances: int = 1
    detail: str | None = None
    stopped: str | None = None  # why counting stopped in this flow
    items: list[Any] = field(default_factory=list)
    parent: FlowNode | None = field(default=None, repr=False, compare=False)
    # the items since the last wait, by shape (for grouping); None once the flow is closed
    _segment: dict[Any, Any] | None = field(default_factory=dict, repr=False, compare=False)
    # levels told for the next tasks of an operation, not yielded yet
    _levels: dict[str, tuple[InnerLevel, ...]] = field(default_factory=dict, repr=False,
                                                       compare=False)

    # -- recording -----------------------------------------------------------------------
    def _group(self, operation: str) -> TaskGroup:
        seg = self._segment
        assert seg is not None, f"flow {self.name} is closed"
        key = ("t", operation)
        group = seg.get(key)
        if group is None:
            group = seg[key] = TaskGroup(operation, levels=self._levels.pop(operation, ()))
            self.items.append(group)
        return group

    def add_task(self, operation: str) -> None:
        self._group(operation).count += 1

    def add_duplicate(self, operation: str) -> None:
        self._group(operation).duplicates += 1

    def add_levels(self, operation: str, levels: Sequence[InnerLevel]) -> None:
        """The levels inside each task of ``operation`` this flow yields next."""
        seg = self._segment
        group = seg.get(("t", operation)) if seg is not None else None
        if group is not None and not group.levels:
            group.levels = tuple(levels)
        else:
            self._levels[operation] = tuple(levels)

    def add_wait(self, on: tuple[str, ...]) -> None:
        if self.items and self._segment == {} and isinstance(self.items[-1], Wait) \
                and self.items[-1].on == on:
            return  # the same wait again, with nothing yielded in between
        self.items.append(Wait(on))
        self._segment = {}

    def add_flow(self, child: FlowNode) -> None:
        """Take a finished sub-flow: merged into an earlier sibling of the same shape since
        the last wait, or appended."""
        seg = self._segment
        assert seg is not None, f"flow {self.name} is closed"
        key = child.signature()
        earlier = seg.get(key)
        if earlier is None:
            seg[key] = child
            self.items.append(child)
        else:
            earlier.merge(child)
        child.parent = None

    def close(self) -> None:
        self._segment = None
        self._levels = {}

    # -- shape ---------------------------------------------------------------------------
    def signature(self) -> Any:
        return ("f", self.name, self.stopped is not None,
                tuple(i.signature() for i in self.items))

    def merge(self, other: FlowNode) -> None:
        """Add ``other`` (of the same shape) to this node."""
        self.instances += other.instances
        if self.detail != other.detail:
            self.detail = None
        for mine, theirs in zip(self.items, other.items, strict=True):
            if isinstance(mine, TaskGroup):
                mine.count += theirs.count
                mine.duplicates += theirs.duplicates
            elif isinstance(mine, FlowNode):
                mine.merge(theirs)

    @property
    def tasks(self) -> int:
        """Distinct tasks in this flow and its sub-flows (all instances)."""
        return sum(i.count if isinstance(i, TaskGroup) else i.tasks
                   for i in self.items if not isinstance(i, Wait))

    def operations(self) -> Iterator[TaskGroup]:
        for i in self.items:
            if isinstance(i, TaskGroup):
                yield i
            elif isinstance(i, FlowNode):
                yield from i.operations()


@dataclass
class FlowGraph:
    """The graph of one dry run: ``root`` holds the target's flow(s)."""

    root: FlowNode = field(default_factory=lambda: FlowNode("target"))

    def top(self) -> FlowNode:
        """The target's flow when the target is one flow; else the root."""
        items = self.root.items
        if len(items) == 1 and isinstance(items[0], FlowNode):
            return items[0]
        return self.root

    def counts(self) -> dict[str, int]:
        """Tasks per operation (what the dry run's counts say)."""
        out: dict[str, int] = {}
        for g in self.root.operations():
            out[g.operation] = out.get(g.operation, 0) + g.count
        return {op: n for op, n in out.items() if n}


# -- text ----------------------------------------------------------------------------------
def _n(k: int) -> str:
    return f"{k:,}"


def _tasks(k: int) -> str:
    return f"{k:,} task" + ("" if k == 1 else "s")


def _flow_line(node: FlowNode) -> str:
    many = f" × {_n(node.instances)}" if node.instances > 1 else ""
    text = f"{node.name}{many}  ({_tasks(node.tasks)})"
    if node.detail:
        text += f"  {node.detail}"
    if node.stopped:
        text += f"  [counting stopped: {node.stopped}]"
    return text


def _group_line(group: TaskGroup) -> str:
    text = f"{group.operation} × {_n(group.count)}"
    if group.duplicates:
        text += f"  (+{_n(group.duplicates)} yielded again, run once)"
    return text


def level_totals(group: TaskGroup) -> list[tuple[InnerLevel, int]]:
    """Each inner level of ``group`` with its count over all the group's tasks."""
    out = []
    total = group.count
    for lvl in group.levels:
        total *= lvl.per_parent
        out.append((lvl, total))
    return out


def _level_line(group: TaskGroup, i: int, lvl: InnerLevel, total: int) -> str:
    if i == 0:
        per = "one per task" if lvl.per_parent == 1 else f"{_n(lvl.per_parent)} per task"
    else:
        per = f"{_n(lvl.per_parent)} in each {group.levels[i - 1].name} chunk, inside the tasks"
    return f"{lvl.name}: {_n(total)} {lvl.label}  ({per})"


def render_text(graph: FlowGraph) -> str:
    """The graph as an indented tree (one line per flow, task group, wait and inner level)."""
    lines: list[str] = []
    top = graph.top()
    lines.append(_flow_line(top))
    _text_items(top, "", lines)
    return "\n".join(lines) + "\n"


def _text_items(node: FlowNode, prefix: str, lines: list[str]) -> None:
    items = node.items
    for k, item in enumerate(items):
        last = k == len(items) - 1
        branch, more = ("└─ ", "   ") if last else ("├─ ", "│  ")
        if isinstance(item, FlowNode):
            lines.append(prefix + branch + _flow_line(item))
            _text_items(item, prefix + more, lines)
        elif isinstance(item, Wait):
            lines.append(prefix + branch + "◇ " + item.text)
        else:
            lines.append(prefix + branch + _group_line(item))
            levels = level_totals(item)
            for i, (lvl, total) in enumerate(levels):
                end = "└╌ " if i == len(levels) - 1 else "├╌ "
                lines.append(prefix + more + end + _level_line(item, i, lvl, total))
    if not items:
        lines.append(prefix + "└─ (no tasks)")


# -- JSON ----------------------------------------------------------------------------------
def as_json(graph: FlowGraph) -> dict[str, Any]:
    return _json_flow(graph.top())


def _json_flow(node: FlowNode) -> dict[str, Any]:
    out: dict[str, Any] = {"flow": node.name, "instances": node.instances,
                           "tasks": node.tasks, "items": []}
    if node.detail:
        out["detail"] = node.detail
    if node.stopped:
        out["stopped"] = node.stopped
    for item in node.items:
        if isinstance(item, FlowNode):
            out["items"].append(_json_flow(item))
        elif isinstance(item, Wait):
            out["items"].append({"wait": list(item.on)})
        else:
            g: dict[str, Any] = {"operation": item.operation, "tasks": item.count}
            if item.duplicates:
                g["duplicates"] = item.duplicates
            if item.levels:
                g["levels"] = [{"name": lvl.name, "label": lvl.label,
                                "per_parent": lvl.per_parent, "total": total}
                               for lvl, total in level_totals(item)]
            out["items"].append(g)
    return out


def render_json(graph: FlowGraph, extra: dict[str, Any] | None = None) -> str:
    return json.dumps({**(extra or {}), "graph": as_json(graph)}, indent=2) + "\n"


# -- DOT -----------------------------------------------------------------------------------
def _q(text: str) -> str:
    """A DOT double-quoted string (``\\n`` stays a line break of the label)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _Dot:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.edges: list[tuple[str, str]] = []
        self.n = 0
        self.clusters = 0

    def node(self, indent: str, label: str, attrs: str) -> str:
        name = f"n{self.n}"
        self.n += 1
        self.lines.append(f"{indent}{name} [label={_q(label)}{attrs}];")
        return name

    def flow(self, node: FlowNode, indent: str) -> tuple[list[str], list[str]]:
        """Draw ``node`` as a cluster; its entry and exit nodes."""
        k = self.clusters
        self.clusters += 1
        self.lines.append(f"{indent}subgraph cluster_{k} {{")
        inner = indent + "  "
        label = _flow_line(node).replace("  ", " ")
        self.lines.append(f"{inner}label={_q(label)};")
        self.lines.append(f'{inner}style="rounded"; color="#7a8696";')
        entries: list[str] = []
        open_: list[tuple[str, frozenset[str]]] = []  # exits not yet waited for
        after: list[str] | None = None  # what the next items follow (the last wait)
        for item in node.items:
            if isinstance(item, Wait):
                w = self.node(inner, item.text, ', shape=diamond, style=filled, '
                              'fillcolor="#f3e7c4", fontsize=10')
                if item.on:
                    joined = [(x, ops) for x, ops in open_ if ops & set(item.on)] or open_
                else:
                    joined = open_
                if not joined:
                    if after is None:
                        entries.append(w)
                    for a in after or ():
                        self.edges.append((a, w))
                for x, _ in joined:
                    self.edges.append((x, w))
                open_ = [o for o in open_ if o not in joined]
                after = [w]
                continue
            if isinstance(item, FlowNode):
                ins, outs = self.flow(item, inner)
                ops = frozenset(g.operation for g in item.operations()) | {f"flow {item.name}"}
            else:
                label = _group_line(item)
                for i, (lvl, total) in enumerate(level_totals(item)):
                    label += "\n" + _level_line(item, i, lvl, total)
                x = self.node(inner, label, ', shape=box, style="rounded,filled", '
                              'fillcolor="#dde8f8"')
                ins, outs = [x], [x]
                ops = frozenset({item.operation})
            if after is None:
                entries.extend(ins)
            else:
                self.edges.extend((a, i) for a in after for i in ins)
            open_.extend((o, ops) for o in outs)
        if not node.items:
            x = self.node(inner, "(no tasks)", ", shape=plaintext")
            entries, open_ = [x], [(x, frozenset())]
        self.lines.append(f"{indent}}}")
        exits = [x for x, _ in open_] or list(after or entries)
        return entries, exits


def render_dot(graph: FlowGraph, title: str = "flow") -> str:
    """The graph in Graphviz DOT: a cluster per flow, a box per task group, a diamond per
    wait, edges in the order the run follows."""
    d = _Dot()
    d.lines.append("digraph specflow {")
    d.lines.append(f"  label={_q(title)}; labelloc=t; rankdir=TB; compound=true;")
    d.lines.append('  node [fontname="Helvetica", fontsize=11]; graph [fontname="Helvetica"];')
    d.flow(graph.top(), "  ")
    for a, b in d.edges:
        d.lines.append(f"  {a} -> {b};")
    d.lines.append("}")
    return "\n".join(d.lines) + "\n"
