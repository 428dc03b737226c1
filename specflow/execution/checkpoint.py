"""The checkpoint: one SQLite file per run, the record of what happened.

Written only by the driving process. Finished tasks are buffered and committed in batched
transactions (:meth:`Checkpoint.flush`, by count and by age); a crash loses at most the
unflushed bookkeeping, never a task's output. Return values are stored losslessly
(:mod:`specflow.execution.values`), large ones in ``values/`` beside the file. The ``lease``
row names the process driving the run (see :mod:`specflow.run.lease`).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from specflow.execution.rows import (
    FAILED_STATUSES,
    LATEST,
    LIVE_STATUSES,
    TASK_STATUSES,
    TERMINAL_JOB_STATES,
    CheckpointError,
    FlowRow,
    LeaseRow,
    RunInfo,
    TaskRow,
    heartbeat,
)
from specflow.execution.values import ValueStore

#: the rows and statuses live in :mod:`specflow.execution.rows` (no SQLAlchemy); they are
#: exported here too
__all__ = [
    "FAILED_STATUSES", "FORMAT", "LATEST", "LIVE_STATUSES", "MAX_RECORD_DELAY", "OLDER_FORMATS",
    "TASK_STATUSES", "TERMINAL_JOB_STATES", "Checkpoint", "CheckpointError", "FlowRow",
    "LeaseRow", "RunInfo", "TaskRow", "heartbeat", "metadata",
]

FORMAT = "specflow-checkpoint/2"
OLDER_FORMATS = ("specflow-checkpoint/1",)
#: a commit happens at the latest this long after a task's outcome arrived
MAX_RECORD_DELAY = 0.25

metadata = sa.MetaData()

meta_table = sa.Table(
    "specflow_meta",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

run_table = sa.Table(
    "run",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("spec_hash", sa.String, nullable=False),
    sa.Column("spec_file", sa.Text),
    sa.Column("spec_file_hash", sa.String),
    sa.Column("overrides_json", sa.Text, nullable=False, default="[]"),
    sa.Column("imports_json", sa.Text, nullable=False, default="[]"),
    sa.Column("settings_json", sa.Text, nullable=False, default="{}"),
    sa.Column("specflow_version", sa.String, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("driver", sa.String),
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("start_dir", sa.Text),
)

# The driver holding the run: one row, written by the driver that holds the OS lock next to
# the checkpoint; heartbeat is refreshed while it lives (a run on a shared filesystem whose
# lock is not shared across hosts is still protected by the heartbeat).
lease_table = sa.Table(
    "lease",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
    sa.Column("released", sa.Integer, nullable=False, default=0),
)

# Append-only: a task's rows are appended as it reaches a final state (done or failed) and
# the newest row of an id is its state. Appending touches only the last pages of the table,
# where a unique index on the (random) hash ids would rewrite pages all over the file.
tasks_table = sa.Table(
    "tasks",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String, nullable=False),
    sa.Column("operation", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("value_json", sa.Text),
    sa.Column("worker", sa.String),
    sa.Column("log_path", sa.Text),
    # a short human-readable summary of the task's arguments (see specflow.flow.summary)
    sa.Column("args", sa.Text),
)

# What the run's flow returned, and each of its stages (the items its root flow yielded,
# the first few of them): written once, when the driver stops.
flows_table = sa.Table(
    "flows",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("position", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("value_json", sa.Text),
    sa.Column("task_id", sa.String),
)

# The tasks of a live run that have no final state yet (pending, queued, running): a
# snapshot the driver replaces about once a second, so it stays as small as the work in
# flight. Rows left behind by a driver that died are read as ``cancelled``.
live_table = sa.Table(
    "live",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("operation", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("since", sa.Float),
    sa.Column("args", sa.Text),
)

jobs_table = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String, primary_key=True),
    sa.Column("backend", sa.String, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("n_tasks", sa.Integer, nullable=False, default=0),
    sa.Column("log_path", sa.Text),
    sa.Column("updated", sa.Float, nullable=False),
)

def _on_connect(dbapi_conn: Any, record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(fn: _F) -> _F:
    @functools.wraps(fn)
    def wrapper(self: Checkpoint, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return cast(_F, wrapper)


class Checkpoint:
    """Open (or create) a checkpoint file."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise CheckpointError(f"{self.path}: no such checkpoint file")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.path.is_dir():
            raise CheckpointError(f"{self.path}: is a folder, not a checkpoint file")
        self.engine: Engine = sa.create_engine(
            f"sqlite:///{self.path}", poolclass=sa.pool.StaticPool,
            connect_args={"check_same_thread": False},
        )
        event.listen(self.engine, "connect", _on_connect)
        self._pending: list[tuple[Any, ...]] = []
        self._oldest = 0.0
        # the connection is shared with the auto-flush thread (see start_autoflush)
        self._lock = threading.RLock()
        self._auto_stop: threading.Event | None = None
        self._auto_thread: threading.Thread | None = None
        self._auto_error: BaseException | None = None
        self.values = ValueStore(self.path.parent / "values")
        #: whether the file has the live table, and the ids this process put in it
        self._has_live = False
        self._live_ids: set[str] = set()
        try:
            self.conn: Connection = self.engine.connect()
            if create:
                metadata.create_all(self.conn)
                self.conn.execute(
                    sa.insert(meta_table).prefix_with("OR IGNORE"), [{"key": "format", "value": FORMAT}]
                )
                self.conn.commit()
            self._check_format()
            self._has_live = "live" in set(sa.inspect(self.conn).get_table_names())
        except CheckpointError:
            self.engine.dispose()
            raise
        except sa.exc.DatabaseError as exc:
            self.engine.dispose()
            raise CheckpointError(
                f"{self.path}: not a readable SQLite database ({_short_db_error(exc)})"
            ) from None

    def _check_format(self) -> None:
        names = set(sa.inspect(self.conn).get_table_names())
        if "specflow_meta" not in names:
            raise CheckpointError(f"{self.path}: not a specflow checkpoint (no specflow_meta table)")
        fmt = self.conn.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == "format")
        ).scalar()
        if fmt in OLDER_FORMATS:
            raise CheckpointError(
                f"{self.path}: written by an older specflow (format {fmt}); finish the run with "
                "that version, or start it again"
            )
        if fmt != FORMAT:
            raise CheckpointError(
                f"{self.path}: checkpoint format {fmt!r} is not the one this specflow reads ({FORMAT})"
            )
        missing = {"run", "tasks", "jobs", "lease", "flows"} - names
        if missing:
            raise CheckpointError(f"{self.path}: damaged checkpoint (missing tables: {sorted(missing)})")

    # -- run ---------------------------------------------------------------------------
    @_locked
    def create_run(
        self,
        *,
        run_id: str,
        spec: Any,
        spec_hash: str,
        spec_file: str | None,
        spec_file_hash: str | None,
        overrides: list[str],
        imports: list[dict[str, Any]],
        settings: dict[str, Any],
        version: str,
        start_dir: str | None = None,
    ) -> None:
        now = time.time()
        self.conn.execute(
            sa.insert(run_table),
            [
                {
                    "id": run_id,
                    "spec_json": json.dumps(spec),
                    "spec_hash": spec_hash,
                    "spec_file": spec_file,
                    "spec_file_hash": spec_file_hash,
                    "overrides_json": json.dumps(overrides),
                    "imports_json": json.dumps(imports),
                    "settings_json": json.dumps(settings),
                    "specflow_version": version,
                    "created": now,
                    "updated": now,
                    "status": "created",
                    "driver": _driver(),
                    "attempt": 1,
                    "start_dir": start_dir,
                }
            ],
        )
        self.conn.commit()

    @_locked
    def has_run(self) -> bool:
        with self._reading():
            return self.conn.execute(sa.select(run_table.c.id)).first() is not None

    @_locked
    def run_info(self) -> RunInfo:
        try:
            row = self.conn.execute(sa.select(run_table)).mappings().first()
        except sa.exc.DatabaseError as exc:
            raise CheckpointError(f"{self.path}: damaged checkpoint ({_short_db_error(exc)})") from None
        if row is None:
            raise CheckpointError(f"{self.path}: checkpoint holds no run")
        try:
            info = RunInfo(
                id=_text(row["id"], "id"),
                spec=_json(row["spec_json"], "spec_json"),
                spec_hash=_text(row["spec_hash"], "spec_hash"),
                spec_file=_opt_text(row["spec_file"], "spec_file"),
                spec_file_hash=_opt_text(row["spec_file_hash"], "spec_file_hash"),
                overrides=_json(row["overrides_json"], "overrides_json", list),
                imports=_json(row["imports_json"], "imports_json", list),
                settings=_json(row["settings_json"], "settings_json", dict),
                specflow_version=_text(row["specflow_version"], "specflow_version"),
                created=_num(row["created"], "created"),
                updated=_num(row["updated"], "updated"),
                status=_text(row["status"], "status"),
                driver=_opt_text(row["driver"], "driver"),
                attempt=int(_num(row["attempt"], "attempt")),
                start_dir=_opt_text(row["start_dir"], "start_dir"),
            )
        except _Damaged as exc:
            raise CheckpointError(f"{self.path}: damaged checkpoint (run.{exc})") from None
        for imp in info.imports:
            if not isinstance(imp, dict) or not isinstance(imp.get("name"), str):
                raise CheckpointError(f"{self.path}: damaged checkpoint (run.imports_json)")
        return info

    @_locked
    def set_status(self, status: str, *, new_attempt: bool = False) -> None:
        values: dict[str, Any] = {"status": status, "updated": time.time()}
        if new_attempt:
            values["attempt"] = run_table.c.attempt + 1
            values["driver"] = _driver()
        self.conn.execute(sa.update(run_table).values(**values))
        self.conn.commit()

    # -- tasks -------------------------------------------------------------------------
    @_locked
    def record(
        self,
        task_id: str,
        operation: str,
        status: str,
        attempts: int,
        started: float | None,
        finished: float | None,
        error: str | None = None,
        traceback: str | None = None,
        value_json: str | None = None,
        worker: str | None = None,
        log_path: str | None = None,
        value: Any = None,
        args: str | None = None,
    ) -> None:
        """Buffer one task row; :meth:`flush` commits the buffer. ``value`` is stored
        losslessly (large values are written to ``values/`` now, before the row is)."""
        if value is not None and value_json is None:
            value_json = self.values.store(task_id, value)
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(
            (task_id, operation, status, attempts, started, finished, error, traceback,
             value_json, worker, log_path, args)
        )

    def pending(self) -> int:
        return len(self._pending)

    @_locked
    def flush(self) -> None:
        if self._auto_error is not None:
            error, self._auto_error = self._auto_error, None
            raise error
        if not self._pending:
            return
        rows = self._pending
        try:
            self.conn.exec_driver_sql(
                "INSERT INTO tasks (id, operation, status, attempts, started, finished, "
                "error, traceback, value_json, worker, log_path, args) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            # a task with a final state is no longer pending, queued or running
            gone = [(r[0],) for r in rows if r[0] in self._live_ids]
            if gone:
                self.conn.exec_driver_sql("DELETE FROM live WHERE id = ?", gone)
            self.conn.commit()
            self._live_ids.difference_update(g for (g,) in gone)
        except sa.exc.OperationalError as exc:
            try:
                self.conn.rollback()
            except sa.exc.DBAPIError:
                pass
            raise CheckpointError(
                f"{self.path}: cannot record finished tasks ({_short_db_error(exc)}); "
                f"{len(rows)} outcome(s) are not on record and will run again on resume"
            ) from None
        self._pending = []

    def maybe_flush(self, max_rows: int = 2000, max_age: float = 0.05) -> None:
        """Commit when the buffer is large, or its oldest row waited ``max_age`` seconds."""
        if self._pending and (
            len(self._pending) >= max_rows or time.monotonic() - self._oldest >= max_age
        ):
            self.flush()

    @_locked
    def done(self) -> tuple[set[str], dict[str, str]]:
        """The ids of done (or reused) tasks, and the stored return values of those that have
        one (one scan; done is final: a done row is never followed by another row of its id)."""
        ids: set[str] = set()
        values: dict[str, str] = {}
        with self._reading():
            for tid, value in self.conn.exec_driver_sql(
                "SELECT id, value_json FROM tasks WHERE status IN ('done', 'reused')"
            ):
                if not isinstance(tid, str) or not (value is None or isinstance(value, str)):
                    raise CheckpointError(f"{self.path}: damaged checkpoint (a task row)")
                ids.add(tid)
                if value is not None:
                    values[tid] = value
        return ids, values

    def reused_ids(self) -> set[str]:
        """The ids of tasks this run recorded as reused (not executed by it)."""
        with self._reading():
            return {tid for (tid,) in self.conn.exec_driver_sql(
                "SELECT id FROM tasks WHERE status = 'reused'")}

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.DatabaseError as exc:
            raise CheckpointError(
                f"{self.path}: damaged checkpoint ({_short_db_error(exc)})"
            ) from None

    def task_rows(self, status: str | Iterable[str] | None = None, *,
                  operation: str | None = None, limit: int | None = None,
                  live: bool = False) -> Iterator[TaskRow]:
        """The newest state of each task (optionally only those with ``status`` — one or
        several — of ``operation``, the first ``limit``): finished tasks in the order they
        finished, then those without a final state. ``live`` says the run's driver is
        alive, so its snapshot of pending/queued/running tasks is current; otherwise tasks
        it left without a final state are ``cancelled``."""
        wanted = None if status is None else (
            {status} if isinstance(status, str) else set(status))
        conds, params = [], []
        if wanted is not None:
            conds.append(f"status IN ({','.join('?' * len(wanted))})")
            params.extend(sorted(wanted))
        if operation is not None:
            conds.append("operation = ?")
            params.append(operation)
        has_live = self._has_live
        if live and has_live:
            conds.append("id NOT IN (SELECT id FROM live)")
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        cols = ", ".join(c.name for c in tasks_table.columns if c.name != "seq")
        left = None if limit is None else int(limit)
        with self._lock, self._reading():
            rows = self.conn.exec_driver_sql(
                f"SELECT {cols} FROM {LATEST}{where} ORDER BY seq"
                + (f" LIMIT {left}" if left is not None else ""), tuple(params)
            ).mappings().all()
            out = [TaskRow(**dict(row)) for row in rows]
            if has_live and (left is None or len(out) < left):
                out.extend(self._live_rows(wanted, operation, live,
                                           None if left is None else left - len(out)))
        yield from out

    def _live_rows(self, wanted: set[str] | None, operation: str | None, live: bool,
                   limit: int | None) -> list[TaskRow]:
        sql = "SELECT id, operation, status, attempts, since, args FROM live"
        conds, params = [], []
        if not live:
            # left by a driver that is gone: cancelled, unless the task has a final row
            if wanted is not None and "cancelled" not in wanted:
                return []
            conds.append("id NOT IN (SELECT id FROM tasks)")
        elif wanted is not None:
            conds.append(f"status IN ({','.join('?' * len(wanted))})")
            params.extend(sorted(wanted))
        if operation is not None:
            conds.append("operation = ?")
            params.append(operation)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        sql += " ORDER BY since, id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        rows = self.conn.exec_driver_sql(sql, tuple(params)).all()
        return [TaskRow(id=tid, operation=op, status=st if live else "cancelled",
                        attempts=int(att or 0), started=since if st == "running" else None,
                        finished=None, error=None, traceback=None, value_json=None,
                        worker=None, log_path=None, args=args)
                for tid, op, st, att, since, args in rows]

    def _ensure_live(self) -> None:
        if not self._has_live:  # a checkpoint written before the table existed
            live_table.create(self.conn, checkfirst=True)
            self._has_live = True

    @_locked
    def record_live(self, rows: Iterable[tuple[str, str, str, int, float | None, str | None]]
                    ) -> None:
        """Replace the record of tasks without a final state: (id, operation, status,
        attempts, since, args) each."""
        self._ensure_live()
        self.conn.exec_driver_sql("DELETE FROM live")
        self._live_ids.clear()
        self.update_live(rows, ())

    @_locked
    def update_live(self, rows: Iterable[tuple[str, str, str, int, float | None, str | None]],
                    gone: Iterable[str]) -> None:
        """Insert or change the live rows ``rows``; remove those of the ids ``gone``."""
        self._ensure_live()
        values = list(rows)
        if values:
            self.conn.exec_driver_sql(
                "INSERT OR REPLACE INTO live (id, operation, status, attempts, since, args) "
                "VALUES (?,?,?,?,?,?)", values)
        removed = [(tid,) for tid in gone]
        if removed:
            self.conn.exec_driver_sql("DELETE FROM live WHERE id = ?", removed)
        self.conn.commit()
        self._live_ids.update(v[0] for v in values)
        self._live_ids.difference_update(t for (t,) in removed)

    # -- flows -------------------------------------------------------------------------
    @_locked
    def record_flows(self, rows: Iterable[FlowRow]) -> None:
        """Replace the record of the run's and its stages' values."""
        values = [(r.position, r.name, r.status, r.value_json, r.task_id) for r in rows]
        self.conn.exec_driver_sql("DELETE FROM flows")
        if values:
            self.conn.exec_driver_sql(
                "INSERT INTO flows (position, name, status, value_json, task_id) "
                "VALUES (?,?,?,?,?)", values,
            )
        self.conn.commit()

    @_locked
    def flows(self) -> list[FlowRow]:
        with self._reading():
            rows = self.conn.exec_driver_sql(
                "SELECT position, name, status, value_json, task_id FROM flows ORDER BY seq"
            ).all()
        return [FlowRow(*r) for r in rows]

    @_locked
    def counts(self, *, live: bool = False) -> dict[str, dict[str, int]]:
        """``{operation: {status: n}}`` over the newest state of each task (``live``: see
        :meth:`task_rows`)."""
        out: dict[str, dict[str, int]] = {}
        has_live = self._has_live
        final = f"SELECT operation, status, COUNT(*) FROM {LATEST}"
        if live and has_live:
            final += " WHERE id NOT IN (SELECT id FROM live)"
        queries = [final + " GROUP BY operation, status"]
        if has_live:
            queries.append(
                "SELECT operation, status, COUNT(*) FROM live GROUP BY operation, status" if live
                else "SELECT operation, 'cancelled', COUNT(*) FROM live "
                     "WHERE id NOT IN (SELECT id FROM tasks) GROUP BY operation")
        with self._reading():
            for q in queries:
                for op, status, n in self.conn.exec_driver_sql(q).all():
                    c = out.setdefault(op, {})
                    c[status] = c.get(status, 0) + n
        return out

    @_locked
    def timings(self) -> dict[str, dict[str, float]]:
        with self._reading():
            rows = self.conn.exec_driver_sql(
                "SELECT operation, COUNT(*), SUM(finished - started), MAX(finished - started), "
                "MIN(started), MAX(finished) FROM tasks WHERE status = 'done' GROUP BY operation"
            ).all()
        return {
            op: {"n": n, "total_s": tot or 0.0, "max_s": mx or 0.0, "first": first or 0.0,
                 "last": last or 0.0}
            for op, n, tot, mx, first, last in rows
        }

    # -- lease -------------------------------------------------------------------------
    @_locked
    def lease(self) -> LeaseRow | None:
        try:
            row = self.conn.execute(sa.select(lease_table).where(lease_table.c.id == 1)).first()
        except sa.exc.DatabaseError as exc:
            raise CheckpointError(f"{self.path}: damaged checkpoint ({_short_db_error(exc)})") from None
        if row is None:
            return None
        try:
            return LeaseRow(str(row.host), int(row.pid), float(row.started),
                            float(row.heartbeat), bool(row.released))
        except (TypeError, ValueError):
            raise CheckpointError(f"{self.path}: damaged checkpoint (lease row)") from None

    @_locked
    def write_lease(self, host: str, pid: int) -> None:
        now = time.time()
        self.conn.exec_driver_sql(
            "INSERT INTO lease (id, host, pid, started, heartbeat, released) "
            "VALUES (1, ?, ?, ?, ?, 0) ON CONFLICT(id) DO UPDATE SET host = excluded.host, "
            "pid = excluded.pid, started = excluded.started, heartbeat = excluded.heartbeat, "
            "released = 0",
            (host, pid, now, now),
        )
        self.conn.commit()

    @_locked
    def release_lease(self, host: str, pid: int) -> None:
        self.conn.exec_driver_sql(
            "UPDATE lease SET released = 1, heartbeat = ? WHERE id = 1 AND host = ? AND pid = ?",
            (time.time(), host, pid),
        )
        self.conn.commit()

    def value_of(self, raw: str) -> Any:
        """Decode a stored value (see :class:`ValueStore.load`)."""
        return self.values.load(raw)

    # -- jobs --------------------------------------------------------------------------
    @_locked
    def record_jobs(self, backend: str, jobs: Iterable[Any]) -> None:
        """Insert or update job rows; an update keeps the task count and log path already
        stored when it carries none."""
        rows = [
            (j.job_id, backend, j.state, j.n_tasks, j.log_path, j.updated) for j in jobs
        ]
        if rows:
            self.conn.exec_driver_sql(
                "INSERT INTO jobs (job_id, backend, state, n_tasks, log_path, updated) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(job_id) DO UPDATE SET "
                "state = excluded.state, updated = excluded.updated, "
                "n_tasks = CASE WHEN excluded.n_tasks > 0 THEN excluded.n_tasks "
                "ELSE jobs.n_tasks END, "
                "log_path = COALESCE(excluded.log_path, jobs.log_path)",
                rows,
            )
            usage = [(j.job_id, getattr(j, "busy_s", None), getattr(j, "allocated_s", None),
                      getattr(j, "note", None)) for j in jobs]
            usage = [u for u in usage if u[1] is not None or u[3] is not None]
            if usage:
                # busy and allocated seconds per job (for efficiency in `status`): a table of
                # its own, so checkpoints without it read as before
                self.conn.exec_driver_sql(
                    "CREATE TABLE IF NOT EXISTS job_usage (job_id TEXT PRIMARY KEY, "
                    "busy_s REAL, allocated_s REAL, note TEXT)")
                self.conn.exec_driver_sql(
                    "INSERT INTO job_usage (job_id, busy_s, allocated_s, note) VALUES "
                    "(?,?,?,?) ON CONFLICT(job_id) DO UPDATE SET "
                    "busy_s = COALESCE(excluded.busy_s, job_usage.busy_s), "
                    "allocated_s = COALESCE(excluded.allocated_s, job_usage.allocated_s), "
                    "note = COALESCE(excluded.note, job_usage.note)", usage)
            self.conn.commit()

    @_locked
    def live_jobs(self) -> list[str]:
        rows = self.conn.execute(sa.select(jobs_table.c.job_id, jobs_table.c.state))
        return [jid for jid, state in rows if state.split()[0].upper() not in TERMINAL_JOB_STATES]

    @_locked
    def jobs(self) -> list[dict[str, Any]]:
        with self._reading():
            rows = [dict(r) for r in self.conn.execute(sa.select(jobs_table)).mappings()]
            has_usage = self.conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'job_usage'"
            ).first() is not None
            usage = {}
            if has_usage:
                usage = {jid: (b, a, n) for jid, b, a, n in self.conn.exec_driver_sql(
                    "SELECT job_id, busy_s, allocated_s, note FROM job_usage")}
        for r in rows:
            b, a, n = usage.get(r["job_id"], (None, None, None))
            r["busy_s"], r["allocated_s"], r["note"] = b, a, n
        return rows

    def start_autoflush(self, max_age: float = MAX_RECORD_DELAY) -> None:
        """Commit buffered rows from a thread once the oldest is ``max_age`` seconds old, so
        finished work is on record even while the driver's thread is busy (e.g. running a
        long task inline)."""
        if self._auto_thread is not None:
            return
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(max_age / 2):
                with self._lock:
                    if self._pending and time.monotonic() - self._oldest >= max_age:
                        try:
                            self.flush()
                        except BaseException as exc:  # noqa: BLE001 - re-raised in the driver
                            self._auto_error = exc
                            return

        self._auto_stop = stop
        self._auto_thread = threading.Thread(target=loop, name="specflow-checkpoint", daemon=True)
        self._auto_thread.start()

    def stop_autoflush(self) -> None:
        if self._auto_stop is not None:
            self._auto_stop.set()
            if self._auto_thread is not None:
                self._auto_thread.join(timeout=10)
        self._auto_stop = None
        self._auto_thread = None

    def close(self) -> None:
        self.stop_autoflush()
        try:
            self.flush()
        finally:
            self.conn.close()
            self.engine.dispose()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _driver() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Damaged(Exception):
    pass


def _json(raw: Any, name: str, kind: type | None = None) -> Any:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        raise _Damaged(name) from None
    if kind is not None and not isinstance(value, kind):
        raise _Damaged(name)
    return value


def _text(raw: Any, name: str) -> str:
    if not isinstance(raw, str):
        raise _Damaged(name)
    return raw


def _opt_text(raw: Any, name: str) -> str | None:
    return None if raw is None else _text(raw, name)


def _num(raw: Any, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise _Damaged(name)
    return float(raw)


def _short_db_error(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]
