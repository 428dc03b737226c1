from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from user_ops import append, fail, flaky, hold_cpu, square

import specflow
from specflow import Dependency
from specflow.execution.events import Event

BACKENDS = ["inline", "local"]


def lines(p: Path) -> list[str]:
    return p.read_text().splitlines() if p.exists() else []


@pytest.mark.parametrize("backend", BACKENDS)
def test_dependency_hands_back_values_and_orders_stages(workdir: Path, backend: str) -> None:
    out = workdir / "out.txt"

    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        tasks = [square.make_task(x=i) for i in range(10)]
        yield tasks
        values = yield Dependency(tasks)
        yield append.make_task(path=str(out), line=f"sum={sum(values)}")
        one = square.make_task(x=12)
        yield one
        v = yield Dependency(one)
        yield append.make_task(path=str(out), line=f"one={v}")
        yield Dependency()
        yield append.make_task(path=str(out), line="last")

    report = specflow.execute(flow(), backend=backend, workers=2)
    assert report.status == "done"
    got = lines(out)
    # the two appends do not depend on each other (either may land first); "last" waits
    assert sorted(got[:2]) == ["one=144", "sum=285"] and got[2:] == ["last"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_identical_tasks_execute_once(workdir: Path, backend: str) -> None:
    out = workdir / "out.txt"

    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        t = append.make_task(path=str(out), line="once", delay=0.05)
        yield t
        yield append.make_task(path=str(out), line="once", delay=0.05)
        yield Dependency()
        yield append.make_task(path=str(out), line="once", delay=0.05)

    report = specflow.execute(flow(), backend=backend, workers=2)
    assert report.status == "done"
    assert lines(out) == ["once"]
    assert report.duplicates == 2


def test_sequential_and_concurrent_flows_from_a_spec(workdir: Path) -> None:
    out = str(workdir / "o.txt")
    spec = {"@type": "sequential_flow", "stages": [
        {"@type": "concurrent_flow", "stages": [
            {"@type": "test.append", "path": out, "line": "a", "delay": 0.1},
            {"@type": "test.append", "path": out, "line": "b"}]},
        {"@type": "test.append", "path": out, "line": "c"},
    ]}
    report = specflow.execute(specflow.build(spec), backend="local", workers=2)
    assert report.status == "done"
    # the concurrent stage's two tasks in either order, the sequential stage after both
    got = lines(Path(out))
    assert sorted(got[:2]) == ["a", "b"] and got[2:] == ["c"]
    spec = {"@type": "sequential_flow", "stages": [
        {"@type": "test.append_many", "path": out, "n": 3},
        {"@type": "echo", "message": "after"},
    ]}
    report = specflow.execute(specflow.build(spec), backend="inline")
    assert report.status == "done"
    assert lines(Path(out))[3:] == ["t0", "t1", "t2"]
    assert report.counts["echo"]["done"] == 1


def test_transient_errors_retry_with_backoff_then_succeed(workdir: Path) -> None:
    counter = workdir / "count"
    events: list[Event] = []
    t0 = time.monotonic()
    report = specflow.execute(
        flaky.make_task(counter=str(counter), failures=2), backend="inline",
        retry_backoff=0.05, listeners=[events.append],
    )
    elapsed = time.monotonic() - t0
    assert report.status == "done"
    assert counter.read_text() == "3"
    kinds = [e.kind for e in events]
    assert kinds.count("task_retried") == 2
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert "task_succeeded" in kinds
    assert elapsed >= 0.05 + 0.1  # backoff 0.05 then 0.1 actually waited


def test_transient_errors_stop_at_max_attempts(workdir: Path) -> None:
    counter = workdir / "count"
    report = specflow.execute(flaky.make_task(counter=str(counter), failures=10),
                              backend="inline", retry_backoff=0.01)
    assert report.status == "failed" and report.exit_code == 1
    assert counter.read_text() == "4"  # the operation allows 4 attempts
    assert report.failures[0].attempts == 4
    assert "ConnectionError: try again" in report.failures[0].error


def test_non_transient_error_fails_fast_with_traceback(workdir: Path) -> None:
    out = workdir / "o.txt"

    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield fail.make_task(message="bad input")
        yield Dependency()
        yield append.make_task(path=str(out), line="never")

    report = specflow.execute(flow(), backend="inline")
    assert report.status == "failed"
    f = report.failures[0]
    assert f.attempts == 1 and f.error == "ValueError: bad input"
    assert "raise ValueError(message)" in (f.traceback or "")
    assert not out.exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_going_skips_only_dependents(workdir: Path, backend: str) -> None:
    out = workdir / "o.txt"

    @specflow.flow_schema
    def broken_branch() -> Generator[Any, Any, None]:
        yield fail.make_task(message="x")
        yield Dependency()
        yield append.make_task(path=str(out), line="dependent")

    @specflow.flow_schema
    def healthy_branch() -> Generator[Any, Any, None]:
        yield append.make_task(path=str(out), line="h1", delay=0.05)
        yield Dependency()
        yield append.make_task(path=str(out), line="h2")

    @specflow.flow_schema
    def root() -> Generator[Any, Any, None]:
        yield [broken_branch(), healthy_branch()]

    report = specflow.execute(root(), backend=backend, keep_going=True, workers=2)
    assert report.status == "failed" and report.exit_code == 1
    assert sorted(lines(out)) == ["h1", "h2"]
    assert report.skipped_flows == ["broken_branch"]


def test_priorities_order_ready_tasks(workdir: Path) -> None:
    out = workdir / "o.txt"
    low = append.with_options(priority=0)
    high = append.with_options(priority=10)

    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield [low.make_task(path=str(out), line=f"low{i}") for i in range(3)]
        yield high.make_task(path=str(out), line="high")

    specflow.execute(flow(), backend="inline")
    assert lines(out)[0] == "high"


@pytest.mark.parametrize("backend", BACKENDS)
def test_runtime_limit_stops_a_slow_task(workdir: Path, backend: str) -> None:
    slow = append.with_options(runtime_limit_sec=0.2)
    t0 = time.monotonic()
    report = specflow.execute(slow.make_task(path=str(workdir / "o"), line="x", delay=5),
                              backend=backend, workers=1)
    assert time.monotonic() - t0 < 4.5
    assert report.status == "failed"
    assert "TaskTimeoutError" in report.failures[0].error


def test_dead_worker_fails_its_task_naming_the_exit_status(workdir: Path) -> None:
    from user_ops import die_once

    marker = workdir / "marker"
    report = specflow.execute(die_once.make_task(marker=str(marker)), backend="local", workers=2)
    assert report.status == "failed"
    assert marker.read_text() == "died"
    assert "worker exited with status 17 while running this task" in report.failures[0].error


def test_dead_worker_is_replaced_and_a_transient_death_retried(workdir: Path) -> None:
    from user_ops import die_once

    marker = workdir / "marker"
    report = specflow.execute(die_once.make_task(marker=str(marker)), backend="local", workers=2,
                              transient_errors=["WorkerDied"])
    assert report.status == "done"
    assert marker.read_text() == "died"
    assert report.counts["test.die_once"]["retried"] >= 1


def test_semaphores_bound_concurrency_across_workers(workdir: Path) -> None:
    log = workdir / "spans"

    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield [hold_cpu.make_task(log=str(log), i=i, seconds=0.05) for i in range(8)]

    report = specflow.execute(flow(), backend="local", workers=2, semaphores={"cpu": 1})
    assert report.status == "done"
    spans = sorted(tuple(map(float, s.split())) for s in lines(log))
    assert len(spans) == 8
    for (_s0, e0), (s1, _) in zip(spans, spans[1:], strict=False):
        assert s1 >= e0 - 1e-4, "two holders of a 1-slot semaphore overlapped"


def test_flow_expansion_is_lazy(workdir: Path) -> None:
    yielded = [0]
    max_ahead = [0]

    @specflow.taskable_operation
    def observe(i: int) -> None:
        max_ahead[0] = max(max_ahead[0], yielded[0] - i)

    @specflow.flow_schema
    def big() -> Generator[Any, Any, None]:
        for i in range(20000):
            yielded[0] += 1
            yield observe.make_task(i=i)

    report = specflow.execute(big(), backend="inline", checkpoint=False)
    assert report.total("done") == 20000
    assert max_ahead[0] <= 4096, f"the executor pulled {max_ahead[0]} tasks ahead"


def test_flow_errors_are_reported_not_raised(workdir: Path) -> None:
    @specflow.flow_schema
    def bad() -> Generator[Any, Any, None]:
        yield 42

    report = specflow.execute(bad(), backend="inline")
    assert report.status == "failed"
    assert "yielded int" in report.failures[0].error


def test_listener_that_raises_does_not_break_the_run(workdir: Path) -> None:
    def broken(e: Event) -> None:
        raise RuntimeError("listener bug")

    report = specflow.execute(square.make_task(x=2), backend="inline", listeners=[broken])
    assert report.status == "done"


def test_local_workers_are_other_processes(workdir: Path) -> None:
    from specflow.flow.ops import system_info

    report = specflow.execute([system_info()], backend="local", workers=2)
    assert report.status == "done"
    from specflow.execution.checkpoint import Checkpoint

    (ck,) = list(Path(".specflow/runs").glob("*/checkpoint.db"))
    with Checkpoint(ck) as c:
        (row,) = list(c.task_rows("done"))
    assert row.worker and not row.worker.endswith(f":{os.getpid()}")


@pytest.mark.parametrize("keep_going", [False, True])
def test_exception_raised_by_a_flow_is_the_reported_failure(workdir: Path,
                                                           keep_going: bool) -> None:
    @specflow.flow_schema
    def bad() -> Generator[Any, Any, None]:
        yield square.make_task(x=1)
        yield Dependency()
        raise ValueError("config wrong: use a chunk size of 64")

    @specflow.flow_schema
    def root() -> Generator[Any, Any, None]:
        yield bad()
        yield Dependency()
        yield square.make_task(x=2)

    report = specflow.execute(root(), backend="inline", keep_going=keep_going)
    assert report.status == "failed"
    assert [f.error for f in report.failures] == [
        "ValueError: config wrong: use a chunk size of 64"
    ]
    assert "raise ValueError" in (report.failures[0].traceback or "")
    assert report.counts["test.square"]["done"] == 1


def test_local_backend_works_after_the_driver_used_tensorstore(workdir: Path) -> None:
    """Workers come from a fork server: a driver with tensorstore's threads running can
    still start them (forking such a process directly aborts)."""
    import subprocess
    import sys

    from support import TESTS

    script = workdir / "driver.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "import numpy as np, tensorstore as ts, specflow\n"
        "from user_ops import square\n"
        "if __name__ == '__main__':\n"
        "    t = ts.open({'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': 'a.zarr'}},\n"
        "                create=True, dtype=ts.float32, shape=[8]).result()\n"
        "    t.write(np.ones(8, np.float32)).result()\n"
        "    r = specflow.execute([square.make_task(x=i) for i in range(20)], backend='local',\n"
        "                         workers=2, checkpoint=False)\n"
        "    print(r.status, r.total('done'))\n"
    )
    out = subprocess.run([sys.executable, str(script)], cwd=workdir, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.split() == ["done", "20"], out.stderr


def test_waiting_on_a_task_never_yielded_is_the_flows_failure(workdir: Path) -> None:
    @specflow.flow_schema
    def confused() -> Generator[Any, Any, None]:
        yield Dependency(square.make_task(x=99))

    report = specflow.execute(confused(), backend="inline")
    assert report.status == "failed"
    assert report.failures[0].error.startswith("FlowError: flow 'confused' waits on a task")


def test_repeat_makes_distinct_copies_of_any_task(workdir: Path) -> None:
    out = workdir / "o.txt"
    spec = {"@type": "specflow.repeat", "count": 4,
            "task": {"@type": "test.append", "path": str(out), "line": "same"}}
    copies = specflow.build(spec)
    assert len({t.id for t in copies}) == 4
    assert [t.id for t in copies] == [t.id for t in specflow.build(spec)]
    report = specflow.execute(copies, backend="inline")
    assert report.status == "done"
    assert lines(out) == ["same"] * 4
