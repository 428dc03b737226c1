"""python_eval and http_request, the cluster framework's built-in task types."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from specflow.flow.safe_eval import UnsafeExpression, evaluate
from specflow.run import execute


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specflow", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("expr,want", [
    ("sum(x * x for x in range(10))", 285),
    ("max([3, 1, 2]) + min(4, 5) - abs(-2)", 5),
    ("sorted({3, 1, 2}, reverse=True)", [3, 2, 1]),
    ("{k: v for k, v in zip('ab', [1, 2]) if v > 1}", {"b": 2}),
    ("round(2.675, 2) if len('abc') == 3 and not False else None", 2.67),
    ("[i for i, c in enumerate('xyz') if c != 'y'][1:]", [2]),
    ("2 ** 100 % 7", 2 ** 100 % 7),
    ("n * 2", 42),
])
def test_python_eval_computes(expr: str, want: object) -> None:
    assert evaluate(expr, {"n": 21}) == want


@pytest.mark.parametrize("expr,why", [
    ("__import__('os')", "dunder"),
    ("__import__('os').system('true')", "not allowed"),
    ("().__class__.__bases__", "attribute"),
    ("(1).real", "attribute"),
    ("import os", "not a Python expression"),
    ("open('/etc/passwd')", "only these functions"),
    ("eval('1')", "only these functions"),
    ("9**9**9", "too large"),
    ("2 << 100000", "too large"),
    ("'x' * 10**10", "repeated sequence"),
    ("[0] * 10**8", "repeated sequence"),
    ("[x for x in range(10**8)]", "range of"),
    ("sum(1 for a in range(1000) for b in range(1000) for c in range(10))", "steps"),
    ("(lambda: 1)()", "lambda"),
    ("[y := 1]", "assignment"),
    ("f'{1}'", "f-string"),
    ("_secret", "private"),
    ("undefined_name", "unknown name"),
])
def test_python_eval_refuses(expr: str, why: str) -> None:
    with pytest.raises(UnsafeExpression, match=why):
        evaluate(expr)


def test_python_eval_is_checked_when_the_spec_is_built(workdir: Path) -> None:
    spec = workdir / "spec.yaml"
    spec.write_text('"@type": sequential_flow\nstages:\n'
                    '  - {"@type": python_eval, expression: "sum(range(5))"}\n'
                    '  - {"@type": python_eval, expression: "().__class__"}\n')
    for cmd in ("run", "validate"):
        r = cli(cmd, str(spec), cwd=workdir)
        assert r.returncode == 2, r.stdout + r.stderr
        text = " ".join(r.stderr.split())
        assert "stages[1]" in text and "attribute access" in text, text
        assert "Traceback" not in r.stderr
    assert not list(workdir.glob(".specflow/runs/*"))
    spec.write_text('"@type": python_eval\nexpression: "sum(x for x in range(n))"\n'
                    'variables: {n: 5}\n')
    r = cli("run", str(spec), "--backend", "local", "--no-progress", cwd=workdir)
    assert r.returncode == 0, r.stderr


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        n = self.hits.get(self.path, 0) + 1
        self.hits[self.path] = n
        length = int(self.headers.get("Content-Length") or 0)
        got = self.rfile.read(length).decode() if length else ""
        if self.path.startswith("/flaky") and n <= 2:
            self.send_response(503)
            self.end_headers()
            return
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"nope")
            return
        body = json.dumps({"method": self.command, "got": got, "n": n,
                           "auth": self.headers.get("X-Auth")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer


@pytest.fixture()
def http_server() -> Iterator[str]:
    _Handler.hits = {}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_http_request_against_a_loopback_server(workdir: Path, http_server: str) -> None:
    from specflow import Dependency, flow_schema
    from specflow.flow.cluster_ops import http_request

    seen: dict[str, object] = {}

    @flow_schema
    def calls():  # type: ignore[no-untyped-def]
        ok = http_request(f"{http_server}/echo", method="POST", json={"a": 1},
                          headers={"X-Auth": "k"})
        flaky = http_request(f"{http_server}/flaky")
        missing = http_request(f"{http_server}/missing")
        yield [ok, flaky, missing]
        seen["values"] = yield Dependency([ok, flaky, missing])

    report = execute(calls(), backend="inline", retry_backoff=0.01,
                     run_dir=workdir / "r")
    assert report.status == "done", report.failures
    ok, flaky, missing = seen["values"]  # type: ignore[misc]
    body = json.loads(ok["body"])
    assert ok["status"] == 200 and body == {"method": "POST", "got": '{"a": 1}', "n": 1,
                                            "auth": "k"}
    assert flaky["status"] == 200 and json.loads(flaky["body"])["n"] == 3
    assert report.counts["http_request"]["retried"] == 2
    assert missing["status"] == 404 and missing["body"] == "nope"


def test_http_request_connection_errors_are_retried_then_fail(workdir: Path) -> None:
    import socket

    from specflow.flow.cluster_ops import http_request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = execute(http_request(f"http://127.0.0.1:{port}/", timeout=2), backend="inline",
                     max_attempts=2, retry_backoff=0.01, run_dir=workdir / "r")
    assert report.status == "failed"
    assert report.counts["http_request"]["retried"] == 1
    assert "ConnectionError" in report.failures[0].error


def test_command_is_shell_under_its_cluster_name(workdir: Path) -> None:
    spec = workdir / "spec.yaml"
    spec.write_text('"@type": command\ncommand: "echo ran > out.txt"\n')
    r = cli("run", str(spec), "--backend", "inline", "--no-progress", cwd=workdir)
    assert r.returncode == 2 and "--allow-shell" in r.stderr
    assert not (workdir / "out.txt").exists()
    r = cli("run", str(spec), "--backend", "inline", "--no-progress", "--allow-shell",
            cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert (workdir / "out.txt").read_text() == "ran\n"
