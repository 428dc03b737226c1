"""Deferred completion: a task may end before the I/O it started has finished, when the
process running it promises to wait for that I/O before it reports the task.

A task calls :func:`defer` with something that has a blocking ``result()`` (a tensorstore
write, a ``concurrent.futures.Future``). When a runner is collecting (:func:`collecting`), the
future is handed to it and the task goes on, so its write overlaps the next task's reads and
compute; the runner waits for the future before it reports the task, and reports the task
failed if the future fails. With no runner collecting, :func:`defer` returns ``False`` and the
task waits itself. Either way a task is reported done only once its output is written.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_LOCAL = threading.local()


def _stack() -> list[list[Any]]:
    stack: list[list[Any]] | None = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


@contextmanager
def collecting() -> Iterator[list[Any]]:
    """Collect the ``(future, nbytes)`` that code run inside defers to this caller (this
    thread only)."""
    futures: list[Any] = []
    stack = _stack()
    stack.append(futures)
    try:
        yield futures
    finally:
        stack.pop()


def defer(future: Any, nbytes: int = 0) -> bool:
    """Hand ``future`` to the runner collecting in this thread; ``False`` when none is (the
    caller must then wait for it). ``nbytes``: the memory it holds until it completes (the
    runner bounds the sum)."""
    stack = _stack()
    if not stack:
        return False
    stack[-1].append((future, int(nbytes)))
    return True
