"""The runs a server started: each is a ``specflow run`` process under the server's run root,
so it is resumable by ``specflow resume`` and listed by ``specflow runs`` like any other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specflow.builder.registry import required_opt_ins
from specflow.execution.checkpoint import FAILED_STATUSES, CheckpointError
from specflow.run import Run
from specflow.run.api import new_run_id, spec_hash
from specflow.run.inspect import totals
from specflow.run.settings import BACKEND_NAMES, OPT_INS
from specflow.spec import SpecError

FORMATS = {"yaml": ".yaml", "json": ".json", "cue": ".cue"}
EVENTS_NAME = "events.jsonl"


class Refused(Exception):
    """A submission the server will not run: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Launched:
    run_id: str
    run_dir: Path
    proc: subprocess.Popen[bytes]
    kind: str  # run | resume


@dataclass
class RunManager:
    root: Path
    opt_ins: frozenset[str] = frozenset()
    max_runs: int = 4
    _live: dict[str, Launched] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.root = self.root.absolute()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- submitting --------------------------------------------------------------------
    def submit(self, body: dict[str, Any]) -> str:
        text = body.get("spec")
        fmt = body.get("format", "yaml")
        sets = body.get("set") or []
        backend = body.get("backend", "local")
        workers = body.get("workers")
        if not isinstance(text, str) or not text.strip():
            raise Refused(400, "`spec` must be the spec's text")
        if fmt not in FORMATS:
            raise Refused(400, f"`format` must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            raise Refused(400, "`set` must be a list of PATH=VALUE strings")
        if backend not in BACKEND_NAMES:
            raise Refused(400, f"`backend` must be one of {', '.join(BACKEND_NAMES)}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise Refused(400, "`workers` must be a whole number >= 1")
        self._reap()
        if len(self._live) >= self.max_runs:
            raise Refused(429, f"the server runs at most {self.max_runs} runs at once")
        run_id = new_run_id(spec_hash(text))
        run_dir = self.root / run_id
        run_dir.mkdir(parents=True)
        spec_file = run_dir / f"submitted{FORMATS[fmt]}"
        spec_file.write_text(text)
        try:
            self._check(spec_file, sets)
        except Refused:
            for p in run_dir.iterdir():
                p.unlink()
            run_dir.rmdir()
            raise
        args = ["run", str(spec_file), "--run-dir", str(run_dir), "--backend", backend,
                "--no-progress", "--events-log", str(run_dir / EVENTS_NAME)]
        if workers is not None:
            args += ["--workers", str(workers)]
        for s in sets:
            args += ["--set", s]
        self._launch(run_id, run_dir, args, "run")
        return run_id

    def _flags(self) -> list[str]:
        return [OPT_INS[o] for o in sorted(self.opt_ins)]

    def _check(self, spec_file: Path, sets: list[str]) -> None:
        from specflow.run.api import load
        from specflow.spec import SpecError

        try:
            spec, _, _ = load(str(spec_file), sets, ())
        except SpecError as exc:
            raise Refused(400, str(exc)) from None
        missing = sorted(required_opt_ins(spec) - set(self.opt_ins))
        if missing:
            flags = ", ".join(OPT_INS[m] for m in missing)
            raise Refused(403, f"this spec needs {flags}, which this server was not started "
                               "with")
        cmd = [sys.executable, "-m", "specflow", "validate", str(spec_file), *self._flags()]
        for s in sets:
            cmd += ["--set", s]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                           env=_child_env())
        if r.returncode != 0:
            raise Refused(400, (r.stderr or r.stdout).strip())

    def _launch(self, run_id: str, run_dir: Path, args: list[str], kind: str) -> None:
        log = open(run_dir / f"driver-{kind}.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "specflow", *args, *self._flags()],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=_child_env(), start_new_session=True,
            )
        finally:
            log.close()
        with self._lock:
            self._live[run_id] = Launched(run_id, run_dir, proc, kind)

    def _reap(self) -> None:
        with self._lock:
            for rid in [r for r, x in self._live.items() if x.proc.poll() is not None]:
                del self._live[rid]

    # -- reading -----------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        if "/" in run_id or run_id.startswith(".") or not run_id:
            raise Refused(404, f"no run {run_id!r}")
        d = self.root / run_id
        if not (d / "checkpoint.db").exists() and run_id not in self._live:
            raise Refused(404, f"no run {run_id!r}")
        return d

    def _starting(self, run_id: str) -> dict[str, Any] | None:
        """The answer for a run whose driver has not written its record yet."""
        launched = self._live.get(run_id)
        if launched is None or launched.proc.poll() is not None:
            return None
        return {"run_id": run_id, "status": "starting", "live": True, "counts": {},
                "timings": {}, "failures": [], "done": 0, "failed": 0, "attempt": 0,
                "totals": {}}

    def all_runs(self) -> list[dict[str, Any]]:
        self._reap()
        out = []
        for cpath in sorted(self.root.glob("*/checkpoint.db"), reverse=True):
            try:
                out.append(self.summary(cpath.parent.name))
            except Exception as exc:  # noqa: BLE001 - a damaged run is listed as such
                out.append({"run_id": cpath.parent.name, "status": "damaged",
                            "problem": str(exc)})
        return out

    def summary(self, run_id: str) -> dict[str, Any]:
        d = self.run_dir(run_id)
        try:
            return self._summary(run_id, d)
        except (CheckpointError, SpecError):
            starting = self._starting(run_id)
            if starting is None:
                raise
            return starting

    def _summary(self, run_id: str, d: Path) -> dict[str, Any]:
        with Run.open(d, drive=False) as run:
            info = run.info()
            status = run.status()
            ck = run.checkpoint
            counts = run.counts()
            timings = ck.timings()
            failures = [
                {"id": r.id, "operation": r.operation, "attempts": r.attempts,
                 "error": r.error, "args": getattr(r, "args", None), "log_path": r.log_path}
                for r in run.task_rows(FAILED_STATUSES)
            ][:100]
        live = run_id in self._live and self._live[run_id].proc.poll() is None
        return {
            "run_id": run_id, "status": status, "live": live, "created": info.created,
            "updated": info.updated, "attempt": info.attempt, "spec_file": info.spec_file,
            "settings": info.settings, "counts": counts, "timings": timings,
            "failures": failures,
            "totals": totals(counts),
            "done": sum(c.get("done", 0) for c in counts.values()),
            "failed": sum(c.get("failed", 0) + c.get("timeout", 0) for c in counts.values()),
        }

    def tasks(self, run_id: str, status: str | None, limit: int) -> list[dict[str, Any]]:
        d = self.run_dir(run_id)
        out: list[dict[str, Any]] = []
        if not (d / "checkpoint.db").exists():
            return out
        with Run.open(d, drive=False) as run:
            for r in run.task_rows(status, limit=limit):
                out.append({
                    "id": r.id, "operation": r.operation, "status": r.status,
                    "attempts": r.attempts, "started": r.started, "finished": r.finished,
                    "error": r.error, "worker": r.worker, "log": r.log_path,
                    "args": getattr(r, "args", None),
                })
                if len(out) >= limit:
                    break
        return out

    def events_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / EVENTS_NAME

    # -- acting ------------------------------------------------------------------------
    def cancel(self, run_id: str) -> dict[str, Any]:
        d = self.run_dir(run_id)
        self._reap()
        launched = self._live.get(run_id)
        if launched is not None:
            os.kill(launched.proc.pid, signal.SIGTERM)
            launched.proc.wait(60)
            self._reap()
            return {"run_id": run_id, "cancelled": True}
        with Run.open(d, drive=False) as run:
            lease = run.checkpoint.lease()
            status = run.status()
        if status in ("running", "resuming") and lease is not None and not lease.released:
            from specflow.run.lease import host_name

            if lease.host == host_name():
                os.kill(lease.pid, signal.SIGTERM)
                return {"run_id": run_id, "cancelled": True}
        raise Refused(409, f"run {run_id} is not running (status {status})")

    def resume(self, run_id: str) -> dict[str, Any]:
        d = self.run_dir(run_id)
        self._reap()
        if run_id in self._live:
            raise Refused(409, f"run {run_id} is still running")
        if len(self._live) >= self.max_runs:
            raise Refused(429, f"the server runs at most {self.max_runs} runs at once")
        self._launch(run_id, d, ["resume", str(d), "--no-progress", "--events-log",
                                 str(d / EVENTS_NAME)], "resume")
        return {"run_id": run_id, "resumed": True}

    def shutdown(self) -> None:
        with self._lock:
            live = list(self._live.values())
        for x in live:
            if x.proc.poll() is None:
                os.kill(x.proc.pid, signal.SIGTERM)
        for x in live:
            try:
                x.proc.wait(60)
            except subprocess.TimeoutExpired:
                x.proc.kill()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SPECFLOW_RUN_ROOT", None)
    return env


def read_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines of the events log from ``offset``; the new offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[: end + 1].splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events, offset + end + 1
