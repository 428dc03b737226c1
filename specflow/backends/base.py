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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from specflow.flow.completion import Collector, Group, collecting_into
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
    #: seconds the task itself ran, when its writes finished later (``finished`` is when
    #: they did); ``None``: ``finished - started``
    busy: float | None = None

    def run_seconds(self) -> float:
        """Seconds the task ran (without waiting for writes it left in flight)."""
        return max(0.0, self.busy if self.busy is not None else self.finished - self.started)


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


#: a group of tasks whose writes are settled (and grouped writes committed) together ends
#: after this many tasks, this many bytes, or this many seconds after its first task finished
GROUP_TASKS = 64
GROUP_BYTES = 64 * 1024 * 1024
GROUP_SECONDS = 0.2
#: groups committing at once (while the next one fills): the runner waits for the oldest
#: before it runs more
GROUPS_IN_FLIGHT = 3
#: so at most this many tasks' writes, and about this many bytes, are in flight at once
MAX_DEFERRED_TASKS = GROUP_TASKS * (GROUPS_IN_FLIGHT + 1)
MAX_DEFERRED_BYTES = 256 * 1024 * 1024


class _Entry:
    __slots__ = ("key", "task", "outcome", "futures", "joined", "nbytes")

    def __init__(self, key: Any, task: Task, outcome: Outcome, c: Collector) -> None:
        self.key = key
        self.task = task
        self.outcome = outcome
        self.futures = c.futures
        self.joined = c.joined
        self.nbytes = sum(n for _, n in c.futures)


class _Closed:
    __slots__ = ("entries", "commits")

    def __init__(self, entries: list[_Entry], commits: list[Any]) -> None:
        self.entries = entries
        self.commits = commits


