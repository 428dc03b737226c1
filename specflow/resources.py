"""Semaphores that operations take to bound concurrent use of a resource (``read``,
``write``, ``cpu``, ``cuda``) across the worker processes of one machine.

Semaphores belong to a run, not to a process: a backend that runs tasks in several processes
creates a :class:`RunSemaphores` from the run's limits when the run starts and closes it when
the run ends; each worker process adopts them with :func:`install` before it runs a task.
Where nothing is installed (the driving process, inline runs, SLURM jobs) every resource is
unbounded, so :func:`semaphore` costs nothing there.

The semaphores are POSIX named semaphores. Their names are registered with
multiprocessing's resource tracker, a process that removes them from ``/dev/shm`` as soon as
the driving process is gone, however it ended.
"""

from __future__ import annotations

import multiprocessing
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

RESOURCES = ("read", "write", "cpu", "cuda")

_SEMAPHORE_KIND = 1  # _multiprocessing.SemLock: a counting semaphore (not a recursive mutex)

#: this process's semaphores, by resource: installed in worker processes only
_INSTALLED: dict[str, Any] = {}
#: per resource index, how many units this process holds now (shared with the driver so it
#: can give back what a killed worker held); ``None`` outside workers
_HELD: Any = None


#: modules the fork server imports once (before it forks any worker and before it runs any
#: thread of theirs), so that each worker starts with them instead of importing them itself
#: (tensorstore and numpy take about a second of CPU to import)


def mp_context() -> Any:
    """The multiprocessing context for helper processes: spawned, never forked, because
    forking a process that has started threads (tensorstore, BLAS) is unsafe."""
    return multiprocessing.get_context("spawn")


def validate_limits(limits: Mapping[str, Any] | None) -> dict[str, int]:
    """``limits`` checked: known resource names, each bounded by a positive integer.
    Raises :class:`ValueError` naming the first bad entry."""
    out: dict[str, int] = {}
    if limits is None:
        return out
    if not isinstance(limits, Mapping):
        raise ValueError(
            f"semaphores: expected a mapping of resource name to a positive integer, "
            f"got {type(limits).__name__}"
        )
    for name, n in limits.items():
        if name not in RESOURCES:
            raise ValueError(
                f"semaphores: unknown resource {name!r}; expected one of {', '.join(RESOURCES)}"
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"semaphores.{name}: needs a positive integer, got {n!r}")
        out[name] = n
    return out


class RunSemaphores:
    """The semaphores of one run, created by the driving process."""

    def __init__(self, limits: Mapping[str, Any] | None) -> None:
        import _multiprocessing
        from multiprocessing import resource_tracker

        self.limits = validate_limits(limits)
        self._locks: dict[str, Any] = {}
        self._names: dict[str, str] = {}
        token = secrets.token_hex(5)
        try:
            for name, n in self.limits.items():
                sem_name = f"/specflow-{token}-{name}"
                self._locks[name] = _multiprocessing.SemLock(
                    _SEMAPHORE_KIND, n, n, sem_name, False
                )
                self._names[name] = sem_name
                resource_tracker.register(sem_name, "semaphore")
        except BaseException:
            self.close()
            raise

    def spec(self) -> list[tuple[str, str, int]]:
        """What a worker process needs to open them: (resource, name, limit) each."""
        return [(r, self._names[r], self.limits[r]) for r in self._locks]

    def give_back(self, held: Mapping[str, int]) -> None:
        """Release units a worker held when it was killed."""
        for name, n in held.items():
            lock = self._locks.get(name)
            if lock is None:
                continue
            for _ in range(max(0, n)):
                try:
                    lock.release()
                except ValueError:  # already at its limit
                    break

    def close(self) -> None:
        """Remove the names (processes that opened them keep their handles)."""
        import _multiprocessing
        from multiprocessing import resource_tracker

        for sem_name in self._names.values():
            try:
                _multiprocessing.sem_unlink(sem_name)
            except OSError:
                pass
            try:
                resource_tracker.unregister(sem_name, "semaphore")
            except Exception:  # noqa: BLE001 - the tracker may already be gone
                pass
        self._names.clear()
        self._locks.clear()


def install(spec: list[tuple[str, str, int]], held: Any = None) -> None:
    """Used in a worker process: open the run's semaphores by name. ``held`` (a writable
    sequence of ints, one per :data:`RESOURCES` entry) counts the units this process holds."""
    import _multiprocessing

    global _HELD
    _INSTALLED.clear()
    for resource, sem_name, n in spec:
        _INSTALLED[resource] = _multiprocessing.SemLock._rebuild(
            0, _SEMAPHORE_KIND, n, sem_name
        )
    _HELD = held


def uninstall() -> None:
    global _HELD
    _INSTALLED.clear()
    _HELD = None


class _External:
    """A semaphore of another kind (e.g. a dask.distributed one) seen as the ones above."""

    def __init__(self, sem: Any, maxvalue: int) -> None:
        self.sem = sem
        self.maxvalue = maxvalue

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        return bool(self.sem.acquire())

    def release(self) -> None:
        self.sem.release()


def install_external(semaphores: Mapping[str, tuple[Any, int]]) -> None:
    """Used where another engine runs the tasks (dask workers): bound each resource by an
    object with ``acquire()``/``release()`` and its limit."""
    _INSTALLED.clear()
    for name, (sem, n) in semaphores.items():
        if name not in RESOURCES:
            raise ValueError(f"unknown resource {name!r}; expected one of {', '.join(RESOURCES)}")
        _INSTALLED[name] = _External(sem, int(n))


def installed() -> dict[str, int]:
    """Resources bounded in this process, with their limits (none outside workers)."""
    return {name: int(lock.maxvalue) for name, lock in _INSTALLED.items()}


def is_bounded(name: str) -> bool:
    """Whether resource ``name`` has a semaphore in this process."""
    return name in _INSTALLED


@contextmanager
def semaphore(name: str) -> Iterator[None]:
    """Hold one unit of resource ``name`` for the duration of the block."""
    sem = _INSTALLED.get(name)
    if sem is None:
        if name not in RESOURCES:
            raise ValueError(f"unknown resource {name!r}; expected one of {', '.join(RESOURCES)}")
        yield
        return
    sem.acquire(True, None)
    held = _HELD
    index = RESOURCES.index(name)
    if held is not None:
        held[index] += 1
    try:
        yield
    finally:
        if held is not None:
            held[index] -= 1
        sem.release()
