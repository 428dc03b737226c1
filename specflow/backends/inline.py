"""Runs tasks in the driving process, one after another: the debugging backend."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from specflow.backends.base import Backend, BackendContext, Outcome, import_modules, run_task
from specflow.flow.task import Task


class InlineBackend(Backend):
    name = "inline"

    def __init__(self, batch_size: int = 1024) -> None:
        self.batch_size = batch_size
        self._queue: deque[Task] = deque()

    def start(self, ctx: BackendContext) -> None:
        import_modules(ctx.imports)

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
        outcome = run_task(queue[0])
        queue.popleft()
        return [outcome]

    def finished(self) -> list[Outcome]:
        return []  # every outcome was returned as its task ended

    def in_flight(self) -> int:
        return len(self._queue)

    def cancel(self) -> None:
        self._queue.clear()
