"""Semaphores that operations take to bound concurrent use of a resource (``read``,
``write``, ``cpu``, ``cuda``) across the worker processes of one machine.

The driving process calls :func:`configure_semaphores` before workers start; workers receive
the semaphores when they are created (see :func:`install_semaphores`). Unconfigured resources
are unbounded.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

RESOURCES = ("read", "write", "cpu", "cuda")

_SEMAPHORES: dict[str, Any] = {}
_LIMITS: dict[str, int] = {}


def mp_context() -> Any:
    """The multiprocessing context of specflow's worker processes: a fork server, because
    forking a process that has started threads (tensorstore, BLAS) is unsafe."""
    return multiprocessing.get_context("forkserver")


class SemaphoreLimitError(ValueError):
    """A semaphore limit that cannot be: an unknown resource, or not a positive integer."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def check_limits(limits: Any) -> None:
    """Raise :class:`SemaphoreLimitError` for the first limit that cannot be."""
    if not isinstance(limits, dict):
        raise SemaphoreLimitError("", f"semaphores must map resource names to limits, got "
                                      f"{type(limits).__name__}")
    for name, n in limits.items():
        if name not in RESOURCES:
            raise SemaphoreLimitError(
                str(name), f"unknown resource {name!r}; expected one of {', '.join(RESOURCES)}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise SemaphoreLimitError(
                str(name), f"semaphore {name!r} needs a positive integer, got {n!r}")


def configure_semaphores(limits: dict[str, int]) -> None:
    """Bound each named resource to ``limits[name]`` concurrent holders."""
    check_limits(limits)
    _SEMAPHORES.clear()
    _LIMITS.clear()
    for name, n in limits.items():
        _SEMAPHORES[name] = mp_context().BoundedSemaphore(n)
        _LIMITS[name] = n


def semaphore_state() -> dict[str, Any]:
    """What a worker process needs to share this process's semaphores."""
    return dict(_SEMAPHORES)


def install_semaphores(state: dict[str, Any]) -> None:
    """Used in worker processes: adopt the driver's semaphores."""
    _SEMAPHORES.clear()
    _SEMAPHORES.update(state)


def limits() -> dict[str, int]:
    return dict(_LIMITS)


@contextmanager
def semaphore(name: str) -> Iterator[None]:
    """Hold one unit of resource ``name`` for the duration of the block."""
    if name not in RESOURCES:
        raise ValueError(f"unknown resource {name!r}; expected one of {', '.join(RESOURCES)}")
    sem = _SEMAPHORES.get(name)
    if sem is None:
        yield
        return
    sem.acquire()
    try:
        yield
    finally:
        sem.release()
