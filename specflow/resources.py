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


#: modules the fork server imports once (before it forks any worker and before it runs any
#: thread of theirs), so that each worker starts with them instead of importing them itself
#: (tensorstore and numpy take about a second of CPU to import)
WORKER_PRELOAD = ("__main__", "numpy", "tensorstore", "specflow.backends.base",
                  "specflow.processing")


def mp_context() -> Any:
    """The multiprocessing context of specflow's worker processes: a fork server, because
    forking a process that has started threads (tensorstore, BLAS) is unsafe. The server
    itself only imports :data:`WORKER_PRELOAD` (importing starts no tensorstore thread)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_PRELOAD))
    return ctx


def configure_semaphores(limits: dict[str, int]) -> None:
    """Bound each named resource to ``limits[name]`` concurrent holders."""
    for name, n in limits.items():
        if name not in RESOURCES:
            raise ValueError(f"unknown resource {name!r}; expected one of {', '.join(RESOURCES)}")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"semaphore {name!r} needs a positive integer, got {n!r}")
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


def is_bounded(name: str) -> bool:
    """Whether resource ``name`` has a semaphore in this process."""
    return name in _SEMAPHORES


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
