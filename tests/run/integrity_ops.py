"""Operations and flows for the run-integrity tests (imported with ``-i``)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

import specflow


def wait_for(path: str, timeout: float = 300.0) -> None:
    """Block until ``path`` exists (a gate the test opens)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} never opened")
        time.sleep(0.01)


@specflow.register("it.gated")
@specflow.taskable_operation
def gated(gate: str, out: str, i: int = 0) -> int:
    """Append ``i`` to ``out``; tasks with ``i`` >= 1 first wait for ``gate``."""
    if i >= 1:
        wait_for(gate)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)
    return i


@specflow.register("it.gated_many")
@specflow.flow_schema
def gated_many(gate: str, out: str, n: int = 4) -> Generator[Any, Any, None]:
    for i in range(n):
        yield gated.make_task(gate=gate, out=out, i=i)


def rich_value(n: int) -> Any:
    return {
        "tuple": (1, "a", (2.5, None)),
        1: "int key",
        (2, 3): "tuple key",
        "set": {1, 2, 3},
        "frozen": frozenset({"x"}),
        "bytes": b"\x00\x01binary",
        "array": np.arange(12, dtype=np.int16).reshape(3, 4),
        "scalar": np.float32(1.5),
        "big": list(range(n)),
        "nan": float("inf"),
    }


@specflow.register("it.make_value")
@specflow.taskable_operation
def make_value(n: int = 5000) -> Any:
    return rich_value(n)


class Opaque:
    def __init__(self, x: int) -> None:
        self.x = x


@specflow.register("it.make_opaque")
@specflow.taskable_operation
def make_opaque() -> Any:
    return Opaque(3)


@specflow.register("it.write_repr")
@specflow.taskable_operation
def write_repr(value: Any, out: str, block: str = "") -> None:
    """Write ``repr(value)`` to ``out``; fails while the file ``block`` exists."""
    if block and os.path.exists(block):
        raise RuntimeError("blocked")
    if isinstance(value, dict) and "array" in value:
        value = {**value, "array": (value["array"].dtype.str, value["array"].tolist())}
    Path(out).write_text(repr(value))


@specflow.register("it.consume")
@specflow.flow_schema
def consume(out: str, block: str = "", opaque: bool = False) -> Generator[Any, Any, None]:
    t = make_opaque.make_task() if opaque else make_value.make_task()
    yield t
    value = yield specflow.Dependency(t)
    yield write_repr.make_task(value=value, out=out, block=block)


@specflow.register("it.saw_record")
@specflow.taskable_operation
def saw_record(checkpoint: str, task_op: str, out: str) -> bool:
    """Whether the checkpoint already has a done row of ``task_op`` (read from outside)."""
    con = sqlite3.connect(f"file:{checkpoint}?mode=ro", uri=True)
    try:
        n = con.execute("SELECT COUNT(*) FROM tasks WHERE operation = ? AND status = 'done'",
                        (task_op,)).fetchone()[0]
    finally:
        con.close()
    Path(out).write_text(str(n))
    return bool(n)


@specflow.register("it.write_then_check")
@specflow.flow_schema
def write_then_check(checkpoint: str, out: str, marker: str) -> Generator[Any, Any, None]:
    yield gated.make_task(gate=marker, out=marker + ".data", i=0)
    yield specflow.Dependency()
    yield saw_record.make_task(checkpoint=checkpoint, task_op="it.gated", out=out)


@specflow.register("it.relative_write")
@specflow.taskable_operation
def relative_write(name: str, gate: str = "", i: int = 0) -> str:
    if gate and i >= 1:
        wait_for(gate)
    Path(name).write_text("written")
    return str(Path(name).resolve())


@specflow.register("it.relative_many")
@specflow.flow_schema
def relative_many(gate: str, n: int = 3) -> Generator[Any, Any, None]:
    for i in range(n):
        yield relative_write.make_task(name=f"out-{i}.txt", gate=gate, i=i)
