"""Runs tasks in a pool of worker processes on this machine.

Tasks travel in batches so the per-task cost of inter-process traffic stays small; the batch
size adapts to how long tasks take (about 50 ms of work per batch). A worker that dies is
replaced: the pool is rebuilt and the tasks it held come back as lost outcomes, which the
executor retries.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from specflow import resources
from specflow.backends.base import (
    Backend,
    BackendContext,
    Outcome,
    import_modules,
    run_batch,
    worker_name,
)
from specflow.flow.task import Task

TARGET_BATCH_SECONDS = 0.05
MAX_BATCH = 512


def _init_worker(imports: tuple[str, ...], semaphores: dict[str, Any]) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what Ctrl-C means
    resources.install_semaphores(semaphores)
    import_modules(imports)


class LocalBackend(Backend):
    name = "local"

    def __init__(self, workers: int | None = None, max_batch: int = MAX_BATCH) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.max_batch = max_batch
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future[list[Outcome]], list[Task]] = {}
        self._in_flight = 0
        self._ctx: BackendContext | None = None
        self._mean_task_s = 0.0
        self._samples = 0
        self._lost: list[Outcome] = []

    def start(self, ctx: BackendContext) -> None:
        self._ctx = ctx
        self._new_pool()

    def _new_pool(self) -> None:
        ctx = self._ctx
        imports = ctx.imports if ctx else ()
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=resources.mp_context(),
            initializer=_init_worker,
            initargs=(imports, resources.semaphore_state()),
        )

    def _batch_size(self) -> int:
        if self._samples == 0:
            return 1  # until a task is timed: long tasks in a big first batch idle the rest
        per = max(self._mean_task_s, 1e-6)
        return max(1, min(self.max_batch, int(TARGET_BATCH_SECONDS / per)))

    def capacity(self) -> int:
        # enough work queued for every worker to have a batch running and one waiting
        return max(0, 2 * self.workers * self._batch_size() - self._in_flight)

    def submit(self, tasks: Sequence[Task]) -> None:
        if self._pool is None:
            self._new_pool()
        assert self._pool is not None
        size = self._batch_size()
        n_chunks = max(1, math.ceil(len(tasks) / size))
        # spread small submissions over the workers instead of one big batch
        n_chunks = max(n_chunks, min(len(tasks), self.workers))
        step = math.ceil(len(tasks) / n_chunks)
        for i in range(0, len(tasks), step):
            chunk = list(tasks[i : i + step])
            try:
                fut = self._pool.submit(run_batch, chunk)
            except (BrokenProcessPool, RuntimeError):
                self._rebuild()
                assert self._pool is not None
                fut = self._pool.submit(run_batch, chunk)
            self._futures[fut] = chunk
            self._in_flight += len(chunk)

    def wait(self, timeout: float) -> list[Outcome]:
        out: list[Outcome] = []
        if self._lost:
            out, self._lost = self._lost, []
        if not self._futures:
            return out
        done, _ = cf.wait(
            list(self._futures), timeout=0 if out else timeout, return_when=cf.FIRST_COMPLETED
        )
        broken = False
        for fut in done:
            chunk = self._futures.pop(fut)
            self._in_flight -= len(chunk)
            try:
                outcomes = fut.result()
            except BrokenProcessPool:
                broken = True
                out.extend(_lost(chunk, "a worker process died"))
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable return value
                out.extend(_lost(chunk, f"{type(exc).__name__}: {exc}", lost=False,
                                 kind="TaskTransportError"))
                continue
            self._learn(outcomes)
            out.extend(outcomes)
        if broken:
            self._rebuild()
        return out

    def _learn(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            d = max(0.0, o.finished - o.started)
            self._samples += 1
            k = 1.0 / min(self._samples, 50)
            self._mean_task_s += (d - self._mean_task_s) * k

    def _rebuild(self) -> None:
        """Replace a broken pool; everything it held comes back as lost."""
        for fut, chunk in list(self._futures.items()):
            self._lost.extend(_lost(chunk, "a worker process died"))
            self._in_flight -= len(chunk)
            fut.cancel()
        self._futures.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._new_pool()

    def in_flight(self) -> int:
        return self._in_flight + len(self._lost)

    def cancel(self) -> None:
        # Stop the workers; the pool then fails its own futures (nobody waits on them).
        # Cancelling the futures first would race with the pool's manager thread.
        if self._pool is not None:
            procs = list((getattr(self._pool, "_processes", None) or {}).values())
            for p in procs:
                if p.is_alive():
                    p.terminate()
            self._pool.shutdown(wait=False, cancel_futures=False)
            for p in procs:
                p.join(timeout=5)
            self._pool = None
        self._futures.clear()
        self._in_flight = 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _lost(chunk: list[Task], why: str, lost: bool = True, kind: str = "WorkerLost") -> list[Outcome]:
    now = time.time()
    return [
        Outcome(t.id, False, error=f"{kind}: {why}", exc_types=(kind,),
                started=now, finished=now, worker=worker_name(), lost=lost)
        for t in chunk
    ]
