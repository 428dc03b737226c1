"""The inline backend: task output captured per task, task mishaps stay in their task."""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from support import TESTS

import specflow
from specflow.backends.base import BackendContext, DriverInterrupt, Outcome, run_task
from specflow.backends.inline import InlineBackend
from specflow.flow.task import Task

sys.path.insert(0, str(TESTS))
import backend_ops  # noqa: E402


def _run(backend: InlineBackend, tasks: list[Task]) -> list[Outcome]:
    backend.submit(tasks)
    out: list[Outcome] = []
    while backend.in_flight():
        out.extend(backend.wait(0))
    return out


def test_each_task_output_lands_in_the_log_between_marks(workdir: Path) -> None:
    before = os.fstat(1), os.fstat(2)
    backend = InlineBackend()
    backend.start(BackendContext(run_dir=workdir, run_id="t"))
    try:
        tasks = [backend_ops.chatty.make_task(word=w) for w in ("one", "two")]
        tasks.insert(1, backend_ops.square.make_task(x=3))  # prints nothing
        out = _run(backend, tasks)
        assert [o.ok for o in out] == [True, True, True]
        log = workdir / "logs" / "inline.log"
        assert {o.log_path for o in out} == {str(log)}
        lines = log.read_text().splitlines()
        assert lines[0] == f"==> task {tasks[0].id} (bt.chatty)"
        assert set(lines[1:5]) == {"print one", "stderr one", "fd1 one", "child one"}
        assert lines[5].startswith(f"==> task {tasks[0].id} (bt.chatty) done in ")
        # a silent task leaves only its opening mark
        assert lines[6] == f"==> task {tasks[1].id} (bt.square)"
        assert lines[7] == f"==> task {tasks[2].id} (bt.chatty)"
        assert set(lines[8:12]) == {"print two", "stderr two", "fd1 two", "child two"}
        recent = backend.recent_output()
        assert {"print one", "child two", "fd1 two"} <= set(recent)
        assert not any(line.startswith("==>") for line in recent)
        assert backend.recent_output() == []
        stream = backend.console_stream()
        assert stream is not None and os.path.samestat(os.fstat(stream.fileno()), before[1])
    finally:
        backend.close()
    # the driver's own descriptors are back where they were
    after = os.fstat(1), os.fstat(2)
    assert all(os.path.samestat(a, b) for a, b in zip(before, after, strict=True))


def test_a_failure_is_marked_in_the_log(workdir: Path) -> None:
    backend = InlineBackend()
    backend.start(BackendContext(run_dir=workdir, run_id="t"))
    try:
        task = backend_ops.exit_with.make_task(code=4)
        (out,) = _run(backend, [task])
    finally:
        backend.close()
    assert not out.ok and out.error == "SystemExit: 4"
    text = (workdir / "logs" / "inline.log").read_text()
    assert f"==> task {task.id} (bt.exit) failed: SystemExit: 4" in text


def test_a_keyboard_interrupt_raised_by_a_task_fails_that_task(workdir: Path) -> None:
    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield [backend_ops.interrupt.make_task(), backend_ops.square.make_task(x=2)]

    report = specflow.execute(flow(), backend="inline", keep_going=True)
    assert report.status == "failed"
    assert [f.error for f in report.failures] == ["KeyboardInterrupt"]
    assert report.counts["bt.square"]["done"] == 1


def test_a_driver_interrupt_is_not_a_task_failure() -> None:
    def stop() -> None:
        raise DriverInterrupt

    with pytest.raises(DriverInterrupt):
        run_task(Task(fn=stop, kwargs={}, id="x", operation="stop"))


def test_without_capture_nothing_is_redirected(workdir: Path) -> None:
    backend = InlineBackend(capture=False)
    backend.start(BackendContext(run_dir=workdir, run_id="t"))
    try:
        (out,) = _run(backend, [backend_ops.square.make_task(x=5)])
    finally:
        backend.close()
    assert out.ok and out.value == 25 and out.log_path is None
    assert not (workdir / "logs").exists()
    assert backend.console_stream() is None


def test_outcomes_finished_before_an_interrupt_are_kept(workdir: Path) -> None:
    def stop() -> None:
        raise DriverInterrupt

    backend = InlineBackend()
    backend.start(BackendContext(run_dir=workdir, run_id="t"))
    try:
        backend.submit([backend_ops.square.make_task(x=2), backend_ops.square.make_task(x=3),
                        Task(fn=stop, kwargs={}, id="stop", operation="stop"),
                        backend_ops.square.make_task(x=4)])
        # each outcome comes back as its task ends, before the next task starts
        assert [o.value for o in backend.wait(0)] == [4]
        assert [o.value for o in backend.wait(0)] == [9]
        with pytest.raises(DriverInterrupt):
            backend.wait(0)
        backend.cancel()
        assert backend.wait(0) == [] and backend.finished() == []
        assert backend.in_flight() == 0
    finally:
        backend.close()
