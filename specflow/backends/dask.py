"""Runs tasks on a dask.distributed cluster: an embedded one on this machine, or an existing
scheduler (``address``), which is how dask-jobqueue, Kubernetes and cloud clusters are reached.

Only top-level tasks travel to dask, a bounded window at a time: one dask future runs a small
batch of tasks (sized so a batch holds about 50 ms of work, since dask's own cost is about a
millisecond per future) and returns their outcomes. The driver stays the only writer of the
checkpoint. A worker that dies loses only the batches it held; they come back as lost
outcomes, which the executor retries (the embedded scheduler is told not to retry them behind
the executor's back).

Semaphores (``read``, ``write``, ``cpu``, ``cuda``) become dask semaphores shared by every
worker of the cluster; tasks tagged ``requires.NAME: AMOUNT`` ask dask for worker resources
``NAME`` (workers of the embedded cluster get the ones given in ``resources``).

Tasks run in a worker's thread, so a ``runtime_limit_sec`` cannot interrupt a task there; it
is checked when the task returns.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import queue
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from specflow import resources as semaphores_of_run
from specflow.backends.base import (
    Backend,
    BackendContext,
    Outcome,
    run_batch,
    run_task,
    worker_name,
)
from specflow.flow.task import Task

TARGET_BATCH_SECONDS = 0.05
MAX_BATCH = 256
#: batches queued per worker thread: one running, the others on their way (round trips
#: through the scheduler take milliseconds)
FUTURES_PER_WORKER = 2
#: most tasks handed to dask at once, whatever the cluster's width
MAX_WINDOW = 50_000
#: how often the width of an external cluster is asked again
WIDTH_REFRESH_S = 5.0
#: tag prefix through which a task asks for dask worker resources
REQUIRES_TAG = "requires."


class DaskUnavailable(RuntimeError):
    """dask.distributed is not installed, or the scheduler cannot be reached."""


def _distributed() -> Any:
    """The dask.distributed module (an optional dependency), untyped."""
    try:
        import distributed
    except ImportError as exc:
        raise DaskUnavailable(
            "the dask backend needs dask.distributed: pip install 'specflow[dask]'"
        ) from exc
    return distributed


# ------------------------------------------------------------------------------- worker side
_WORKER_STATE: dict[str, Any] = {"imports": None, "semaphores": None}
_WORKER_LOCK = threading.Lock()


def _prepare_worker(imports: tuple[str, ...], semaphores: Mapping[str, tuple[str, int]]) -> None:
    """Import the user's modules and adopt the run's semaphores, once per worker and run."""
    with _WORKER_LOCK:
        if _WORKER_STATE["imports"] != imports:
            from specflow.backends.base import import_modules

            import_modules(imports)
            _WORKER_STATE["imports"] = imports
        key = tuple(sorted(semaphores.items()))
        if _WORKER_STATE["semaphores"] != key:
            Semaphore = _distributed().Semaphore
            semaphores_of_run.install_external({
                res: (Semaphore(max_leases=n, name=name), n)
                for res, (name, n) in semaphores.items()
            })
            _WORKER_STATE["semaphores"] = key


def run_remote(imports: tuple[str, ...], semaphores: Mapping[str, tuple[str, int]],
               payload: bytes, stream: str | None = None) -> list[Outcome] | int:
    """What one dask future runs: prepare the worker, unpickle the tasks (after the user's
    modules are imported), run them one after another, and return their outcomes. With
    ``stream`` (workers on the driver's machine), each outcome is appended to that file as
    it finishes instead, and only their number is returned: the driver reads them there
    (one round trip fewer per batch), and if the worker dies midway it still learns which
    tasks of the batch finished."""
    _prepare_worker(imports, semaphores)
    tasks: list[Task] = pickle.loads(payload)
    if stream is None:
        return run_batch(tasks)
    from specflow.backends.slurm import _encode

    fd = os.open(stream, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for task in tasks:
            os.write(fd, _encode(run_task(task)))
    finally:
        os.close(fd)
    return len(tasks)


# ------------------------------------------------------------------------------- driver side
def _requirements(task: Task) -> tuple[tuple[str, float], ...]:
    """The dask worker resources ``task`` asks for: its ``requires.NAME`` tags, and its
    requirements as resources ``cpus``, ``mem_gb``, ``gpus``, ``tag:NAME`` (1 each) and
    ``worker_type:NAME`` (1)."""
    out: dict[str, float] = {}
    for k, v in task.tags.items():
        if k.startswith(REQUIRES_TAG):
            out[k[len(REQUIRES_TAG):]] = float(v)
    req = task.requirements
    if req is not None:
        for name in ("cpus", "mem_gb", "gpus"):
            value = getattr(req, name)
            if value:
                out[name] = float(value)
        for tag in req.tags:
            out[f"tag:{tag}"] = 1.0
    if task.worker_type is not None:
        out[f"worker_type:{task.worker_type}"] = 1.0
    return tuple(sorted(out.items()))


class DaskBackend(Backend):
    name = "dask"

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        max_batch: int = MAX_BATCH,
        resources: Mapping[str, float] | None = None,
        memory_limit: str | float | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.address = address
        self.max_batch = max(1, max_batch)
        self.worker_resources = dict(resources or {})
        self.memory_limit = memory_limit
        self.connect_timeout = connect_timeout
        self._client: Any = None
        self._cluster: Any = None
        self._ctx: BackendContext | None = None
        self._imports: tuple[str, ...] = ()
        self._semaphores: dict[str, tuple[str, int]] = {}
        self._futures: dict[Any, list[Task]] = {}
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._in_flight = 0
        self._mean_task_s = 0.0
        self._samples = 0
        self._seq = 0
        self._width = self.workers
        self._width_at = 0.0
        self._stream_dir: Path | None = None

    def _embedded_resources(self) -> dict[str, float]:
        """Resources of each worker of the embedded cluster: its share of this machine's
        CPUs and memory (so that requirements can be met), then what ``resources`` says."""
        from specflow.backends.base import machine_resources

        have = machine_resources()
        out: dict[str, float] = {"cpus": float(max(1, have["cpus"] // self.workers))}
        if have["mem_gb"]:
            out["mem_gb"] = round(have["mem_gb"] / self.workers, 2)
        if have["gpus"]:
            out["gpus"] = float(have["gpus"] // self.workers)
        out.update(self.worker_resources)
        return out

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, ctx: BackendContext) -> None:
        dist = _distributed()
        import dask

        Client, LocalCluster = dist.Client, dist.LocalCluster
        self._ctx = ctx
        self._imports = tuple(ctx.imports)
        if self.address:
            try:
                self._client = Client(self.address, timeout=self.connect_timeout,
                                      set_as_default=False)
            except OSError as exc:
                raise DaskUnavailable(
                    f"cannot reach the dask scheduler at {self.address}: {exc}"
                ) from exc
            self._refresh_width(force=True)
        else:
            # the executor retries lost work itself, counting it; the embedded scheduler
            # must not rerun a dead worker's tasks on its own
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=None, silence_logs=logging.CRITICAL,
                    resources=self._embedded_resources(),
                    memory_limit=self.memory_limit if self.memory_limit is not None else "auto",
                )
            self._client = Client(self._cluster, set_as_default=False)
            self._width = self.workers
            # the workers share this machine's files: batches stream their outcomes there
            self._stream_dir = Path(ctx.run_dir) / "dask" / f"{os.getpid()}-{time.time_ns()}"
            self._stream_dir.mkdir(parents=True, exist_ok=True)
        self._semaphores = {}
        for res, n in (ctx.semaphores or {}).items():
            name = f"specflow-{ctx.run_id}-{res}"
            self._semaphores[res] = (name, int(n))

    def close(self) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        try:
            if client is not None:
                client.close()
        finally:
            try:
                if cluster is not None:
                    cluster.close()
            finally:
                if self._stream_dir is not None:
                    shutil.rmtree(self._stream_dir, ignore_errors=True)
                    with contextlib.suppress(OSError):
                        self._stream_dir.parent.rmdir()
                    self._stream_dir = None

    def cancel(self) -> None:
        client = self._client
        if client is not None and self._futures:
            try:
                client.cancel(list(self._futures), force=True)
            except Exception:  # noqa: BLE001 - the cluster may already be gone
                pass
        self._futures.clear()
        self._in_flight = 0
        if self._cluster is not None:
            # running tasks cannot be interrupted in a dask worker: stop the embedded
            # cluster's workers so nothing goes on behind the driver
            self.close()

    # -- sizing ----------------------------------------------------------------------------
    def _refresh_width(self, force: bool = False) -> None:
        if self._cluster is not None or self._client is None:
            return
        now = time.monotonic()
        if not force and now - self._width_at < WIDTH_REFRESH_S:
            return
        self._width_at = now
        try:
            info = self._client.scheduler_info()
            n = sum(max(1, int(w.get("nthreads", 1))) for w in info.get("workers", {}).values())
        except Exception:  # noqa: BLE001 - keep the last known width
            return
        self._width = max(1, n)

    def _batch_size(self) -> int:
        if self._samples == 0:
            return 4
        per = max(self._mean_task_s, 1e-6)
        return max(1, min(self.max_batch, int(TARGET_BATCH_SECONDS / per)))

    def capacity(self) -> int:
        self._refresh_width()
        window = min(MAX_WINDOW, FUTURES_PER_WORKER * self._width * self._batch_size())
        return max(0, window - self._in_flight)

    def in_flight(self) -> int:
        return self._in_flight

    def unmet(self, task: Task) -> str | None:
        wanted = dict(_requirements(task))
        if not wanted or self._client is None:
            return None
        try:
            workers = self._client.scheduler_info().get("workers", {})
        except Exception:  # noqa: BLE001 - the scheduler answers later; dask waits
            return None
        offered = [dict(w.get("resources") or {}) for w in workers.values()]
        if any(all(have.get(k, 0) >= v for k, v in wanted.items()) for have in offered):
            return None
        need = ", ".join(f"{k}={v:g}" for k, v in sorted(wanted.items()))
        kinds = sorted({", ".join(f"{k}={v:g}" for k, v in sorted(o.items())) or "none"
                        for o in offered})
        return (f"it asks dask for worker resources {need}; the cluster's "
                f"{len(offered)} worker(s) offer {'; '.join(kinds) or 'nothing'}")

    # -- submitting ------------------------------------------------------------------------
    def submit(self, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        client = self._client
        if client is None:
            raise DaskUnavailable("the dask backend was not started")
        groups: dict[tuple[tuple[str, float], ...], list[Task]] = {}
        for t in tasks:
            groups.setdefault(_requirements(t), []).append(t)
        size = self._batch_size()
        for req, group in groups.items():
            n_chunks = max(1, math.ceil(len(group) / size))
            # spread small submissions over the workers instead of one big batch
            n_chunks = max(n_chunks, min(len(group), self._width))
            step = math.ceil(len(group) / n_chunks)
            for i in range(0, len(group), step):
                self._submit_chunk(list(group[i : i + step]), dict(req))

    def _submit_chunk(self, chunk: list[Task], req: dict[str, float]) -> None:
        try:
            payload = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - a task that cannot travel fails honestly
            now = time.time()
            for t in chunk:
                self._done.put(("failed", t, f"TaskTransportError: the task cannot be "
                                f"pickled: {type(exc).__name__}: {exc}", now))
            self._in_flight += len(chunk)
            return
        self._seq += 1
        run_id = self._ctx.run_id if self._ctx else "adhoc"
        key = f"specflow-{chunk[0].operation}-{run_id}-{self._seq}"
        stream = str(self._stream_dir / f"{self._seq}") if self._stream_dir else None
        fut = self._client.submit(
            run_remote, self._imports, self._semaphores, payload, stream, key=key, pure=False,
            resources=req or None, retries=0,
        )
        self._futures[fut] = chunk
        self._in_flight += len(chunk)
        fut.add_done_callback(self._done.put)

    # -- outcomes --------------------------------------------------------------------------
    def wait(self, timeout: float) -> list[Outcome]:
        if self._in_flight == 0:
            return []
        ready: list[Any] = []
        try:
            ready.append(self._done.get(timeout=max(0.0, timeout)) if timeout > 0
                         else self._done.get_nowait())
        except queue.Empty:
            return []
        while True:
            try:
                ready.append(self._done.get_nowait())
            except queue.Empty:
                break
        out: list[Outcome] = []
        finished = []
        for item in ready:
            if isinstance(item, tuple):  # a chunk that never left (unpicklable)
                _, task, why, now = item
                self._in_flight -= 1
                out.append(Outcome(task.id, False, error=why, exc_types=("TaskTransportError",),
                                   started=now, finished=now, worker=worker_name()))
                continue
            chunk = self._futures.pop(item, None)
            if chunk is None:
                continue  # cancelled and forgotten
            self._in_flight -= len(chunk)
            if item.status == "finished" and self._stream_dir is not None:
                found = self._recover(item, chunk)
                outcomes = [found[t.id] for t in chunk if t.id in found]
                self._learn(outcomes)
                out.extend(outcomes)
                missing = [t for t in chunk if t.id not in found]
                out.extend(_ended(missing, "the batch ended without reporting this task"))
                self._release(item)
            elif item.status == "finished":
                finished.append((item, chunk))
            else:
                recovered = self._recover(item, chunk)
                rest = [t for t in chunk if t.id not in recovered]
                out.extend(recovered.values())
                out.extend(self._failed_chunk(item, rest))
        if finished:
            out.extend(self._gather(finished))
        return out

    def _gather(self, finished: list[tuple[Any, list[Task]]]) -> list[Outcome]:
        out: list[Outcome] = []
        try:
            results = self._client.gather([f for f, _ in finished], errors="raise")
        except Exception:  # noqa: BLE001 - gather one by one to tell which failed
            results = None
        for i, (fut, chunk) in enumerate(finished):
            if results is not None:
                outcomes = results[i]
            else:
                try:
                    outcomes = fut.result()
                except Exception as exc:  # noqa: BLE001
                    out.extend(_ended(chunk, f"{type(exc).__name__}: {exc}", lost=False,
                                      kind="TaskTransportError"))
                    continue
            if not isinstance(outcomes, list):  # cannot happen without a stream
                outcomes = _ended(chunk, "the batch returned no outcomes", lost=False,
                                  kind="TaskTransportError")
            self._learn(outcomes)
            out.extend(outcomes)
        return out

    def _stream_of(self, fut: Any) -> Path | None:
        if self._stream_dir is None:
            return None
        return self._stream_dir / str(fut.key).rsplit("-", 1)[-1]

    def _release(self, fut: Any) -> None:
        with contextlib.suppress(Exception):
            fut.release()

    def _recover(self, fut: Any, chunk: list[Task]) -> dict[str, Outcome]:
        """Outcomes that a batch streamed before its worker went away."""
        path = self._stream_of(fut)
        if path is None or not chunk:
            return {}
        from specflow.backends.slurm import _decode, _unpickle_outcome

        try:
            data = path.read_bytes()
        except OSError:
            return {}
        ids = {t.id for t in chunk}
        found = {tid: _unpickle_outcome(tid, inner) for tid, inner in _decode(data)[0]
                 if tid in ids}
        with contextlib.suppress(OSError):
            path.unlink()
        return found

    def _failed_chunk(self, fut: Any, chunk: list[Task]) -> list[Outcome]:
        if not chunk:
            return []
        KilledWorker = _distributed().KilledWorker
        if fut.status == "cancelled":
            return _ended(chunk, "the dask future was cancelled (its worker or the "
                          "scheduler went away)")
        try:
            exc = fut.exception()
        except Exception as e:  # noqa: BLE001 - the scheduler lost it
            exc = e
        if isinstance(exc, KilledWorker) or exc is None:
            return _ended(chunk, f"a dask worker died while running it ({exc})")
        # run_task catches the task's own exceptions, so this is transport (pickling)
        return _ended(chunk, f"{type(exc).__name__}: {exc}", lost=False,
                      kind="TaskTransportError")

    def _learn(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            d = max(0.0, o.finished - o.started)
            self._samples += 1
            k = 1.0 / min(self._samples, 50)
            self._mean_task_s += (d - self._mean_task_s) * k


def _ended(chunk: list[Task], why: str, lost: bool = True,
           kind: str = "WorkerLost") -> list[Outcome]:
    now = time.time()
    return [
        Outcome(t.id, False, error=f"{kind}: {why}", exc_types=(kind,),
                started=now, finished=now, worker=worker_name(), lost=lost)
        for t in chunk
    ]


def make_dask_backend(**settings: Any) -> DaskBackend:
    known = {"workers", "address", "max_batch", "resources", "memory_limit", "connect_timeout"}
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"unknown dask backend setting(s): {', '.join(sorted(unknown))}")
    _distributed()  # say now, not after the run started, that dask is missing
    return DaskBackend(**settings)
