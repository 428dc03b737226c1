"""Runs tasks in a pool of worker processes on this machine.

Each worker (:mod:`specflow.backends.worker`) is a fresh interpreter started by the driving
process, talking to it over its own socket pair; nothing is forked from the driver, which may
have started threads (tensorstore). Tasks travel in batches so the per-task cost of the
traffic stays small; the batch size adapts to how long tasks take (about 50 ms of work per
batch). Outcomes come back per task as they finish (gathered for at most a few tens of
milliseconds), so the driver can record finished work while the rest of a batch still runs.

A worker lives only as long as its driver, and carries ``SPECFLOW_RUN_ID=<run id>`` in its
environment. Its stdout and stderr (file descriptors 1 and 2, so the output of C code and
of subprocesses too) go to ``<run dir>/logs/worker-<n>.log``, where lines starting with
``==>`` mark where each task's output begins and ends.

When a worker dies, the task it was running fails, naming the signal or exit status; the
other tasks it held come back as lost (the executor runs them again without counting an
attempt), and a new worker takes its place. A task that outlives its ``runtime_limit_sec``
(the cooperative ``SIGALRM`` inside the task having had no effect) is ended from outside:
its worker and the worker's process group are killed, and the task fails with a
``TaskTimeoutError``.

Drive a backend from one thread that lives as long as the run: on Linux a worker's
parent-death signal fires when the *thread* that started it ends.
"""

from __future__ import annotations

import math
import mmap
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

from specflow import resources
from specflow.backends import worker as worker_body
from specflow.backends.base import (
    ERROR_LIMIT,
    LOG_MARK,
    RUN_ID_ENV,
    Backend,
    BackendContext,
    LogTail,
    Outcome,
    TaskTimeoutError,
    _exc_types,
    _tags,
    bounded,
    machine_unmet,
    worker_name,
)
from specflow.flow.task import Task

TARGET_BATCH_SECONDS = 0.05
MAX_BATCH = 512
#: how long past a task's runtime limit its worker is killed (the task's own SIGALRM comes first)
KILL_GRACE_S = 1.0
#: at most this long the first tasks wait for every worker to have started
START_GATE_S = 10.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = (
    "import sys; sys.path.insert(0, {root!r}); "
    "from specflow.backends.worker import main; main()"
)


#: the parts of specflow a worker imports as soon as it is ready, when the driver has them,
#: and with volumes tensorstore (which the driver itself may never load): a worker's first
#: task then finds them loaded, while without this one worker could only start loading them
#: when its first task arrives (tensorstore alone takes a second on some machines)
PRELOAD = ("specflow.processing", "specflow.volumes")


def _preload() -> tuple[str, ...]:
    found = [m for m in PRELOAD if m in sys.modules]
    if "specflow.volumes" in sys.modules:
        found.append("tensorstore")
    return tuple(found)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def death_reason(returncode: int | None) -> str:
    if returncode is None:
        return "worker vanished"
    if returncode < 0:
        return f"worker killed by {signal_name(-returncode)}"
    return f"worker exited with status {returncode}"


