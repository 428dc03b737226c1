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
    import_modules,
    run_task,
    task_footer,
    task_header,
)
from specflow.flow.task import Task

#: the longest a call to :meth:`InlineBackend.wait` keeps finished outcomes to itself
REPORT_EVERY_S = 0.05


class InlineBackend(Backend):
    name = "inline"

    def __init__(self, batch_size: int = 1024, capture: bool = True) -> None:
        self.batch_size = batch_size
        self.capture = capture
        self._queue: deque[Task] = deque()
        self._done: list[Outcome] = []
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
        """Run queued tasks and return their outcomes, at the latest once
        :data:`REPORT_EVERY_S` has passed since the call began (so the driver records
        finished work while the queue is long). Outcomes of tasks that finished before an
        interrupt are kept for the next call."""
        queue = self._queue
        done = self._done
        append = done.append
        clock = time.monotonic
        until = clock() + REPORT_EVERY_S
        if self._saved is None:
            while queue:
                append(run_task(queue[0]))
                queue.popleft()
                if clock() >= until:
                    break
            return self._take()
        log_fd = self._log_fd
        saved_out, saved_err = self._saved
        log_path = self._log_path
        lseek = os.lseek
        write = os.write
        end = os.SEEK_END
        # fds 1 and 2 (and sys.stdout, sys.stderr, whatever they were) point at the log
        # while these tasks run; the driver's display writes to console_stream() meanwhile
        _flush()
        streams = sys.stdout, sys.stderr
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout = sys.stderr = self._text
        try:
            while queue:
                task = queue[0]
                write(log_fd, task_header(task))
                mark = lseek(log_fd, 0, end)
                outcome = run_task(task)
                _flush()
                if not outcome.ok or lseek(log_fd, 0, end) != mark:
                    write(log_fd, task_footer(task, outcome))
                outcome.log_path = log_path
                append(outcome)
                queue.popleft()
                if clock() >= until:
                    break
        finally:
            _flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
        return self._take()

    def _take(self) -> list[Outcome]:
        out = self._done
        self._done = []
        return out

    def in_flight(self) -> int:
        return len(self._queue) + len(self._done)

    def cancel(self) -> None:
        """Drop the queue; outcomes of finished tasks stay for the next :meth:`wait`."""
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
