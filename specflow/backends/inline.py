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
        queue = self._queue
        out: list[Outcome] = []
        append = out.append
        while queue:
            task = queue[0]
            append(run_task(task))
            queue.popleft()
        return out

    def in_flight(self) -> int:
        return len(self._queue)

    def cancel(self) -> None:
        self._queue.clear()