class Pipeline:
    """Runs tasks one after another in the calling thread, leaves the writes they defer
    (:func:`specflow.flow.completion.defer`) in flight while the next tasks run, and reports
    each task (``report(key, outcome)``) once its writes are done: a task without deferred
    writes at once, the others from a thread of the pipeline's own.

    With ``grouping`` the tasks form groups (:class:`~specflow.flow.completion.Group`): a
    task may stage its writes in a resource of its group (one storage transaction, say),
    committed once for the group. A group ends after :data:`GROUP_TASKS` tasks,
    :data:`GROUP_BYTES` bytes or :data:`GROUP_SECONDS` seconds, and when :meth:`drain` is
    called. When a group's commit fails, its tasks that joined it are handed to
    ``rerun(items)`` (``[(key, task), ...]``), to be run again with :meth:`run` and
    ``grouped=False``, so that each failure is the failing task's own.

    Writes in flight are bounded (:data:`GROUPS_IN_FLIGHT` groups, :data:`MAX_DEFERRED_BYTES`
    bytes): :meth:`run` waits for the oldest group before it runs more.
    """

    def __init__(self, report: Callable[[Any, Outcome], None],
                 rerun: Callable[[list[tuple[Any, Task]]], None] | None = None, *,
                 grouping: bool = True, run: Callable[[Task], Outcome] | None = None) -> None:
        self._report = report
        self._rerun = rerun
        self._run = run or run_task
        self._cond = threading.Condition()
        self.group: Group | None = Group() if grouping else None
        self._open: list[_Entry] = []
        self._open_bytes = 0
        self._opened = 0.0
        self._queue: deque[_Closed] = deque()
        self._held_bytes = 0
        self._settling = False
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- the runner's side (one thread) -----------------------------------------------
    def run(self, key: Any, task: Task, *, grouped: bool = True,
            ahead: Task | None = None) -> Outcome:
        """Run ``task`` here; its outcome (reported now or once its writes are done).
        ``ahead``: the task that runs next, whose reads may start now (its operation's
        ``prefetch``), to overlap this task's compute."""
        if ahead is not None:
            prefetch_for(ahead)
        c = Collector(self if grouped and self.group is not None else None)
        with collecting_into(c):
            outcome = self._run(task)
        if not c.futures and not c.joined:
            self._report(key, outcome)
            return outcome
        if outcome.ok:
            outcome.busy = max(0.0, outcome.finished - outcome.started)
        entry = _Entry(key, task, outcome, c)
        with self._cond:
            if self.group is not None:
                self.group.joining = False
            if not self._open:
                self._opened = time.monotonic()
                self._start()
                self._cond.notify_all()
            self._open.append(entry)
            self._open_bytes += entry.nbytes
            self._held_bytes += entry.nbytes
            if len(self._open) >= GROUP_TASKS or self._open_bytes >= GROUP_BYTES:
                self._close()
            while self._queue and (len(self._queue) > GROUPS_IN_FLIGHT
                                   or self._held_bytes > MAX_DEFERRED_BYTES):
                self._cond.wait()
        return outcome

    def end_group(self) -> bool:
        """End the open group now (e.g. when no more work is queued), without waiting; True
        when every task run so far is already reported."""
        with self._cond:
            if self._open:
                self._close()
            return not self._queue and not self._settling

    def drain(self) -> None:
        """End the open group and wait until every task run so far is reported."""
        with self._cond:
            if self._open:
                self._close()
            while self._queue or self._settling:
                self._cond.wait()

    def close(self) -> None:
        """Drain, and end the pipeline's thread."""
        self.drain()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _close(self) -> None:
        """End the open group (lock held): commit it and queue it for settling."""
        group = self.group
        commits: list[Any] = []
        if group is not None:
            with group.lock:
                if group:
                    self.group = Group()  # before the commit: late joiners find the new one
                    commits = group.commit_locked()
        self._queue.append(_Closed(self._open, commits))
        self._open = []
        self._open_bytes = 0
        self._cond.notify_all()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._settler, name="specflow-settle",
                                            daemon=True)
            self._thread.start()

    # -- the settling thread -------------------------------------------------------------
    def _settler(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._queue:
                    if self._stop:
                        return
                    if self._open:
                        left = self._opened + GROUP_SECONDS - time.monotonic()
                        g = self.group
                        if left <= 0 and (g is None or not g.joining):
                            self._close()
                            continue
                        cond.wait(max(left, 0.01))
                    else:
                        cond.wait()
                closed = self._queue[0]
                self._settling = True
            done, again = self._settle(closed)
            with cond:
                self._queue.popleft()
                self._held_bytes -= sum(e.nbytes for e in closed.entries)
                for key, outcome in done:
                    self._report(key, outcome)
                if again and self._rerun is not None:
                    self._rerun(again)
                self._settling = False
                cond.notify_all()

    def _settle(self, closed: _Closed) -> tuple[list[tuple[Any, Outcome]],
                                               list[tuple[Any, Task]]]:
        commit_error: BaseException | None = None
        for fut in closed.commits:
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - the group's tasks run again alone
                commit_error = exc
        done: list[tuple[Any, Outcome]] = []
        again: list[tuple[Any, Task]] = []
        for e in closed.entries:
            o = e.outcome
            if e.joined and commit_error is not None and self._rerun is not None:
                for fut, _ in e.futures:
                    try:
                        fut.result()
                    except Exception:  # noqa: BLE001, S110 - the task runs again
                        pass
                again.append((e.key, e.task))
                continue
            failure = commit_error if e.joined else None
            for fut, _ in e.futures:
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001 - reported as the task's failure
                    failure = failure or exc
            if failure is not None and o.ok:
                o = Outcome(o.task_id, False, error=describe_error(failure),
                            exc_types=_exc_types(failure),
                            traceback=format_traceback(failure), started=o.started,
                            finished=_now(), worker=o.worker)
            elif o.ok:
                o.finished = max(o.finished, _now())
            done.append((e.key, o))
        return done, again


def prefetch_for(task: Task) -> None:
    """Start the reads of ``task`` if its operation can say which (errors are the task's
    own to meet when it runs)."""
    hook = getattr(task.fn, "prefetch", None)
    if hook is None:
        return
    try:
        hook(**task.kwargs)
    except Exception:  # noqa: BLE001, S110 - the task reports it when it runs
        pass


def run_batch(tasks: Sequence[Task]) -> list[Outcome]:
    """Run tasks one after another; one outcome each, in order. A task may leave its writes
    in flight (:func:`specflow.flow.completion.defer`) or stage them in its group's shared
    resources (:func:`specflow.flow.completion.shared`): they overlap the next tasks, and
    each task's outcome is settled (done only once its writes are) before the batch
    returns."""
    outcomes: dict[int, Outcome] = {}
    again: list[tuple[Any, Task]] = []
    pipeline = Pipeline(outcomes.__setitem__, again.extend)
    try:
        last = len(tasks) - 1
        for i, t in enumerate(tasks):
            pipeline.run(i, t, ahead=tasks[i + 1] if i < last else None)
        pipeline.drain()
        while again:
            items, again[:] = list(again), []
            for i, t in items:
                pipeline.run(i, t, grouped=False)
            pipeline.drain()
    finally:
        pipeline.close()
    return [outcomes[i] for i in range(len(tasks))]


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
