"""What the executor records for seeing into a run: argument summaries, the run's and its
stages' values, declared totals, and task output handed to the display."""

from __future__ import annotations

import io
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

import specflow
from specflow.backends.base import Outcome
from specflow.backends.inline import InlineBackend
from specflow.execution import executor as executor_mod
from specflow.execution.checkpoint import Checkpoint
from specflow.execution.progress import Progress, rows
from specflow.flow.core import Flow
from specflow.flow.summary import MAX_SUMMARY, describe_kwargs, summarise
from specflow.volumes.geometry import VolumetricIndex


@specflow.taskable_operation
def plain(i: int, name: str = "x") -> int:
    if i < 0:
        raise ValueError("negative")
    return i


def _named(i: int) -> str:
    return f"item number {i}"


@specflow.taskable_operation(summary=_named)
def described(i: int) -> int:
    return i


def test_summaries_are_short_and_name_what_matters() -> None:
    idx = VolumetricIndex.from_voxels((0, 64, 32), (64, 128, 64), (8, 8, 40))
    assert idx.__specflow_summary__() == (
        "x 0:64 y 64:128 z 32:64 @ 8x8x40 nm = [0:512, 512:1024, 1280:2560] nm")
    text = describe_kwargs({"a": 1, "s": "y" * 500, "arr": np.zeros((3, 4), "uint8"),
                            "idx": idx, "xs": list(range(100)), "d": {"k": 1}})
    assert len(text) <= MAX_SUMMARY
    assert text.startswith("a=1, s='yyy")
    assert "arr=uint8[3, 4]" in text and "idx=x 0:64 y 64:128" in text
    assert summarise(described.make_task(i=3)) == "item number 3"
    assert summarise(plain.make_task(i=3)) == "i=3"


def test_args_are_recorded_for_failures_and_a_sample_and_always_with_a_summariser(
        workdir: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(executor_mod, "SUMMARY_SAMPLE", 5)

    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield [plain.make_task(i=i) for i in range(10)]
        yield [described.make_task(i=i) for i in range(10)]
        yield plain.make_task(i=-1)

    report = specflow.execute(flow(), backend="inline", run_dir=workdir / "r",
                              keep_going=True)
    assert report.status == "failed"
    assert report.failures[0].args == "i=-1"
    with Checkpoint(workdir / "r" / "checkpoint.db") as ck:
        by_op: dict[str, list[Any]] = {}
        for r in ck.task_rows():
            by_op.setdefault(r.operation, []).append((r.status, r.args))
    plain_rows = by_op["plain"]
    assert sum(1 for s, a in plain_rows if s == "done" and a is not None) == 5
    assert ("failed", "i=-1") in plain_rows
    assert sorted(a for _, a in by_op["described"]) == sorted(
        f"item number {i}" for i in range(10))


def test_the_run_value_and_its_stages_are_recorded(workdir: Path) -> None:
    @specflow.flow_schema
    def inner(n: int) -> Generator[Any, Any, int]:
        tasks = [plain.make_task(i=i) for i in range(n)]
        yield tasks
        values = yield specflow.Dependency(tasks)
        return int(sum(values))

    @specflow.flow_schema
    def outer() -> Generator[Any, Any, dict[str, int]]:
        first = plain.make_task(i=7)
        yield first
        sub = inner(4)
        yield sub
        yield specflow.Dependency()
        return {"total": 13}

    report = specflow.execute(outer(), backend="inline", run_dir=workdir / "r")
    assert report.status == "done" and report.result == {"total": 13}
    with Checkpoint(workdir / "r" / "checkpoint.db") as ck:
        flows = ck.flows()
        got = [(f.position, f.name, f.status, ck.value_of(f.value_json) if f.value_json
                else None) for f in flows]
    assert got == [("run", "outer", "done", {"total": 13}), ("stage 1", "plain", "done", 7),
                   ("stage 2", "inner", "done", 6)]


def test_declared_totals_reach_the_report_and_the_progress_rows() -> None:
    @specflow.flow_schema
    def body() -> Generator[Any, Any, None]:
        yield [plain.make_task(i=i) for i in range(6)]

    def gen() -> Generator[Any, Any, None]:
        yield Flow(body.fn, name="declared", expected={"plain": 6})

    report = specflow.execute(Flow(gen, name="root"), backend="inline", checkpoint=False)
    assert report.expected == {"plain": 6}
    (row,) = rows(report, elapsed=2.0)
    assert (row["done"], row["total"], row["percent"], row["eta"]) == (6, 6, 100.0, 0.0)


def test_subchunkable_flows_declare_their_chunks(workdir: Path) -> None:
    from specflow.processing.subchunkable import build_synthetic_volume_flow

    flow = build_synthetic_volume_flow(path=str(workdir / "v.zarr"), size=[64, 32, 16],
                                       chunk_size=[16, 16, 16])
    report = specflow.execute(flow, backend="inline", checkpoint=False)
    assert report.expected == {"subchunkable.process_chunk": 8}
    assert report.counts["subchunkable.process_chunk"]["done"] == 8


class _EchoingBackend(InlineBackend):
    """The inline backend, handing back what its tasks returned as their output lines."""

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []

    def wait(self, timeout: float) -> list[Outcome]:
        out = super().wait(timeout)
        self._lines.extend(f"task said {o.value}" for o in out)
        return out

    def recent_output(self) -> list[str]:
        lines, self._lines = self._lines, []
        return lines


def test_task_output_from_the_backend_is_shown_by_the_display() -> None:
    buf = io.StringIO()
    prog = Progress(console=Console(file=buf, force_terminal=False, width=120))

    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield [plain.make_task(i=i) for i in range(3)]

    from specflow.execution.executor import Executor

    Executor(_EchoingBackend(), progress=prog).run(flow())
    shown = buf.getvalue().splitlines()
    assert sorted(line for line in shown if line.startswith("task said")) == [
        "task said 0", "task said 1", "task said 2"]
