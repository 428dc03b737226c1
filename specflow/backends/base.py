"""The one small interface every backend serves, and the worker-side task runner.

A backend receives batches of :class:`~specflow.flow.task.Task` objects and hands back one
:class:`Outcome` per task. It never touches the checkpoint: the executor in the driving
process is its only writer.
"""

from __future__ import annotations

import abc
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from specflow.flow.completion import collecting
from specflow.flow.task import Task

#: most characters of a task's error text that are kept (stored, printed)
ERROR_LIMIT = 8 * 1024
#: most characters of a task's traceback that are kept
TRACEBACK_LIMIT = 64 * 1024
#: environment variable every worker process of a run carries, naming the run
RUN_ID_ENV = "SPECFLOW_RUN_ID"
#: lines of task logs that mark where one task's output begins and ends start with this
LOG_MARK = "==> "


class TaskTimeoutError(Exception):
    """A task ran longer than its ``runtime_limit_sec``."""


class DriverInterrupt(KeyboardInterrupt):
    """Raised in the driving process (by a signal handler: Ctrl-C, SIGTERM, SIGHUP) to stop
    the run. Unlike a ``KeyboardInterrupt`` a task raises itself, it is never taken as that
    task's failure: it ends the run."""


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
    #: seconds its tasks ran, and seconds the job held its allocation (when known)
    busy_s: float | None = None
    allocated_s: float | None = None
    #: something worth telling about the job (e.g. that it drained near its time limit)
    note: str | None = None


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
    #: where task logs go (``None``: ``<run_dir>/logs``)
    log_dir: Path | None = None

    @property
    def logs(self) -> Path:
        return self.log_dir if self.log_dir is not None else self.run_dir / "logs"


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

    def finished(self) -> list[Outcome]:
        """Outcomes of tasks that already finished, without starting or waiting for any
        (taken before a stop cancels the rest, so that they are recorded)."""
        return self.wait(0)

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop everything in flight (Ctrl-C, fail-fast). Outcomes of tasks that had
        already finished are kept: a following ``wait(0)`` returns them."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers and resources."""

    def unmet(self, task: Task) -> str | None:
        """Why no worker of this backend can run ``task`` (its ``requirements`` and
        ``worker_type``), or None when one can."""
        return None

    def running_ids(self) -> set[str] | None:
        """Ids of the tasks handed over that have started (the rest are queued); ``None``
        when the backend cannot tell the two apart."""
        return None

    def job_updates(self) -> list[JobRecord]:
        """Jobs whose state changed since the last call (backends without jobs: none)."""
        return []

    def recent_output(self) -> list[str]:
        """Lines tasks printed (stdout and stderr) since the last call, oldest first, without
        the task boundary marks; at most a screenful. Backends that do not capture task
        output on this machine return none."""
        return []

    def console_stream(self) -> TextIO | None:
        """A stream the driver's display must write to instead of ``sys.stderr`` while tasks
        run, or ``None`` when ``sys.stderr`` is fine (backends that redirect the driving
        process's own file descriptors 1 and 2 around tasks give one)."""
        return None


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


def bounded(text: str, limit: int, *, keep_tail: bool = False) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was cut. With
    ``keep_tail`` the end is kept too (a traceback's last lines name the error)."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    mark = f"\n… {cut:,} characters cut …\n"
    if keep_tail:
        head = limit // 4
        return text[:head] + mark + text[len(text) - (limit - head):]
    return text[:limit] + mark.rstrip("\n")


def describe_error(exc: BaseException) -> str:
    """``Type: message``, bounded."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        message = f"<unprintable {type(exc).__name__}>"
    if len(message) > ERROR_LIMIT:
        message = bounded(message, ERROR_LIMIT)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def format_traceback(exc: BaseException) -> str:
    try:
        # each piece bounded on its own: a huge message must not crowd out the frames
        text = "".join(bounded(piece, ERROR_LIMIT)
                       for piece in traceback.TracebackException.from_exception(exc).format())
    except Exception:  # noqa: BLE001
        text = describe_error(exc)
    return bounded(text, TRACEBACK_LIMIT, keep_tail=True)


class _Sink:
    __slots__ = ()

    def write(self, data: Any) -> int:
        return len(data)


def _out_of_band(buffer: Any) -> bool:
    return False  # large buffers (arrays, bytes) are not copied while checking


_PLAIN = frozenset({type(None), bool, int, float, str, bytes, complex})


def unpicklable_reason(value: Any) -> str | None:
    """Why ``value`` cannot be pickled (so it cannot leave a worker or be stored), or
    ``None`` when it can. Plain values are answered at once; others are pickled into a sink
    without copying their large buffers."""
    if type(value) in _PLAIN:
        return None
    try:
        pickle.Pickler(_Sink(), protocol=5, buffer_callback=_out_of_band).dump(value)
    except Exception as exc:  # noqa: BLE001 - reported as the task's failure
        return describe_error(exc)
    return None


def transport_failure(outcome: Outcome, reason: str) -> Outcome:
    """``outcome`` turned into the failure of a task whose value cannot be pickled."""
    outcome.ok = False
    outcome.value = None
    outcome.error = bounded(
        f"TaskTransportError: the task's return value cannot be pickled: {reason}", ERROR_LIMIT
    )
    outcome.exc_types = ("TaskTransportError",)
    return outcome


def run_task(task: Task, *, check_value: bool = True, time_limit: bool = True) -> Outcome:
    """Run one task where this is called and describe what happened.

    Everything the task raises becomes its failure, ``SystemExit`` and ``KeyboardInterrupt``
    included; only a :class:`DriverInterrupt` (the driver being stopped) propagates. With
    ``check_value`` a return value that cannot be pickled fails the task, as it would on a
    backend that ships values between processes. ``time_limit`` arms the cooperative
    ``SIGALRM`` limit (backends that enforce the limit from outside still use it as the
    gentle first step).
    """
    limit = task.runtime_limit_sec
    started = _now()
    try:
        if limit and time_limit:
            with _time_limit(limit):
                value = task.fn(**task.kwargs)
            finished = _now()
            if finished - started > limit:
                raise TaskTimeoutError(f"task exceeded its runtime limit of {limit:g} s")
        else:
            value = task.fn(**task.kwargs)
            finished = _now()
    except DriverInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported, not swallowed
        return Outcome(
            task.id,
            False,
            error=describe_error(exc),
            exc_types=_exc_types(exc),
            traceback=format_traceback(exc),
            started=started,
            finished=_now(),
            worker=worker_name(),
        )
    outcome = Outcome(task.id, True, value, None, (), None, started, finished, worker_name())
    if check_value and value is not None:
        reason = unpicklable_reason(value)
        if reason is not None:
            transport_failure(outcome, reason)
    return outcome


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


def task_header(task: Task) -> bytes:
    """The log line that opens a task's output."""
    return f"{LOG_MARK}task {task.id} ({task.operation})\n".encode()


def task_footer(task: Task, outcome: Outcome) -> bytes:
    """The log line that closes a task's output."""
    how = f"done in {outcome.finished - outcome.started:.3f} s" if outcome.ok else \
        f"failed: {bounded(outcome.error or 'failed', 500)}"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(outcome.finished))
    return f"{LOG_MARK}task {task.id} ({task.operation}) {how} at {stamp}\n".encode()


