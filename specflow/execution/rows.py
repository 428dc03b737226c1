"""What a checkpoint holds, without the database: the statuses, the rows a checkpoint returns,
its error, and the lease's heartbeat (plain sqlite3).

A driver that keeps no checkpoint imports only this module; :mod:`specflow.execution.checkpoint`
(and with it SQLAlchemy) is loaded when a checkpoint is opened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the newest row of every task id
LATEST = "(SELECT * FROM tasks WHERE seq IN (SELECT MAX(seq) FROM tasks GROUP BY id))"
#: every status a task can have, in the order a task goes through them
TASK_STATUSES = ("pending", "queued", "running", "done", "failed", "cancelled", "timeout",
                 "skipped", "reused")
#: statuses of tasks that have not reached a final state (kept in the ``live`` table)
LIVE_STATUSES = ("pending", "queued", "running")
#: final statuses of tasks that did not succeed and were tried
FAILED_STATUSES = ("failed", "timeout")

TERMINAL_JOB_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "PREEMPTED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "DONE",
    "LOST",
}


class CheckpointError(Exception):
    """The file is not a specflow checkpoint, or it is damaged."""


@dataclass
class RunInfo:
    id: str
    spec: Any
    spec_hash: str
    spec_file: str | None
    spec_file_hash: str | None
    overrides: list[str]
    imports: list[dict[str, Any]]
    settings: dict[str, Any]
    specflow_version: str
    created: float
    updated: float
    status: str
    driver: str | None
    attempt: int
    start_dir: str | None


@dataclass
class LeaseRow:
    host: str
    pid: int
    started: float
    heartbeat: float
    released: bool


@dataclass
class TaskRow:
    id: str
    operation: str
    status: str
    attempts: int
    started: float | None
    finished: float | None
    error: str | None
    traceback: str | None
    value_json: str | None
    worker: str | None
    log_path: str | None
    args: str | None = None


@dataclass
class FlowRow:
    position: str
    name: str
    status: str
    value_json: str | None
    task_id: str | None


def heartbeat(path: Path, host: str, pid: int) -> bool:
    """Refresh the lease's heartbeat from another thread (its own connection). False when
    the lease is no longer this driver's."""
    import sqlite3

    con = sqlite3.connect(str(path), timeout=10)
    try:
        cur = con.execute(
            "UPDATE lease SET heartbeat = ? WHERE id = 1 AND host = ? AND pid = ? AND released = 0",
            (time.time(), host, pid),
        )
        con.commit()
        return cur.rowcount == 1
    finally:
        con.close()

