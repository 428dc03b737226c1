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


@specflow.register("test.gated_append")
@specflow.taskable_operation
def gated_append(path: str, line: str, gate: str, started: str, wait_s: float = 300.0) -> str:
    """Note that it started (``started``: one line with this process's pid), then wait until
    the file ``gate`` exists (at most ``wait_s``), then append ``line`` to ``path``."""
    append(started, f"{line} {os.getpid()}")
    deadline = time.monotonic() + wait_s
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} never opened")
        time.sleep(0.01)
    return append(path, line)


@specflow.register("test.free_then_gated")
@specflow.flow_schema
def free_then_gated(path: str, gate: str, started: str, n_free: int,
                    n_gated: int) -> Generator[Any, Any, None]:
    """``n_free`` appends, a barrier, then ``n_gated`` appends that wait for ``gate``."""
    for i in range(n_free):
        yield append.make_task(path=path, line=f"free{i}")
    yield specflow.Dependency()
    for i in range(n_gated):
        yield gated_append.make_task(path=path, line=f"gated{i}", gate=gate, started=started)


@specflow.flow_schema
def _fail_then_append(path: str) -> Generator[Any, Any, None]:
    yield fail.make_task(message="planned failure")
    yield specflow.Dependency()
    yield append.make_task(path=path, line="after-failure")


@specflow.flow_schema
def _appends(path: str, n: int, prefix: str) -> Generator[Any, Any, None]:
    for i in range(n):
        yield append.make_task(path=path, line=f"{prefix}{i}")


@specflow.register("test.partly_failing")
@specflow.flow_schema
def partly_failing(path: str, n: int = 5) -> Generator[Any, Any, None]:
    """A branch whose first task fails (its later task depends on it) beside an independent
    branch of ``n`` appends."""
    yield _fail_then_append(path=path)
    yield _appends(path=path, n=n, prefix="ok")


@specflow.register("test.death_among_others")
@specflow.flow_schema
def death_among_others(path: str, marker: str, n: int = 6) -> Generator[Any, Any, None]:
    """A task that kills its worker the first time, yielded among ``n`` appends."""
    half = n // 2
    for i in range(half):
        yield append.make_task(path=path, line=f"ok{i}")
    yield die_once.make_task(marker=marker)
    for i in range(half, n):
        yield append.make_task(path=path, line=f"ok{i}")


@specflow.register("test.pure_square")
@specflow.taskable_operation(pure=True)
def pure_square(x: int, log: str) -> int:
    """Pure (its value depends on ``x`` only); ``log`` lets a test see that it ran."""
    append(log, str(x))
    return x * x


@specflow.register("test.sum_of_pure_squares")
@specflow.flow_schema
def sum_of_pure_squares(n: int, log: str, out: str) -> Generator[Any, Any, None]:
    tasks = [pure_square.make_task(x=i, log=log) for i in range(n)]
    yield tasks
    values = yield specflow.Dependency(tasks)
    yield append.make_task(path=out, line=str(sum(values)))


@specflow.register("test.three_stages")
@specflow.flow_schema
def three_stages(out: str, value: int, gate: str, started: str) -> Generator[Any, Any, None]:
    """Stage 1 (never changes), stage 2 (changes with ``value``), then stage 3 (same task
    whatever ``value`` is, but after stage 2; it waits for ``gate``)."""
    yield append.make_task(path=out, line="stage1")
    yield specflow.Dependency()
    yield append.make_task(path=out, line=f"stage2 value={value}")
    yield specflow.Dependency()
    yield gated_append.make_task(path=out, line="stage3", gate=gate, started=started)


@specflow.register("test.tuning")
@specflow.taskable_operation
def tuning(out: str) -> None:
    """Write how the process running this task was set up (specflow.backends.tuning)."""
    import gc
    import json

    from specflow.backends import tuning as t

    Path(out).write_text(json.dumps({
        "allocator": t.STATE.get("allocator"), "frozen": gc.get_freeze_count(),
        "gen0": gc.get_threshold()[0], "pid": os.getpid()}))