class LogTail:
    """Reads the lines appended to a set of log files since the last call."""

    MAX_LINES = 200
    MAX_BYTES = 64 * 1024

    def __init__(self) -> None:
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}

    def watch(self, path: str) -> None:
        if path not in self._offsets:
            try:
                self._offsets[path] = os.path.getsize(path)
            except OSError:
                self._offsets[path] = 0

    def read(self) -> list[str]:
        lines: list[str] = []
        for path, offset in self._offsets.items():
            try:
                size = os.path.getsize(path)
            except OSError:
                continue
            if size <= offset:
                if size < offset:
                    self._offsets[path] = size
                continue
            start = max(offset, size - self.MAX_BYTES)
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(size - start)
            self._offsets[path] = start + len(data)
            data = (self._partial.pop(path, b"") if start == offset else b"") + data
            parts = data.split(b"\n")
            if parts[-1]:
                self._partial[path] = parts[-1][-4096:]
            for raw in parts[:-1]:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if not line.startswith(LOG_MARK):
                    lines.append(line)
        return lines[-self.MAX_LINES:]


def import_modules(imports: Sequence[str]) -> None:
    """Import user modules (``-i``) in a worker so that their operations are registered and
    their functions can be unpickled. Paths to ``.py`` files and module names both work."""
    from specflow.builder.imports import import_user_module

    for name in imports:
        import_user_module(name)


# ------------------------------------------------------------------- requirements on this host
def machine_resources() -> dict[str, Any]:
    """What this machine offers a task: CPUs it may use, memory, GPUs, platform."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gb = int(line.split()[1]) / 1024 / 1024
                    break
    except OSError:
        pass
    if mem_gb is None:
        try:
            mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
        except (ValueError, OSError, AttributeError):
            mem_gb = None
    return {"cpus": cpus, "mem_gb": mem_gb, "gpus": _gpu_count(), "platform": sys.platform}


def _gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return len([d for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit()])
    except OSError:
        return 0


def _tags(raw: Any) -> tuple[str, ...]:
    """A backend's ``worker_tags`` setting checked: a name or a list of names."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(t, str) and t for t in raw):
        raise ValueError(f"worker_tags must be a list of names, got {raw!r}")
    return tuple(raw)


def machine_unmet(task: Task, worker_tags: Sequence[str] = (),
                  have: dict[str, Any] | None = None) -> str | None:
    """Why this machine cannot run ``task`` (naming the requirement and what the machine
    has), or None."""
    req = task.requirements
    if req is None:
        return None
    have = have if have is not None else machine_resources()
    if req.cpus is not None and req.cpus > have["cpus"]:
        return f"it requires cpus={req.cpus:g}; this machine has {have['cpus']} CPU(s)"
    if req.mem_gb is not None and have["mem_gb"] is not None and req.mem_gb > have["mem_gb"]:
        return f"it requires mem_gb={req.mem_gb:g}; this machine has {have['mem_gb']:.1f} GB"
    if req.gpus and req.gpus > have["gpus"]:
        return f"it requires gpus={req.gpus}; this machine has {have['gpus']} GPU(s)"
    if req.platform is not None and not have["platform"].startswith(req.platform):
        return f"it requires platform={req.platform}; this machine is {have['platform']}"
    missing = sorted(set(req.tags) - set(worker_tags))
    if missing:
        offered = ", ".join(sorted(worker_tags)) or "none"
        return (f"it requires tag(s) {', '.join(missing)}; this machine's workers carry "
                f"{offered} (the backend's worker_tags setting)")
    return None
