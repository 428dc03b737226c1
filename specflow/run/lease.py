"""One driver per run: an OS lock next to the checkpoint plus the checkpoint's lease row.

The driver holds ``driver.lock`` (``flock``) for its whole life; the lock dies with the
process, whatever killed it, so on one host a free lock proves the last driver is gone. The
lease row (host, pid, started, heartbeat) covers a run dir on a filesystem shared by several
hosts, where the lock may not be seen from another host: a lease held by another host whose
heartbeat is fresh is respected. A lease is taken over only when its driver is provably gone:
the lock is free and either the lease names this host, or its heartbeat is older than
:data:`STALE_AFTER` seconds.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from specflow.execution.rows import LeaseRow, heartbeat

if TYPE_CHECKING:
    from specflow.execution.checkpoint import Checkpoint

LOCK_NAME = "driver.lock"
#: seconds between heartbeats of a live driver
HEARTBEAT_EVERY = 5.0
#: a lease of another host whose heartbeat is older than this is taken to be dead
STALE_AFTER = 60.0


class LeaseHeld(Exception):
    """Another live driver holds the run."""


def host_name() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(row: LeaseRow | None) -> str:
    if row is None:
        return "another process"
    age = max(0.0, time.time() - row.heartbeat)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.started))
    return f"pid {row.pid} on {row.host} (since {started}, heartbeat {age:.0f} s ago)"


def lock_is_free(run_dir: Path) -> bool | None:
    """Whether nobody holds the run's lock (None: the run has no lock file)."""
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def driver_gone(run_dir: Path, row: LeaseRow | None) -> bool:
    """True when the run's last driver is provably not running (for ``crashed``)."""
    free = lock_is_free(run_dir)
    if free is False:
        return False
    if row is None or row.released:
        return True
    if row.host == host_name():
        return free is True or not pid_alive(row.pid)
    return time.time() - row.heartbeat > STALE_AFTER


@dataclass
class Lease:
    """The lease of a driver on one run (see the module doc)."""

    run_dir: Path
    checkpoint: Checkpoint
    fd: int
    host: str
    pid: int
    #: the previous driver whose lease was taken over (its description), if any
    took_over: str | None = None
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, run_dir: Path, checkpoint: Checkpoint) -> Lease:
        path = run_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LeaseHeld(
                f"{run_dir} is being driven by {describe(checkpoint.lease())}; "
                "wait for it to finish or stop it first"
            ) from None
        host, pid = host_name(), os.getpid()
        try:
            row = checkpoint.lease()
            took_over = None
            if row is not None and not row.released:
                fresh = time.time() - row.heartbeat <= STALE_AFTER
                if row.host != host and fresh:
                    raise LeaseHeld(
                        f"{run_dir} is being driven by {describe(row)} (another host); wait "
                        f"for it, or for its heartbeat to be {STALE_AFTER:.0f} s old"
                    )
                took_over = describe(row)
            checkpoint.write_lease(host, pid)
        except BaseException:
            os.close(fd)
            raise
        lease = cls(run_dir, checkpoint, fd, host, pid, took_over)
        lease._start_heartbeat()
        return lease

    def _start_heartbeat(self) -> None:
        stop = threading.Event()
        path = self.checkpoint.path

        def beat() -> None:
            while not stop.wait(HEARTBEAT_EVERY):
                try:
                    if not heartbeat(path, self.host, self.pid):
                        return
                except Exception:  # noqa: BLE001 - a missed beat is retried next time
                    continue

        self._stop = stop
        self._thread = threading.Thread(target=beat, name="specflow-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._stop = None
        try:
            self.checkpoint.release_lease(self.host, self.pid)
        finally:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
