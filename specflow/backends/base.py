"""The one small interface every backend serves, and the worker-side task runner.

A backend receives batches of :class:`~specflow.flow.task.Task` objects and hands back one
:class:`Outcome` per task. It never touches the checkpoint: the executor in the driving
process is its only writer.
"""

from __future__ import annotations

import abc
import os
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specflow.flow.completion import collecting
from specflow.flow.task import Task


class TaskTimeoutError(Exception):
    """A task ran longer than its ``runtime_limit_sec``."""


@dataclass
class Outcome:
    """What became of one task attempt."""

    task_id: str
    ok: bool
    value: Any = None
    error: str | None = None
    exc_types: tuple[str, ...] = ()
    traceback: str | None = None
    started: float = 0.0
    finished: float = 0.0
    worker: str = ""
    #: the worker or job vanished: not the task's own fault, always worth retrying
    lost: bool = False
    log_path: str | None = None


@dataclass
class JobRecord:
    """A backend-side job (e.g. a SLURM array task) for ``specflow status``."""

    job_id: str
    state: str
    n_tasks: int = 0
    log_path: str | None = None
    updated: float = field(default_factory=time.time)


@dataclass
class BackendContext:
    """What a backend is told when a run starts."""

    run_dir: Path
    run_id: str
    #: modules the user imported with ``-i``; workers import them before running tasks
    imports: tuple[str, ...] = ()
    #: job ids of earlier drivers of this run that may still be alive (resume)
    previous_jobs: tuple[str, ...] = ()
    semaphores: dict[str, int] = field(default_factory=dict)


class Backend(abc.ABC):
    """Runs batches of tasks somewhere and reports their outcomes."""

    name: str = "backend"

    def start(self, ctx: BackendContext) -> None:  # noqa: B027 - optional hook
        """Prepare to receive tasks."""

    @abc.abstractmethod
    def capacity(self) -> int:
        """How many more tasks the backend wants right now (0 when full)."""

    @abc.abstractmethod
    def submit(self, tasks: Sequence[Task]) -> None:
        """Start running ``tasks``; must not block on their completion."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> list[Outcome]:
        """Outcomes of tasks finished since the last call; waits up to ``timeout`` seconds
        for at least one when none is ready."""

    @abc.abstractmethod
    def in_flight(self) -> int:
        """Tasks submitted whose outcome has not been returned yet."""

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop everything in flight (Ctrl-C, fail-fast)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers and resources."""

    def job_updates(self) -> list[JobRecord]:
        """Jobs whose state changed since the last call (backends without jobs: none)."""
        return []


_WORKER: tuple[int, str] = (-1, "")


def worker_name() -> str:
    """``host:pid`` of this process (cached; forks get their own)."""
    global _WORKER
    pid = os.getpid()
    if _WORKER[0] != pid:
        _WORKER = (pid, f"{socket.gethostname()}:{pid}")
    return _WORKER[1]


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TaskTimeoutError` in the running task after ``seconds``.

    Uses an interval timer, so it works in the main thread of a process (workers, inline
    runs). Elsewhere the limit cannot interrupt and is checked after the fact.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise TaskTimeoutError(f"task exceeded its runtime limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _exc_types(exc: BaseException) -> tuple[str, ...]:
    return tuple(
        f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__
        for cls in type(exc).__mro__
        if cls not in (object, BaseException)
    )


def run_task(task: Task) -> Outcome:
    """Run one task where this is called and describe what happened. Never raises for the
    task's own exceptions (KeyboardInterrupt and SystemExit still propagate)."""
    limit = task.runtime_limit_sec
    started = _now()
    try:
        if limit:
            with _time_limit(limit):
                value = task.fn(**task.kwargs)
            finished = _now()
            if finished - started > limit:
                raise TaskTimeoutError(f"task exceeded its runtime limit of {limit:g} s")
        else:
            value = task.fn(**task.kwargs)
            finished = _now()
        return Outcome(task.id, True, value, None, (), None, started, finished, worker_name())
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed
        return Outcome(
            task.id,
            False,
            error=f"{type(exc).__name__}: {exc}",
            exc_types=_exc_types(exc),
            traceback=traceback.format_exc(),
            started=started,
            finished=_now(),
            worker=worker_name(),
        )


_now = time.time


#: deferred writes of a batch in flight at once: at most this many tasks' and this many bytes
#: (the oldest are waited for first)
MAX_DEFERRED_TASKS = 32
MAX_DEFERRED_BYTES = 256 * 1024 * 1024


def run_batch(tasks: Sequence[Task]) -> list[Outcome]:
    """Run tasks one after another; one outcome each, in order. A task may leave its writes
    in flight (:func:`specflow.flow.completion.defer`): they overlap the next tasks, and each
    task's outcome is settled (done only once its writes are) before the batch returns."""
    outcomes: list[Outcome] = []
    pending: deque[tuple[int, list[Any]]] = deque()
    held = 0
    for t in tasks:
        with collecting() as futures:
            outcomes.append(run_task(t))
        if futures:
            pending.append((len(outcomes) - 1, futures))
            held += sum(n for _, n in futures)
            while len(pending) > MAX_DEFERRED_TASKS or (held > MAX_DEFERRED_BYTES
                                                        and len(pending) > 1):
                held -= _settle(outcomes, *pending.popleft())
    while pending:
        _settle(outcomes, *pending.popleft())
    return outcomes


def _settle(outcomes: list[Outcome], i: int, futures: list[Any]) -> int:
    """Wait for task ``i``'s deferred futures (a failure makes its outcome a failure); the
    bytes they held."""
    o = outcomes[i]
    for fut, _ in futures:
        try:
            fut.result()
        except Exception as exc:  # noqa: BLE001 - reported as the task's failure
            if o.ok:
                o = Outcome(o.task_id, False, error=f"{type(exc).__name__}: {exc}",
                            exc_types=_exc_types(exc), traceback=traceback.format_exc(),
                            started=o.started, finished=_now(), worker=o.worker)
    if o.ok:
        o.finished = max(o.finished, _now())
    outcomes[i] = o
    return sum(n for _, n in futures)


def import_modules(imports: Sequence[str]) -> None:
    """Import user modules (``-i``) in a worker so that their operations are registered and
    their functions can be unpickled. Paths to ``.py`` files and module names both work."""
    from specflow.builder.imports import import_user_module

    for name in imports:
        import_user_module(name)
