"""`specflow serve` on a free loopback port, driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import TESTS

OPS_SPEC_GATED = """\
"@type": it.gated_many
gate: {gate}
out: {out}
n: 3
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, workdir: Path, *extra: str, token: str | None = None) -> None:
        self.port = free_port()
        self.token = token
        self.root = workdir / "served"
        args = [sys.executable, "-m", "specflow", "serve", "--port", str(self.port),
                "--root", str(self.root), *extra]
        if token:
            args += ["--token", token]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "run"), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(self.proc.stderr.read() if self.proc.stderr else "") from None
                time.sleep(0.05)

    def call(self, method: str, path: str, body: Any = None, token: str | None = "default",
             raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method)
        tok = self.token if token == "default" else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                text = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            status = e.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def until_status(self, run_id: str, want: set[str], limit: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + limit
        while True:
            code, run = self.call("GET", f"/api/runs/{run_id}")
            if code == 200 and run["status"] in want:
                return run  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, run
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture()
def server(workdir: Path) -> Iterator[Server]:
    s = Server(workdir)
    yield s
    s.stop()


def test_submit_follow_tasks_cancel_resume(workdir: Path, server: Server) -> None:
    code, body = server.call("POST", "/api/runs", {
        "spec": '"@type": sequential_flow\nstages:\n  - {"@type": echo, message: one}\n'
                '  - {"@type": echo, message: two}\n',
        "format": "yaml", "backend": "inline"})
    assert code == 201, body
    rid = body["run_id"]
    run = server.until_status(rid, {"done", "failed"})
    assert run["status"] == "done" and run["counts"]["echo"]["done"] == 2
    code, tasks = server.call("GET", f"/api/runs/{rid}/tasks?limit=10")
    assert code == 200 and [t["operation"] for t in tasks] == ["echo", "echo"]
    code, listed = server.call("GET", "/api/runs")
    assert rid in [r["run_id"] for r in listed]
    # the run is an ordinary run: `specflow runs` lists it
    r = subprocess.run([sys.executable, "-m", "specflow", "runs", "--root", str(server.root),
                        "--json"], capture_output=True, text=True, timeout=120)
    assert rid in [x["run"] for x in json.loads(r.stdout)]
    code, events = server.call("GET", f"/api/runs/{rid}/events")
    assert code == 200 and "event: run_finished" in events and "event: task_succeeded" in events

    gate = workdir / "gate"
    out = workdir / "out.txt"
    code, body = server.call("POST", "/api/runs", {
        "spec": '"@type": execute\nbackend: inline\ntarget:\n'
                + "".join("  " + line + "\n" for line in
                          OPS_SPEC_GATED.format(gate=gate, out=out).splitlines()),
        "format": "yaml", "backend": "inline", "set": ["target.n=3"]})
    assert code == 400 and "it.gated_many" in body["error"], "the server imports nothing"


def test_cancel_and_resume_a_long_run(workdir: Path) -> None:
    gate = workdir / "gate"
    ops = TESTS / "run" / "integrity_ops.py"
    server = Server(workdir)
    try:
        spec = ('"@type": sequential_flow\nstages:\n'
                '  - {"@type": sleep, seconds: 0}\n'
                '  - {"@type": sleep, seconds: 600}\n')
        code, body = server.call("POST", "/api/runs", {"spec": spec, "backend": "inline"})
        assert code == 201, body
        rid = body["run_id"]
        deadline = time.monotonic() + 120
        while True:
            _, run = server.call("GET", f"/api/runs/{rid}")
            if run.get("counts", {}).get("sleep", {}).get("done") == 1:
                break
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
        # the long sleep shows as running (inline: once it has run a moment)
        deadline = time.monotonic() + 120
        while True:
            code, running = server.call("GET", f"/api/runs/{rid}/tasks?status=running")
            assert code == 200, running
            if running:
                break
            assert time.monotonic() < deadline, running
            time.sleep(0.1)
        assert [t["operation"] for t in running] == ["sleep"]
        assert running[0]["status"] == "running"
        code, body = server.call("GET", f"/api/runs/{rid}/tasks?status=finished")
        assert code == 400 and "pending" in body["error"]
        code, body = server.call("POST", f"/api/runs/{rid}/cancel")
        assert code == 200, body
        run = server.until_status(rid, {"interrupted"})
        assert run["counts"]["sleep"]["done"] == 1
        assert run["counts"]["sleep"].get("cancelled") == 1
        # resumed through the API: the finished sleep is skipped, the long one starts again
        code, body = server.call("POST", f"/api/runs/{rid}/resume")
        assert code == 202, body
        deadline = time.monotonic() + 180
        while True:  # the resumed driver has taken the run (its second attempt)
            _, run = server.call("GET", f"/api/runs/{rid}")
            if run.get("attempt") == 2:
                break
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
        code, body = server.call("POST", f"/api/runs/{rid}/cancel")
        assert code == 200, body
        run = server.until_status(rid, {"interrupted"})
        assert run["attempt"] == 2
        del ops, gate
    finally:
        server.stop()


def test_token_opt_ins_and_bad_specs(workdir: Path) -> None:
    server = Server(workdir, token="s3cret")
    try:
        assert server.call("GET", "/api/runs", token=None)[0] == 401
        assert server.call("GET", "/api/runs", token="wrong")[0] == 401
        assert server.call("GET", "/", token=None)[0] == 401
        assert server.call("GET", "/api/runs")[0] == 200
        code, body = server.call("POST", "/api/runs", {
            "spec": '"@type": shell\ncommand: "touch pwned"\n'})
        assert code == 403 and "--allow-shell" in body["error"]
        assert not (workdir / "pwned").exists()
        # shell lines for every SLURM job are shell too
        code, body = server.call("POST", "/api/runs", {
            "spec": '"@type": execute_on_slurm\nsetup: ["touch pwned"]\n'
                    'target: {"@type": echo, message: x}\n'})
        assert code == 403 and "--allow-shell" in body["error"]
        code, body = server.call("POST", "/api/runs", {"spec": '"@type": ech\nmessage: 1\n'})
        assert code == 400 and "echo" in body["error"] and ":1" in body["error"]
        try:
            code, body = server.call("POST", "/api/runs", raw=b"{" + b" " * (2 << 20) + b"}")
        except (urllib.error.URLError, ConnectionError):
            code = 413  # refused before the whole body was sent: the server stopped reading
        assert code == 413
        code, body = server.call("POST", "/api/runs", raw=b"not json")
        assert code == 400
        assert not list(server.root.glob("*/checkpoint.db")), "refused specs create no run"
    finally:
        server.stop()


def test_non_loopback_needs_a_token(workdir: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "specflow", "serve", "--host", "0.0.0.0",
                        "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--token" in r.stderr