class _Worker:
    __slots__ = ("slot", "proc", "conn", "state", "state_file", "log_path", "tasks", "ready",
                 "kill_reason")

    def __init__(self, slot: int, proc: subprocess.Popen[bytes], conn: Connection,
                 state: mmap.mmap, state_file: Any, log_path: str) -> None:
        self.slot = slot
        self.proc = proc
        self.conn = conn
        self.state = state
        self.state_file = state_file
        self.log_path = log_path
        #: tasks handed to this worker without an outcome yet, by sequence number, in order
        self.tasks: dict[int, Task] = {}
        self.ready = False
        self.kill_reason: tuple[str, str] | None = None

    def running(self) -> tuple[int, float]:
        seq, started = struct.unpack_from(worker_body.STATE_FORMAT, self.state, 0)
        return int(seq), float(started)

    def held(self) -> dict[str, int]:
        n = len(resources.RESOURCES)
        counts = struct.unpack_from(f"<{n}i", self.state, worker_body.HELD_OFFSET)
        return {r: c for r, c in zip(resources.RESOURCES, counts, strict=True) if c > 0}

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and what its task started
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def release(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        try:
            self.state.close()
        except (BufferError, ValueError):
            pass
        self.state_file.close()


class LocalBackend(Backend):
    name = "local"

    def __init__(self, workers: int | None = None, max_batch: int = MAX_BATCH,
                 worker_tags: Sequence[str] = ()) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ValueError(f"workers: needs a positive integer, got {workers!r}")
        self.workers = workers or os.cpu_count() or 1
        self.max_batch = max_batch
        self.worker_tags = _tags(worker_tags)
        self._ctx: BackendContext | None = None
        self._pool: dict[int, _Worker] = {}
        self._backlog: deque[Task] = deque()
        self._outcomes: list[Outcome] = []
        self._seq = 0
        self._mean_task_s = 0.0
        self._samples = 0
        self._semaphores: resources.RunSemaphores | None = None
        self._fatal: str | None = None
        self._tail = LogTail()
        self._prep: dict[str, Any] | None = None
        self._gate_until = 0.0
        self._early_deaths = 0

    # -- workers -----------------------------------------------------------------------
    def start(self, ctx: BackendContext) -> None:
        self._ctx = ctx
        self._semaphores = resources.RunSemaphores(ctx.semaphores)
        ctx.logs.mkdir(parents=True, exist_ok=True)
        self._gate_until = time.monotonic() + START_GATE_S
        for slot in range(self.workers):
            self._spawn(slot)

    def _context(self) -> BackendContext:
        if self._ctx is None:
            self.start(BackendContext(run_dir=Path(tempfile.mkdtemp(prefix="specflow-")),
                                      run_id="adhoc"))
        assert self._ctx is not None
        return self._ctx

    def _spawn(self, slot: int) -> None:
        import multiprocessing.spawn

        ctx = self._context()
        if self._prep is None:
            prep = multiprocessing.spawn.get_preparation_data("specflow-worker")
            prep.pop("authkey", None)  # workers take no multiprocessing connections
            if prep.get("init_main_from_name") == "specflow.__main__":
                del prep["init_main_from_name"]  # the command line defines no operations
            main_path = prep.get("init_main_from_path")
            if main_path is not None and not os.path.isfile(main_path):
                del prep["init_main_from_path"]  # a driver read from stdin: nothing to load
            self._prep = prep
        log_path = str(ctx.logs / f"worker-{slot}.log")
        ours, theirs = socket.socketpair()
        state_file = tempfile.TemporaryFile()
        state_file.truncate(worker_body.STATE_SIZE)
        env = dict(os.environ)
        env[RUN_ID_ENV] = ctx.run_id
        args = [sys.executable, *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
                "-c", _BOOT.format(root=_PACKAGE_ROOT),
                str(theirs.fileno()), str(state_file.fileno()), str(os.getpid())]
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                    pass_fds=(theirs.fileno(), state_file.fileno()), close_fds=True,
                    process_group=0,
                )
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        state = mmap.mmap(state_file.fileno(), worker_body.STATE_SIZE)
        w = _Worker(slot, proc, conn, state, state_file, log_path)
        self._pool[slot] = w
        self._tail.watch(log_path)
        assert self._semaphores is not None
        init = {"prep": self._prep, "imports": tuple(ctx.imports),
                "semaphores": self._semaphores.spec(), "preload": _preload()}
        try:
            conn.send_bytes(pickle.dumps(init, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            pass  # it died at once: its sentinel tells

    def _batch_size(self) -> int:
        if self._samples == 0:
            return 1  # until a task is timed: long tasks in a big first batch idle the rest
        per = max(self._mean_task_s, 1e-6)
        return max(1, min(self.max_batch, int(TARGET_BATCH_SECONDS / per)))

    # -- the interface -----------------------------------------------------------------
    def capacity(self) -> int:
        # enough work for every worker to have a batch running and one waiting
        return max(0, 2 * self.workers * self._batch_size() - self.in_flight())

    def submit(self, tasks: Sequence[Task]) -> None:
        self._context()
        if self._fatal is not None:
            self._outcomes.extend(self._failed(t, self._fatal, "WorkerStartError") for t in tasks)
            return
        self._backlog.extend(tasks)
        for slot in range(self.workers):
            if slot not in self._pool:
                self._spawn(slot)
        self._feed()

    def _feed(self) -> None:
        """Hand queued tasks to workers: first a share to each ready worker without work;
        then, for short tasks and only while no worker is without work (or still starting),
        a second batch to each, so that a worker never waits for the driver. A worker busy
        with a long task gets nothing more."""
        backlog = self._backlog
        if not backlog:
            return
        size = self._batch_size()
        live = [w for w in self._pool.values() if w.kill_reason is None]
        if not live:
            return
        if self._gate_until:
            # the first work waits until every worker has started (or a while), so that
            # a worker which starts late does not leave the others to run all of it; what
            # the ready workers can take one task each of, when that is all there is (a
            # run's first driver-side task, say), goes at once
            if not all(w.ready for w in live) and time.monotonic() < self._gate_until:
                idle = [w for w in live if w.ready and not w.tasks]
                if len(backlog) <= len(idle):
                    for w in idle[:len(backlog)]:
                        self._send(w, [backlog.popleft()])
                return
            self._gate_until = 0.0
        share = max(1, min(size, math.ceil(len(backlog) / len(live))))
        for w in live:
            if not backlog:
                return
            if w.ready and not w.tasks:
                self._send(w, [backlog.popleft() for _ in range(min(share, len(backlog)))])
        prefetch = self._samples == 0 or self._mean_task_s < TARGET_BATCH_SECONDS
        if not prefetch or not all(w.tasks for w in live):
            return
        for w in sorted(live, key=lambda w: len(w.tasks)):
            if not backlog:
                return
            room = min(size, 2 * size - len(w.tasks), len(backlog))
            if room > 0:
                self._send(w, [backlog.popleft() for _ in range(room)])

    def _send(self, w: _Worker, chunk: list[Task]) -> None:
        first = self._seq + 1
        self._seq += len(chunk)
        for i, t in enumerate(chunk):
            w.tasks[first + i] = t
        try:
            data = pickle.dumps((first, chunk), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - e.g. a closure as a task's function
            try:
                import cloudpickle

                data = cloudpickle.dumps((first, chunk), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - fail each task that cannot travel
                for seq in range(first, first + len(chunk)):
                    t = w.tasks.pop(seq)
                    self._outcomes.append(self._failed(
                        t, f"the task cannot be pickled for a worker: "
                           f"{type(exc).__name__}: {exc}", "TaskTransportError"))
                return
        try:
            w.conn.send_bytes(data)
        except OSError:
            pass  # the worker is dead; its sentinel makes its tasks lost

    def wait(self, timeout: float) -> list[Outcome]:
        self._context()
        self._collect(0.0)
        if self._fatal is not None and self._backlog:
            fatal = self._fatal
            self._outcomes.extend(self._failed(t, fatal, "WorkerStartError")
                                  for t in self._backlog)
            self._backlog.clear()
        if not self._outcomes and self._pool and (self._backlog or self._in_workers()):
            self._collect(max(0.0, min(timeout, self._next_deadline())))
        self._enforce_limits()
        self._feed()
        out, self._outcomes = self._outcomes, []
        return out

    def _in_workers(self) -> int:
        return sum(len(w.tasks) for w in self._pool.values())

    def _collect(self, timeout: float) -> None:
        by_conn: dict[Any, _Worker] = {w.conn: w for w in self._pool.values()}
        ended: list[_Worker] = []
        for conn in wait_for(list(by_conn), timeout=timeout):
            w = by_conn[conn]
            if not self._read(w):
                ended.append(w)
        for w in list(self._pool.values()):
            if w in ended or w.proc.poll() is not None:
                try:
                    w.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:  # closed its channel yet lives on
                    w.kill()
                    w.proc.wait()
                self._on_death(w)

    def _read(self, w: _Worker) -> bool:
        """Take every message waiting from ``w``; False when its channel ended."""
        conn = w.conn
        try:
            while conn.poll():
                msg = pickle.loads(conn.recv_bytes())
                self._on_message(w, msg)
        except (EOFError, OSError):
            return False
        except Exception as exc:  # noqa: BLE001 - an outcome that cannot be unpickled here
            self._unreadable(w, exc)
        return True

    def _unreadable(self, w: _Worker, exc: Exception) -> None:
        """A message from ``w`` could not be unpickled: kill it so that its tasks are
        settled like those of any dead worker (the running one fails)."""
        w.kill_reason = ("TaskTransportError", f"TaskTransportError: an outcome could not be "
                         f"unpickled by the driver: {type(exc).__name__}: {exc}")
        w.kill()

    def _on_message(self, w: _Worker, msg: Any) -> None:
        kind = msg[0]
        if kind == "out":
            log_path = w.log_path
            for seq, outcome in msg[1]:
                if w.tasks.pop(seq, None) is None:
                    continue
                outcome.log_path = log_path
                self._learn(outcome)
                self._outcomes.append(outcome)
        elif kind == "ready":
            w.ready = True
            self._early_deaths = 0
            self._feed()
        elif kind == "fatal":
            self._fatal = bounded(f"WorkerStartError: a worker could not start:\n{msg[1]}",
                                  ERROR_LIMIT)

    def _learn(self, o: Outcome) -> None:
        d = o.run_seconds()
        self._samples += 1
        k = 1.0 / min(self._samples, 50)
        self._mean_task_s += (d - self._mean_task_s) * k

    def _on_death(self, w: _Worker) -> None:
        self._read(w)
        code = w.proc.wait()
        running, _ = w.running()
        if self._semaphores is not None:
            self._semaphores.give_back(w.held())
        del self._pool[w.slot]
        why = death_reason(code)
        if not w.ready and self._fatal is None:
            self._early_deaths += 1
            if self._early_deaths >= 3:
                self._fatal = (f"WorkerStartError: worker processes die as they start "
                               f"({why}); see {w.log_path}")
        note = []
        for seq, task in w.tasks.items():
            if self._fatal is not None:
                self._outcomes.append(self._failed(task, self._fatal, "WorkerStartError"))
            elif seq == running:
                if w.kill_reason is None:
                    kind, error = "WorkerDied", f"WorkerDied: {why} while running this task"
                else:
                    kind, error = w.kill_reason
                failed = self._failed(task, error, kind)
                failed.log_path = w.log_path
                self._outcomes.append(failed)
                note.append(f"{LOG_MARK}task {task.id} ({task.operation}) failed: {error}\n")
            else:
                self._outcomes.append(self._failed(
                    task, f"WorkerLost: {why} while this task waited its turn", "WorkerLost",
                    lost=True))
        if not w.tasks or running == 0:
            note.append(f"{LOG_MARK}{why}\n")
        try:
            with open(w.log_path, "a", encoding="utf-8") as log:
                log.writelines(note)
        except OSError:
            pass
        w.tasks.clear()
        w.release()
        if self._fatal is None and not self._closing:
            self._spawn(w.slot)

    _closing = False

    def _failed(self, task: Task, error: str, kind: str, lost: bool = False) -> Outcome:
        now = time.time()
        if kind == "TaskTimeoutError":
            types: tuple[str, ...] = _exc_types(TaskTimeoutError())
        else:
            types = (kind,)
        return Outcome(task.id, False, error=bounded(error, ERROR_LIMIT), exc_types=types,
                       started=now, finished=now, worker=worker_name(), lost=lost)

    # -- runtime limits ----------------------------------------------------------------
    def _next_deadline(self) -> float:
        soonest = math.inf
        now = time.time()
        for w in self._pool.values():
            seq, started = w.running()
            task = w.tasks.get(seq) if seq else None
            if task is not None and task.runtime_limit_sec:
                soonest = min(soonest, started + task.runtime_limit_sec + KILL_GRACE_S - now)
        return soonest

    def _enforce_limits(self) -> None:
        now = time.time()
        for w in list(self._pool.values()):
            seq, started = w.running()
            task = w.tasks.get(seq) if seq else None
            if task is None or not task.runtime_limit_sec or w.kill_reason is not None:
                continue
            limit = task.runtime_limit_sec
            if now - started < limit + KILL_GRACE_S:
                continue
            if w.running()[0] != seq:  # it finished meanwhile
                continue
            w.kill_reason = ("TaskTimeoutError", f"TaskTimeoutError: task exceeded its runtime "
                             f"limit of {limit:g} s; its worker was killed")
            w.kill()
            w.proc.wait()
            self._on_death(w)

    # -- the rest of the interface -----------------------------------------------------
    def in_flight(self) -> int:
        return len(self._backlog) + self._in_workers() + len(self._outcomes)

    def recent_output(self) -> list[str]:
        return self._tail.read()

    def unmet(self, task: Task) -> str | None:
        # every worker is this machine: one pool serves every worker type
        return machine_unmet(task, self.worker_tags)

    def running_ids(self) -> set[str] | None:
        out = set()
        for w in self._pool.values():
            seq, _ = w.running()
            task = w.tasks.get(seq) if seq else None
            if task is not None:
                out.add(task.id)
        return out

    def cancel(self) -> None:
        """Keep what already finished (the next :meth:`wait` returns it), drop the queue,
        and kill the workers; fresh ones start if more work comes."""
        self._backlog.clear()
        for w in list(self._pool.values()):
            self._read(w)
        self._closing = True
        pool = list(self._pool.values())
        for w in pool:
            w.kill()
        for w in pool:
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if self._semaphores is not None:
                self._semaphores.give_back(w.held())
            w.tasks.clear()
            w.release()
        self._pool.clear()
        self._closing = False

    def close(self) -> None:
        self._closing = True
        self._backlog.clear()
        pool = list(self._pool.values())
        for w in pool:
            try:
                w.conn.close()  # the worker sees end-of-file and exits
            except OSError:
                pass
        for w in pool:
            try:
                w.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                w.kill()
                w.proc.wait()
            w.release()
        self._pool.clear()
        if self._semaphores is not None:
            self._semaphores.close()
            self._semaphores = None
