"""What a run's record says, as plain data: the one source of ``specflow status --json``,
``status``'s text, ``specflow report`` and ``--trace``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from specflow.execution.checkpoint import (
    FAILED_STATUSES,
    LATEST,
    TASK_STATUSES,
    Checkpoint,
    TaskRow,
)
from specflow.execution.values import ValueNotStored
from specflow.run.record import Run

#: values whose stored text is longer than this are not listed with the tasks
SMALL_VALUE = 2000


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON form of a decoded task value, for showing (not for reading back)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth > 20:
        return "…"
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v, depth + 1) for v in value), key=repr)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    shape = getattr(value, "shape", None)
    if shape is not None:
        if getattr(value, "size", 2) == 1 and hasattr(value, "item"):
            return jsonable(value.item(), depth + 1)
        return f"<array {getattr(value, 'dtype', '?')}{list(shape)}>"
    return repr(value)


def shown_value(ck: Checkpoint, raw: str | None, *, limit: int | None = SMALL_VALUE) -> Any:
    """The value of a stored row for showing: None, its JSON form, or a note why not."""
    if raw is None:
        return None
    if limit is not None and len(raw) > limit:
        return f"<large value: {len(raw):,} characters stored>"
    try:
        return jsonable(ck.value_of(raw))
    except (ValueNotStored, ValueError) as exc:
        return f"<not stored: {exc}>"


def task_dict(ck: Checkpoint, r: TaskRow, *, traceback: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": r.id, "operation": r.operation, "status": r.status, "attempts": r.attempts,
        "args": r.args, "value": shown_value(ck, r.value_json), "error": r.error,
        "log": r.log_path, "started": r.started, "finished": r.finished, "worker": r.worker,
    }
    if traceback:
        d["traceback"] = r.traceback
    return d


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def operation_stats(ck: Checkpoint) -> dict[str, dict[str, Any]]:
    """Per operation: done/failed counts, retries, and the times of its done tasks."""
    durations: dict[str, list[float]] = {}
    retries: dict[str, int] = {}
    conn = ck.conn
    for op, status, attempts, started, finished in conn.exec_driver_sql(
        f"SELECT operation, status, attempts, started, finished FROM {LATEST}"
    ):
        retries[op] = retries.get(op, 0) + max(0, int(attempts or 1) - 1)
        if status == "done" and started is not None and finished is not None:
            durations.setdefault(op, []).append(max(0.0, float(finished) - float(started)))
    out: dict[str, dict[str, Any]] = {}
    for op in sorted(set(retries)):
        ds = sorted(durations.get(op, []))
        n = len(ds)
        out[op] = {
            "n": n, "retries": retries.get(op, 0),
            "total_s": sum(ds), "mean_s": sum(ds) / n if n else 0.0,
            "p50_s": _percentile(ds, 0.5), "p95_s": _percentile(ds, 0.95),
            "max_s": ds[-1] if ds else 0.0,
        }
    return out


def totals(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """Tasks per status over all operations (every status, zero where none)."""
    return {k: sum(c.get(k, 0) for c in counts.values()) for k in TASK_STATUSES}


def status_columns(totals: dict[str, int]) -> list[str]:
    """The statuses a table of a run shows: done and failed always, the others where some
    task has them."""
    return [k for k in TASK_STATUSES if k in ("done", "failed") or totals.get(k, 0)]


def run_data(
    run: Run,
    *,
    tasks: bool = False,
    failures: bool = True,
    operation: str | None = None,
    limit: int | None = None,
    states: list[str] | None = None,
) -> dict[str, Any]:
    """Everything ``status --json`` says of a run (with ``tasks``: every task)."""
    ck = run.checkpoint
    info = run.info()
    state = run.status()
    counts = run.counts()
    stats = operation_stats(ck)
    timings = ck.timings()
    for op, tm in timings.items():
        st = stats.get(op, {})
        tm.update({k: st[k] for k in ("mean_s", "p50_s", "p95_s", "retries") if k in st})
    data: dict[str, Any] = {
        "run": info.id, "status": state, "spec_file": info.spec_file,
        "run_dir": str(run.run_dir), "checkpoint": str(ck.path),
        "created": info.created, "updated": info.updated,
        "duration": max(0.0, info.updated - info.created), "attempt": info.attempt,
        "specflow_version": info.specflow_version,
        "backend": info.settings.get("backend"), "settings": info.settings,
        "overrides": info.overrides,
        "counts": counts, "timings": timings,
        "totals": totals(counts),
    }
    rows = ck.flows()
    run_row = next((r for r in rows if r.position == "run"), None)
    data["result"] = shown_value(ck, run_row.value_json) if run_row else None
    data["stages"] = [
        {"position": r.position, "name": r.name, "status": r.status, "task_id": r.task_id,
         "value": shown_value(ck, r.value_json)}
        for r in rows if r.position.startswith("stage")
    ]
    data["skipped_flows"] = [r.name for r in rows if r.status == "skipped"]
    if failures:
        data["failures"] = [
            task_dict(ck, r)
            for r in run.task_rows(FAILED_STATUSES, operation=operation, limit=limit)
        ]
    data["jobs"] = ck.jobs()
    if tasks:
        data["tasks"] = [task_dict(ck, r, traceback=False)
                         for r in run.task_rows(states or None, operation=operation,
                                                limit=limit)]
    return data


def log_excerpt(log_path: str | None, task_id: str, lines: int = 40) -> str | None:
    """The part of a task's log that concerns it: from the first line naming the task (its
    boundary mark) on, or the log's last lines."""
    if not log_path:
        return None
    p = Path(log_path)
    try:
        with open(p, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 2_000_000))
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    all_lines = text.splitlines()
    key = task_id[:12]
    for i, line in enumerate(all_lines):
        if key in line:
            # from the mark that opens the task's output to the one that closes it
            end = next((j for j in range(i + 1, len(all_lines))
                        if all_lines[j].startswith("==> ")), len(all_lines) - 1)
            block = all_lines[i : end + 1]
            return "\n".join(block if len(block) <= lines else
                             block[:1] + ["…"] + block[-(lines - 1):])
    return "\n".join(all_lines[-lines:])


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
