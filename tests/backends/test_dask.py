"""What the dask backend does beyond the conformance suite: an existing scheduler reached by
address, semaphores shared by the cluster's workers, the spec entry, and clear errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from user_ops import hold_cpu

import specflow
from specflow.run import execute

TESTS = Path(__file__).resolve().parent.parent
USER_OPS = str(TESTS / "user_ops.py")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specflow", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture()
def scheduler(tmp_path: Path) -> Iterator[str]:
    """A dask scheduler and one worker on 127.0.0.1, as separate processes."""
    sfile = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sfile)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 120
        while not (sfile.exists() and sfile.read_text().strip()):
            assert procs[0].poll() is None, "the dask scheduler did not start"
            assert time.monotonic() < deadline, "the dask scheduler did not write its file"
            time.sleep(0.05)
        address = json.loads(sfile.read_text())["address"]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
             "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(30)


def test_an_existing_scheduler_runs_the_tasks(scheduler: str, workdir: Path) -> None:
    assert scheduler.startswith("tcp://127.0.0.1:")
    out = workdir / "out.txt"
    spec = workdir / "spec.yaml"
    spec.write_text(json.dumps({"@type": "test.append_many", "path": str(out), "n": 12}))
    r = cli("run", "-i", USER_OPS, str(spec), "--backend", "dask", "--dask-address", scheduler,
            "--run-dir", "run", "--no-progress", cwd=workdir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(lines(out)) == sorted(f"t{i}" for i in range(12))
    con = sqlite3.connect(workdir / "run" / "checkpoint.db")
    workers = {w for (w,) in con.execute("SELECT worker FROM tasks")}
    settings = json.loads(con.execute("SELECT settings_json FROM run").fetchone()[0])
    con.close()
    assert os.getpid() not in {int(w.rsplit(":", 1)[1]) for w in workers}
    assert settings["backend"] == "dask"
    assert settings["backend_settings"]["address"] == scheduler


def test_the_spec_entry_picks_dask(workdir: Path) -> None:
    out = workdir / "out.txt"
    spec = workdir / "spec.yaml"
    spec.write_text(json.dumps({
        "@type": "execute_on_dask", "workers": 2,
        "target": {"@type": "test.append_many", "path": str(out), "n": 5},
    }))
    r = cli("run", "-i", USER_OPS, str(spec), "--run-dir", "run", "--no-progress", cwd=workdir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(lines(out)) == 5
    con = sqlite3.connect(workdir / "run" / "checkpoint.db")
    settings = json.loads(con.execute("SELECT settings_json FROM run").fetchone()[0])
    con.close()
    assert settings["backend"] == "dask" and settings["workers"] == 2


def test_semaphores_bound_concurrency_across_dask_workers(workdir: Path) -> None:
    log = workdir / "spans"

    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield [hold_cpu.make_task(log=str(log), i=i, seconds=0.05) for i in range(8)]

    report = execute(flow(), backend="dask", workers=2, semaphores={"cpu": 1},
                     imports=[USER_OPS], run_dir=workdir / "run")
    assert report.status == "done", [f.error for f in report.failures]
    spans = sorted(tuple(map(float, s.split())) for s in lines(log))
    assert len(spans) == 8
    for (_s0, e0), (s1, _) in zip(spans, spans[1:], strict=False):
        assert s1 >= e0 - 1e-4, "two holders of a 1-slot semaphore overlapped"


def test_an_unreachable_scheduler_is_a_clear_error(workdir: Path) -> None:
    spec = workdir / "spec.yaml"
    spec.write_text(json.dumps({"@type": "execute_on_dask", "address": "tcp://127.0.0.1:1",
                                "connect_timeout": 1, "target": {"@type": "noop"}}))
    # the command line's address wins over the spec's
    r = cli("run", str(spec), "--dask-address", "tcp://127.0.0.1:9", "--no-progress",
            cwd=workdir)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in r.stderr
    assert "Traceback" not in r.stderr


def test_task_requirements_become_dask_resources(workdir: Path) -> None:
    import dataclasses

    from user_ops import square

    from specflow.backends.dask import DaskBackend, _requirements

    task = dataclasses.replace(square.make_task(x=7), tags={"requires.GPU": "1", "other": "x"})
    assert _requirements(task) == (("GPU", 1.0),)
    plain = square.make_task(x=8)
    report = execute([task, plain], backend=DaskBackend(workers=1, resources={"GPU": 1}),
                     imports=[USER_OPS], run_dir=workdir / "run")
    assert report.status == "done", [f.error for f in report.failures]
    con = sqlite3.connect(workdir / "run" / "checkpoint.db")
    values = sorted(json.loads(v) for (v,) in con.execute("SELECT value_json FROM tasks"))
    con.close()
    assert values == [49, 64]
