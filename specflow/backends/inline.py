"""Runs tasks in the driving process, one after another: the debugging backend.

Each task's stdout and stderr (file descriptors 1 and 2, so C code and subprocesses too) go
to ``<run dir>/logs/inline.log`` while it runs, between ``==>`` lines naming the task. The
driver's display must then write to :meth:`InlineBackend.console_stream` (the terminal as it
was), not to ``sys.stderr``. A task's ``runtime_limit_sec`` is a cooperative ``SIGALRM``
here (a task that ignores it runs on; the local backend enforces the limit from outside).
A value that could not be pickled fails its task here too, as on the other backends.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, TextIO

from specflow.backends.base import (
    Backend,
    BackendContext,
    DriverInterrupt,
    LogTail,
    Outcome,
    _tags,
    import_modules,
    machine_unmet,
    run_task,
    task_footer,
    task_header,
)
from specflow.flow.task import Task


class InlineBackend(Backend):
    name = "inline"
    #: tasks run inside wait(), in the driving thread
    runs_in_wait = True

    def __init__(self, batch_size: int = 1024, capture: bool = True,
                 worker_tags: Sequence[str] = ()) -> None:
        self.batch_size = batch_size
        self.worker_tags = _tags(worker_tags)
        #: the task wait() is running now: (id, operation, when it started)
        self.current: tuple[str, str, float] | None = None
        self.capture = capture
        self._queue: deque[Task] = deque()
        self._log_fd = -1
        self._log_path: str | None = None
        self._saved: tuple[int, int] | None = None
        self._console: TextIO | None = None
        self._tail = LogTail()
        self._previous_sigint: Any = None
        self._text: TextIO | None = None

    def start(self, ctx: BackendContext) -> None:
        import_modules(ctx.imports)
        if self.capture:
            ctx.logs.mkdir(parents=True, exist_ok=True)
            path = str(ctx.logs / "inline.log")
            self._log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._log_path = path
            self._saved = (os.dup(1), os.dup(2))
            self._text = open(self._log_fd, "w", encoding="utf-8", errors="replace",  # noqa: SIM115
                              buffering=1, closefd=False)
            self._tail.watch(path)
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            # Ctrl-C stops the run; a KeyboardInterrupt a task raises itself fails the task
            self._previous_sigint = signal.signal(signal.SIGINT, _interrupt)

    def capacity(self) -> int:
        return self.batch_size - len(self._queue)

    def submit(self, tasks: Sequence[Task]) -> None:
        self._queue.extend(tasks)

    def wait(self, timeout: float) -> list[Outcome]:
        # one task per call: its outcome reaches the executor (and the checkpoint) before
        # the next task starts, however long that one runs
        queue = self._queue
        if not queue:
            return []
        task = queue[0]
        self.current = (task.id, task.operation, time.time())
        try:
            return [self._run(task)]
        finally:
            self.current = None

    def _run(self, task: Task) -> Outcome:
        queue = self._queue
        if self._saved is None:
            outcome = run_task(task)
            queue.popleft()
            return outcome
        log_fd = self._log_fd
        saved_out, saved_err = self._saved
        # fds 1 and 2 (and sys.stdout, sys.stderr, whatever they were) point at the log
        # while the task runs; the driver's display writes to console_stream() meanwhile
        _flush()
        streams = sys.stdout, sys.stderr
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout = sys.stderr = self._text
        try:
            os.write(log_fd, task_header(task))
            mark = os.lseek(log_fd, 0, os.SEEK_END)
            outcome = run_task(task)
            _flush()
            if not outcome.ok or os.lseek(log_fd, 0, os.SEEK_END) != mark:
                os.write(log_fd, task_footer(task, outcome))
            outcome.log_path = self._log_path
            queue.popleft()
        finally:
            _flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
        return outcome

    def unmet(self, task: Task) -> str | None:
        return machine_unmet(task, self.worker_tags)

    def running_ids(self) -> set[str] | None:
        # between calls of wait() nothing runs: what was handed over is queued (the task
        # wait() runs is in ``current`` meanwhile)
        return set()

    def finished(self) -> list[Outcome]:
        return []  # every outcome was returned as its task ended

    def in_flight(self) -> int:
        return len(self._queue)

    def cancel(self) -> None:
        self._queue.clear()

    def recent_output(self) -> list[str]:
        return self._tail.read()

    def console_stream(self) -> TextIO | None:
        if self._saved is None:
            return None
        if self._console is None:
            self._console = open(os.dup(self._saved[1]), "w", encoding="utf-8",  # noqa: SIM115
                                 errors="replace", buffering=1)
        return self._console

    def close(self) -> None:
        if self._previous_sigint is not None:
            if signal.getsignal(signal.SIGINT) is _interrupt:
                signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
        if self._console is not None:
            self._console.close()
            self._console = None
        if self._text is not None:
            self._text.close()
            self._text = None
        if self._saved is not None:
            for fd in self._saved:
                os.close(fd)
            self._saved = None
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1


def _interrupt(signum: int, frame: Any) -> None:
    raise DriverInterrupt()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
