"""Operations and flows used by the tests (imported with ``-i`` in CLI tests)."""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import specflow
from specflow.resources import semaphore


@specflow.register("test.append")
@specflow.taskable_operation
def append(path: str, line: str, delay: float = 0.0) -> str:
    """Append ``line`` to ``path`` (one atomic write) after ``delay`` seconds."""
    if delay:
        time.sleep(delay)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return line


@specflow.register("test.append_many")
@specflow.flow_schema
def append_many(path: str, n: int, delay: float = 0.0) -> Generator[Any, Any, None]:
    for i in range(n):
        yield append.make_task(path=path, line=f"t{i}", delay=delay)


@specflow.register("test.fail")
@specflow.taskable_operation
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@specflow.register("test.flaky")
@specflow.taskable_operation(transient=[("ConnectionError", "try again")], max_attempts=4)
def flaky(counter: str, failures: int) -> int:
    """Fails with a transient error ``failures`` times (counted in a file), then succeeds."""
    p = Path(counter)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < failures:
        raise ConnectionError(f"try again (attempt {n + 1})")
    return n + 1


@specflow.register("test.die_once")
@specflow.taskable_operation
def die_once(marker: str) -> str:
    """Kills its worker process the first time it runs."""
    p = Path(marker)
    if not p.exists():
        p.write_text("died")
        os._exit(17)
    return "survived"


@specflow.register("test.hold_cpu")
@specflow.taskable_operation
def hold_cpu(log: str, i: int, seconds: float = 0.05) -> None:
    with semaphore("cpu"):
        start = time.time()
        time.sleep(seconds)
        end = time.time()
    append(log, f"{start:.6f} {end:.6f}")


@specflow.register("test.square")
@specflow.taskable_operation
def square(x: int) -> int:
    return x * x


@specflow.register("test.sum_of_squares")
@specflow.flow_schema
def sum_of_squares(n: int, out: str) -> Generator[Any, Any, None]:
    tasks = [square.make_task(x=i) for i in range(n)]
    yield tasks
    values = yield specflow.Dependency(tasks)
    yield append.make_task(path=out, line=str(sum(values)))


@specflow.register("test.total_of_squares")
@specflow.flow_schema
def total_of_squares(n: int) -> Generator[Any, Any, int]:
    """Returns the sum of the squares below ``n`` (the flow's own value)."""
    tasks = [square.make_task(x=i) for i in range(n)]
    yield tasks
    values = yield specflow.Dependency(tasks)
    return int(sum(values))


@specflow.register("test.wait_for")
@specflow.taskable_operation
def wait_for(gate: str, started: str) -> str:
    """Writes ``started``, then waits until the file ``gate`` exists."""
    Path(started).write_text("started")
    while not Path(gate).exists():
        time.sleep(0.02)
    return "released"


from specflow.processing.operations import VolumetricOperation  # noqa: E402


@specflow.register("test.fail_chunks_below")
class FailChunksBelow(VolumetricOperation):
    """Copies ``src``, but fails on every chunk that starts below ``x`` (in voxels)."""

    def __init__(self, x: int) -> None:
        self.x = x

    def process(self, src: Any) -> Any:
        return src

    def __call__(self, idx: Any, **kwargs: Any) -> Any:
        if idx.start[0] < self.x:
            raise ValueError(f"this chunk is refused (it starts at x={idx.start[0]})")
        return super().__call__(idx, **kwargs)
