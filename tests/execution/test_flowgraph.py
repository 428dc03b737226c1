"""The flow graph a dry run draws: which flow yielded what, grouped by operation between
waits, sibling flows of one shape merged, its counts those of a real run; its DOT edges
follow the waits."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

import specflow
from specflow.execution.dryrun import dry_run
from specflow.execution.flowgraph import (
    FlowNode,
    TaskGroup,
    Wait,
    level_totals,
    render_dot,
    render_text,
)
from specflow.flow.builtin import concurrent_flow, sequential_flow
from specflow.processing import build_subchunkable_apply_flow
from specflow.run import execute
from specflow.volumes import VolumetricIndex

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "processing"))
from processing_helpers import RES, dst_like, make_volume  # noqa: E402
from test_dryrun import CONFIGS, SHAPE  # noqa: E402


@specflow.taskable_operation(pure=True)
def double(x: int) -> int:
    return 2 * x


@specflow.taskable_operation
def record(x: Any) -> None:
    return None


@specflow.flow_schema
def part(i: int) -> Generator[Any, Any, None]:
    a = double.make_task(x=i)
    yield [a, double.make_task(x=i + 1000)]
    value = yield specflow.Dependency(a)
    yield record.make_task(x=value)
    yield specflow.Dependency()


@specflow.flow_schema
def top(n: int) -> Generator[Any, Any, None]:
    yield [part(i) for i in range(n)]
    yield specflow.Dependency()
    yield record.make_task(x="end")
    yield record.make_task(x="end")  # the same task again: it runs once


@specflow.flow_schema
def ramp(k: int, tag: str = "") -> Generator[Any, Any, None]:
    yield [record.make_task(x=(tag, k, j)) for j in range(k)]


def executed(target: Any) -> dict[str, int]:
    report = execute(target, backend="inline", checkpoint=False)
    assert report.status == "done", [f.error for f in report.failures]
    return {op: c["done"] for op, c in report.counts.items() if c.get("done")}


def shape(node: FlowNode) -> list[Any]:
    out: list[Any] = []
    for item in node.items:
        if isinstance(item, TaskGroup):
            out.append((item.operation, item.count, item.duplicates))
        elif isinstance(item, Wait):
            out.append(("wait", item.on))
        else:
            out.append((item.name, item.instances, shape(item)))
    return out


def test_flows_tasks_and_waits_are_recorded_as_walked() -> None:
    result = dry_run(top(5), graph=True)
    assert result.exact and result.graph is not None
    assert result.counts == executed(top(5)) == {"double": 10, "record": 6}
    g = result.graph
    assert g.counts() == result.counts
    root = g.top()
    assert root.name == "top" and root.tasks == 16
    # the five parts have one shape: one node, five instances, their counts added
    assert shape(root) == [
        ("part", 5, [("double", 10, 0), ("wait", ("double",)), ("record", 5, 0), ("wait", ())]),
        ("wait", ()),
        ("record", 1, 1),
    ]
    assert render_text(g).splitlines() == [
        "top  (16 tasks)",
        "├─ part × 5  (15 tasks)",
        "│  ├─ double × 10",
        "│  ├─ ◇ wait for double",
        "│  ├─ record × 5",
        "│  └─ ◇ wait for all above",
        "├─ ◇ wait for all above",
        "└─ record × 1  (+1 yielded again, run once)",
    ]


def test_sibling_flows_merge_only_between_the_same_waits() -> None:
    target = sequential_flow([concurrent_flow([ramp(k) for k in range(1, 11)]),
                              ramp(3, "b"), ramp(4, "c")])
    result = dry_run(target, graph=True)
    assert result.counts == executed(target) == {"record": 55 + 3 + 4}
    assert result.graph is not None
    assert shape(result.graph.top()) == [
        ("concurrent_flow", 1, [("ramp", 10, [("record", 55, 0)])]), ("wait", ()),
        ("ramp", 1, [("record", 3, 0)]), ("wait", ()),
        ("ramp", 1, [("record", 4, 0)]), ("wait", ()),
    ]


def test_a_wait_for_some_tasks_joins_only_those_in_the_dot_edges() -> None:
    @specflow.flow_schema
    def fork() -> Generator[Any, Any, None]:
        a = double.make_task(x=1)
        yield a
        yield record.make_task(x="side")
        yield specflow.Dependency(a)
        yield record.make_task(x="after")

    result = dry_run(fork(), graph=True)
    assert result.graph is not None
    dot = render_dot(result.graph, "fork")
    label = {m[1]: m[2] for m in re.finditer(r'^\s*(n\d+) \[label="([^"]*)"', dot, re.M)}
    edges = {(label[a], label[b]) for a, b in re.findall(r"^\s*(n\d+) -> (n\d+);", dot, re.M)}
    # the first record is not waited for, so nothing follows it inside the flow
    assert edges == {("double × 1", "wait for double"), ("wait for double", "record × 1")}
    assert sorted(label.values()) == ["double × 1", "record × 1", "record × 1",
                                      "wait for double"]


def counted_copy(src: Any, log: str) -> Any:
    """The input as it is; one line in ``log`` per call (the shape it was called on)."""
    with open(log, "a") as f:
        f.write(" ".join(str(n) for n in src.shape[-3:]) + "\n")
    return src


@pytest.mark.parametrize("name", list(CONFIGS))
def test_subchunkable_levels_are_the_calls_a_real_run_makes(tmp_path: Path, name: str) -> None:
    """Level 0 is the tasks; the lowest level's total is how often the operation is called
    in a real run (each level below the top runs inside the tasks)."""
    src, _ = make_volume(tmp_path / "src")
    kw = dict(CONFIGS[name])
    if not kw.get("skip_intermediaries"):
        kw["level_intermediaries_dirs"] = [str(tmp_path / "tmp")] * len(
            kw["processing_chunk_sizes"])
    log = tmp_path / "calls.txt"
    target = build_subchunkable_apply_flow(
        dst=dst_like(tmp_path / "dst", src), dst_resolution=list(RES),
        fn=functools.partial(counted_copy, log=str(log)), op_kwargs={"src": src},
        bbox=VolumetricIndex.from_voxels((0, 0, 0), SHAPE, RES).bbox, **kw)
    result = dry_run(target, graph=True)
    assert result.exact and result.graph is not None and not log.exists()
    real = executed(target)
    assert result.graph.counts() == result.counts == real
    flow = result.graph.top()
    assert flow.name == "subchunkable_apply_flow" and "counted_copy" in str(flow.detail)
    (group,) = [i for i in flow.items
                if isinstance(i, TaskGroup) and i.operation == "subchunkable.process_chunk"]
    assert group.count == real["subchunkable.process_chunk"]
    levels = level_totals(group)
    assert [lvl.name for lvl, _ in levels] == [
        f"level {i}" for i in range(len(kw["processing_chunk_sizes"]))]
    assert levels[0] == (levels[0][0], group.count) and levels[0][0].per_parent == 1
    calls = log.read_text().split("\n")[:-1]
    assert levels[-1][1] == len(calls)
    # the lowest level's chunks, grown by their pads, are what the operation is called on
    lowest = kw["processing_chunk_sizes"][-1]
    assert "×".join(map(str, lowest)) in levels[-1][0].label
    text = render_text(result.graph)
    for lvl, total in levels:
        assert f"{lvl.name}: {total:,} {lvl.label}" in text


def test_a_flow_that_would_fail_is_marked_where_the_walk_stopped() -> None:
    def broken(n: int) -> Generator[Any, Any, None]:
        raise ValueError(f"no flow for {n}")

    @specflow.flow_schema
    def outer() -> Generator[Any, Any, None]:
        yield record.make_task(x="before")
        yield specflow.Dependency()
        yield specflow.Flow(broken, (3,), name="broken")
        yield record.make_task(x="never")

    result = dry_run(outer(), graph=True)
    assert result.failure is not None and "no flow for 3" in result.failure.reason
    assert result.graph is not None
    assert render_text(result.graph).splitlines() == [
        "outer  (1 task)",
        "├─ record × 1",
        "├─ ◇ wait for all above",
        "└─ broken  (0 tasks)  [counting stopped: would fail: ValueError: no flow for 3]",
        "   └─ (no tasks)",
    ]
