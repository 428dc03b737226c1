"""The body of a local worker process (see :mod:`specflow.backends.local`).

A worker is started by the driving process with three arguments: the file descriptor of its
end of a socket pair (the task channel), the descriptor of a small shared state block, and
the driver's pid. Its file descriptors 1 and 2 are its log file.

It lives only as long as its driver: the kernel kills it when the driver dies
(``PR_SET_PDEATHSIG`` on Linux), and the thread reading the task channel kills it and its
process group as soon as the channel reports end-of-file, which happens when the driver is
gone whatever ended it. Before each task it checks that its parent is still the driver.

Messages are pickled and framed by :class:`multiprocessing.connection.Connection`:

* driver → worker: first ``{"prep", "imports", "semaphores", "preload"}`` (``preload``:
  modules it imports in the background once ready), then ``(first_seq, tasks)``
  batches (task ``i`` of a batch has sequence number ``first_seq + i``);
* worker → driver: ``("ready", pid)``, ``("fatal", text)`` when it cannot start, and
  ``("out", [(seq, outcome), ...])`` as tasks finish, gathered for at most
  :data:`COALESCE_S` while more work is queued, at once when the worker runs dry.

Tasks run through a :class:`~specflow.backends.base.Pipeline`: the writes a task leaves in
flight overlap the next tasks, and the small writes of neighbouring tasks are staged in one
storage transaction committed for the group; a task is reported only once its writes are
durable. When the worker dies, the tasks it ran whose writes were not yet durable come back
as lost like those still queued (the running one fails).

The shared state block holds the sequence number of the running task (0: none), the time
it started, and how many units of each resource semaphore the worker holds, so that the
driver can tell which task a dead worker was running, enforce runtime limits from outside,
and give back the semaphore units of a killed worker.
"""

from __future__ import annotations

import mmap
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
import traceback
from typing import Any

STATE_SIZE = 64
STATE_FORMAT = "<qd"
HELD_OFFSET = 16
COALESCE_S = 0.02
#: the inbox item of tasks to run again, each on its own
RERUN = -1


