"""Task statuses as a run goes and after it: pending, queued, running, done, failed,
cancelled, timeout, skipped, reused — in ``status``, the report and the HTTP API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OPS = str(Path(__file__).with_name("status_ops.py"))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specflow", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def status(run: Path, *extra: str) -> dict[str, Any]:
    r = cli("status", str(run), "--json", *extra, cwd=run)
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def until(cond: Any, proc: subprocess.Popen[str], limit: float = 120) -> None:
    """Wait for a condition (the deadline only guards against a hang; nothing is timed)."""
    deadline = time.monotonic() + limit
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"driver ended early: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(0.05)


def start(d: Path, n: int, workers: int = 1) -> tuple[subprocess.Popen[str], Path]:
    spec = d / "spec.yaml"
    spec.write_text(f'"@type": st.blocked_many\ngate: {d / "gate"}\nstarted: {d / "s"}\nn: {n}\n')
    run = d / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "specflow", "run", str(spec), "-i", OPS, "--backend", "local",
         "--workers", str(workers), "--run-dir", str(run), "-q"],
        cwd=d, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    return proc, run


def by_status(data: dict[str, Any], op: str) -> dict[str, int]:
    return {k: v for k, v in data["counts"].get(op, {}).items() if v}


def test_live_statuses_while_running_then_done(tmp_path: Path) -> None:
    proc, run = start(tmp_path, n=6, workers=1)
    try:
        # one worker: the first task blocks on the gate, the rest wait behind it
        until(lambda: (tmp_path / "s.0").exists() and (run / "checkpoint.db").exists(), proc)
        until(lambda: by_status(status(run), "st.blocked").get("running") == 1, proc)
        counts = by_status(status(run), "st.blocked")
        assert counts["running"] == 1
        assert sum(counts.get(k, 0) for k in ("queued", "pending")) == 5, counts
        assert status(run)["status"] == "running"
        running = status(run, "--tasks", "--state", "running")["tasks"]
        assert [t["status"] for t in running] == ["running"]
        assert running[0]["args"] and "i=0" in running[0]["args"]
        waiting = status(run, "--tasks", "--state", "queued", "--state", "pending")["tasks"]
        assert len(waiting) == 5 and {t["status"] for t in waiting} <= {"queued", "pending"}
        (tmp_path / "gate").write_text("open")
        assert proc.wait(300) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    data = status(run)
    assert by_status(data, "st.blocked") == {"done": 6}
    assert data["totals"]["done"] == 6 and data["totals"]["running"] == 0


def test_interrupted_run_records_cancelled_and_resume_finishes(tmp_path: Path) -> None:
    proc, run = start(tmp_path, n=4, workers=1)
    until(lambda: (tmp_path / "s.0").exists() and (run / "checkpoint.db").exists(), proc)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(120)
    data = status(run)
    assert data["status"] == "interrupted"
    assert by_status(data, "st.blocked") == {"cancelled": 4}
    cancelled = status(run, "--tasks", "--state", "cancelled")["tasks"]
    assert len(cancelled) == 4
    (tmp_path / "gate").write_text("open")
    r = cli("resume", str(run / "checkpoint.db"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert by_status(status(run), "st.blocked") == {"done": 4}


def test_a_killed_driver_leaves_its_unfinished_tasks_cancelled(tmp_path: Path) -> None:
    proc, run = start(tmp_path, n=3, workers=1)
    until(lambda: (tmp_path / "s.0").exists() and (run / "checkpoint.db").exists(), proc)
    until(lambda: by_status(status(run), "st.blocked").get("running") == 1, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)
    data = status(run)
    assert data["status"] == "crashed"
    # no pending/queued/running for a run without a driver: what it left is cancelled
    assert by_status(data, "st.blocked") == {"cancelled": 3}


def test_timeout_and_skipped(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        '"@type": concurrent_flow\nstages:\n'
        f'  - {{"@type": st.never, started: "{tmp_path / "never"}"}}\n'
        f'  - {{"@type": st.failing_branch, out: "{tmp_path / "w.txt"}"}}\n')
    run = tmp_path / "run"
    r = cli("run", str(spec), "-i", OPS, "--backend", "local", "--workers", "2", "--run-dir",
            str(run), "--keep-going", "--max-attempts", "1", "-q", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    data = status(run)
    assert by_status(data, "st.never") == {"timeout": 1}
    assert by_status(data, "st.boom") == {"failed": 1}
    assert by_status(data, "st.write") == {"done": 1}
    assert data["totals"]["timeout"] == 1 and data["totals"]["failed"] == 1
    assert data["skipped_flows"] == ["_fail_then_more"]
    # the failures list both kinds, each under its own status
    assert sorted(f["status"] for f in data["failures"]) == ["failed", "timeout"]
    text = cli("status", str(run), cwd=tmp_path)
    assert text.returncode == 0
    assert "timeout" in text.stdout and "skipped: 1 flow(s)" in text.stdout
    report = tmp_path / "r.html"
    assert cli("report", str(run), "-o", str(report), cwd=tmp_path).returncode == 0
    html = report.read_text()
    assert "timeout 1" in html and "<th>timeout</th>" in html


def test_bad_state_is_refused(tmp_path: Path) -> None:
    proc, run = start(tmp_path, n=1, workers=1)
    (tmp_path / "gate").write_text("open")
    assert proc.wait(300) == 0
    r = cli("status", str(run), "--tasks", "--state", "finished", cwd=tmp_path)
    assert r.returncode == 2
    assert "--state finished" in r.stderr and "pending" in r.stderr


def test_reused_tasks_have_their_status(tmp_path: Path) -> None:
    proc, first = start(tmp_path, n=2, workers=1)
    (tmp_path / "gate").write_text("open")
    assert proc.wait(300) == 0
    second = tmp_path / "second"
    r = cli("run", str(tmp_path / "spec.yaml"), "-i", OPS, "--backend", "inline", "--run-dir",
            str(second), "--reuse", str(first), "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert by_status(status(second), "st.blocked") == {"reused": 2}
