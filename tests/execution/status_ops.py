"""Operations for the task-status tests (imported with ``-i``)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import specflow


@specflow.register("st.blocked")
@specflow.taskable_operation
def blocked(gate: str, started: str, i: int) -> int:
    """Note that task ``i`` started (a file ``<started>.<i>``), then wait for ``gate``."""
    Path(f"{started}.{i}").write_text(str(os.getpid()))
    while not os.path.exists(gate):
        time.sleep(0.01)
    return i


@specflow.register("st.blocked_many")
@specflow.flow_schema
def blocked_many(gate: str, started: str, n: int) -> Generator[Any, Any, None]:
    yield [blocked.make_task(gate=gate, started=started, i=i) for i in range(n)]


def _never(started: str) -> None:
    Path(started).write_text("started")
    while True:  # only its runtime limit ends it
        time.sleep(0.05)


_never_op = specflow.taskable_operation(_never, operation_name="st.never",
                                        runtime_limit_sec=1.0)


@specflow.register("st.never")
def never(started: str) -> specflow.Task:
    """A task that never ends by itself: its 1 s runtime limit ends it."""
    return _never_op.make_task(started=started)


def _boom() -> None:
    raise ValueError("planned failure")


_boom_op = specflow.taskable_operation(_boom, operation_name="st.boom")


@specflow.flow_schema
def _fail_then_more(n: int) -> Generator[Any, Any, None]:
    yield _boom_op.make_task()
    yield specflow.Dependency()
    for i in range(n):
        yield blocked.make_task(gate="/nonexistent", started="/nonexistent", i=i)


def _write(out: str) -> str:
    Path(out).write_text("written")
    return out


_write_op = specflow.taskable_operation(_write, operation_name="st.write")


@specflow.register("st.write")
def write(out: str) -> specflow.Task:
    """A task that writes a file."""
    return _write_op.make_task(out=out)


@specflow.register("st.failing_branch")
@specflow.flow_schema
def failing_branch(out: str) -> Generator[Any, Any, None]:
    """A flow whose first stage fails (so the rest is skipped) next to one that succeeds."""
    yield [_fail_then_more(2), _write_op.make_task(out=out)]


def _where(out: str) -> dict[str, str]:
    env = {k: os.environ.get(k, "") for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID",
                                              "SLURM_ARRAY_TASK_ID", "SLURM_CPUS_PER_TASK",
                                              "SLURM_JOB_PARTITION")}
    Path(out).write_text(json.dumps(env))
    return env


_where_op = specflow.taskable_operation(_where, operation_name="st.where")


@specflow.register("st.where")
def where(out: str) -> specflow.Task:
    """A task that writes the SLURM job it ran in (its id, CPUs, partition) to ``out``."""
    return _where_op.make_task(out=out)