def _die_with_parent(driver_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except Exception:  # noqa: BLE001 - the channel watch still ends the worker
            pass
    if os.getppid() != driver_pid:  # the driver died before the line above
        os._exit(70)


def _kill_group() -> None:
    """End this worker and whatever its tasks started in its process group, at once."""
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(71)


def main() -> None:
    from specflow.backends.tuning import tune_allocator, tune_collector

    sock_fd, state_fd, driver_pid = (int(a) for a in sys.argv[1:4])
    _die_with_parent(driver_pid)
    tune_allocator()
    for fd in (sock_fd, state_fd):
        os.set_inheritable(fd, False)  # the channel must end with this process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what Ctrl-C means
    from multiprocessing.connection import Connection

    conn = Connection(sock_fd)
    state = mmap.mmap(state_fd, STATE_SIZE)
    try:
        init = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        os._exit(72)
    try:
        _prepare(init, state)
    except BaseException:  # noqa: BLE001 - told to the driver, which fails the run's tasks
        text = traceback.format_exc()
        sys.stderr.write(text)
        sys.stderr.flush()
        try:
            conn.send_bytes(pickle.dumps(("fatal", text[-16384:])))
        finally:
            os._exit(1)
    tune_collector()
    Worker(conn, state, driver_pid, tuple(init.get("preload", ()))).serve()


def _prepare(init: dict[str, Any], state: mmap.mmap) -> None:
    import faulthandler
    import multiprocessing.spawn

    from specflow import resources
    from specflow.backends.base import import_modules

    faulthandler.enable()  # a crash leaves its traceback in the log
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    multiprocessing.spawn.prepare(init["prep"])  # the driver's sys.path, cwd and __main__
    held = memoryview(state)[HELD_OFFSET : HELD_OFFSET + 4 * len(resources.RESOURCES)].cast("i")
    resources.install(init["semaphores"], held)
    import_modules(init["imports"])


class Worker:
    def __init__(self, conn: Any, state: mmap.mmap, driver_pid: int,
                 preload: tuple[str, ...] = ()) -> None:
        self.preload = preload
        self.conn = conn
        self.state = state
        self.driver_pid = driver_pid
        self.inbox: queue.SimpleQueue[tuple[int, list[Any]]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.pending: list[tuple[int, Any]] = []
        self.wake = threading.Event()

    def serve(self) -> None:
        self.send(("ready", os.getpid()))
        if self.preload:
            threading.Thread(target=_preload, args=(self.preload,), name="specflow-preload",
                             daemon=True).start()
        threading.Thread(target=self._read, name="specflow-channel", daemon=True).start()
        threading.Thread(target=self._flusher, name="specflow-flush", daemon=True).start()
        self._run()

    # -- threads ---------------------------------------------------------------------------
    def _read(self) -> None:
        recv = self.conn.recv_bytes
        put = self.inbox.put
        try:
            while True:
                put(pickle.loads(recv()))
        except BaseException:  # noqa: BLE001 - end of file: the driver is gone or done
            _kill_group()

    def _flusher(self) -> None:
        try:
            while True:
                self.wake.wait()
                self.wake.clear()
                time.sleep(COALESCE_S)
                self.flush()
        except BaseException:  # noqa: BLE001
            _kill_group()

    # -- sending ---------------------------------------------------------------------------
    def send(self, message: Any) -> None:
        try:
            self.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            _kill_group()

    def flush(self) -> None:
        with self.lock:
            if not self.pending:
                return
            items = self.pending
            self.pending = []
            try:
                data = pickle.dumps(("out", items), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - find the outcomes that cannot travel
                data = pickle.dumps(("out", [_picklable(i) for i in items]),
                                    protocol=pickle.HIGHEST_PROTOCOL)
            try:
                self.conn.send_bytes(data)
            except OSError:
                _kill_group()

    # -- running ---------------------------------------------------------------------------
    def _report(self, seq: int, outcome: Any) -> None:
        with self.lock:
            self.pending.append((seq, outcome))
            first = len(self.pending) == 1
        if first:
            self.wake.set()

    def _rerun(self, items: list[tuple[int, Any]]) -> None:
        self.inbox.put((RERUN, items))

    def _run(self) -> None:
        from specflow.backends.base import Pipeline, run_task, task_footer, task_header

        get = self.inbox.get
        empty = self.inbox.empty
        state = self.state
        pack = struct.pack_into
        driver_pid = self.driver_pid
        stdout, stderr = sys.stdout, sys.stderr
        write = os.write
        lseek = os.lseek
        end = lseek(1, 0, os.SEEK_END)
        seq = 0

        def one(task: Any) -> Any:
            nonlocal end
            if os.getppid() != driver_pid:
                _kill_group()
            # where the log ends after the header: anything past it is the task's output
            mark = end + write(1, task_header(task))
            pack(STATE_FORMAT, state, 0, seq, time.time())
            outcome = run_task(task, check_value=False)
            pack(STATE_FORMAT, state, 0, 0, 0.0)
            stdout.flush()
            stderr.flush()
            end = lseek(1, 0, os.SEEK_END)
            if not outcome.ok or end != mark:
                end += write(1, task_footer(task, outcome))
            return outcome

        pipeline = Pipeline(self._report, self._rerun, run=one)
        while True:
            first, tasks = get()
            if first == RERUN:  # tasks of a group whose commit failed: each on its own now
                for seq, task in tasks:
                    pipeline.run(seq, task, grouped=False)
            else:
                last = len(tasks) - 1
                for i, task in enumerate(tasks):
                    seq = first + i
                    pipeline.run(seq, task, ahead=tasks[i + 1] if i < last else None)
            if empty():
                # nothing queued: commit what the group holds and wait for more work (the
                # pipeline reports these tasks as soon as their writes are durable); what is
                # reported already goes now
                if pipeline.end_group():
                    self.flush()


def _preload(modules: tuple[str, ...]) -> None:
    """Import what the first tasks will need while the worker waits for them (a failure
    here is left to the task that needs the module to report)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 - the task importing it reports the error
            pass


def _picklable(item: tuple[int, Any]) -> tuple[int, Any]:
    from specflow.backends.base import describe_error, transport_failure

    seq, outcome = item
    try:
        pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001
        transport_failure(outcome, describe_error(exc))
    return seq, outcome
