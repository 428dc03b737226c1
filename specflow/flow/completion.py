"""Deferred completion: a task may end before the I/O it started has finished, when the
process running it promises to wait for that I/O before it reports the task.

A task calls :func:`defer` with something that has a blocking ``result()`` (a tensorstore
write, a ``concurrent.futures.Future``). When a runner is collecting (:func:`collecting`), the
future is handed to it and the task goes on, so its write overlaps the next task's reads and
compute; the runner waits for the future before it reports the task, and reports the task
failed if the future fails. With no runner collecting, :func:`defer` returns ``False`` and the
task waits itself. Either way a task is reported done only once its output is written.

A runner may also *group* the tasks it runs one after another (:class:`Group`): a task then
stages its writes in a resource the group shares (:func:`shared`, e.g. one storage
transaction), and the runner commits the resource once for the whole group, reporting its
tasks only after that commit. Many small writes then cost one commit. Code must use a shared
resource only for writes it does not read back within the same group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

_LOCAL = threading.local()


class Group:
    """Resources shared by the tasks a runner groups, committed together.

    A task's first :func:`shared` call for a key creates the resource; the runner commits
    every resource of the group at once and then takes a new group for the next tasks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._resources: dict[Hashable, tuple[Any, Callable[[Any], Any]]] = {}
        self.committed = False
        #: a task running now has joined the group (it cannot be committed before it ends)
        self.joining = False

    def __bool__(self) -> bool:
        return bool(self._resources)

    def join(self, key: Hashable, make: Callable[[], T], commit: Callable[[T], Any]) -> T | None:
        """The resource ``key`` (made now if new); ``None`` once the group is committed."""
        with self.lock:
            if self.committed:
                return None
            self.joining = True
            found = self._resources.get(key)
            if found is None:
                resource = make()
                self._resources[key] = (resource, commit)
                return resource
            return found[0]  # type: ignore[no-any-return]

    def commit_locked(self) -> list[Any]:
        """Start committing every resource (``lock`` held); the futures of those commits."""
        self.committed = True
        return [commit(resource) for resource, commit in self._resources.values()]


class GroupSource(Protocol):
    """Whatever hands out the group open now (a runner replaces it as groups end)."""

    group: Group | None


class _Fixed:
    def __init__(self, group: Group | None) -> None:
        self.group = group


class Collector:
    """What one task left to its runner: deferred futures and whether it joined a group."""

    __slots__ = ("futures", "source", "joined")

    def __init__(self, source: GroupSource | None = None) -> None:
        self.futures: list[tuple[Any, int]] = []
        self.source = source
        self.joined = False


def _stack() -> list[Collector]:
    stack: list[Collector] | None = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


@contextmanager
def collecting(group: Group | None = None) -> Iterator[list[Any]]:
    """Collect the ``(future, nbytes)`` that code run inside defers to this caller (this
    thread only); with ``group``, that code may stage writes in the group's resources."""
    with collecting_into(Collector(_Fixed(group) if group is not None else None)) as c:
        yield c.futures


@contextmanager
def collecting_into(collector: Collector) -> Iterator[Collector]:
    """:func:`collecting` with a :class:`Collector` the caller keeps."""
    stack = _stack()
    stack.append(collector)
    try:
        yield collector
    finally:
        stack.pop()


def defer(future: Any, nbytes: int = 0) -> bool:
    """Hand ``future`` to the runner collecting in this thread; ``False`` when none is (the
    caller must then wait for it). ``nbytes``: the memory it holds until it completes (the
    runner bounds the sum)."""
    stack = _stack()
    if not stack:
        return False
    stack[-1].futures.append((future, int(nbytes)))
    return True


def shared(key: Hashable, make: Callable[[], T], commit: Callable[[T], Any]) -> T | None:
    """The resource ``key`` of the group the collecting runner runs this task in (made by
    ``make()`` for the group's first task that asks; the runner calls ``commit(resource)``,
    which returns a future, once for the group before it reports the group's tasks); ``None``
    when the runner does not group tasks. Whoever writes through it must :func:`defer` the
    write's own future too."""
    stack = _stack()
    if not stack:
        return None
    c = stack[-1]
    while c.source is not None:
        group = c.source.group
        if group is None:
            return None
        resource = group.join(key, make, commit)
        if resource is not None:
            c.joined = True
            return resource
        # the group was committed meanwhile: the runner has opened the next one
    return None
