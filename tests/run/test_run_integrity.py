"""The run record holds at its edges: one driver, honest states, exact values, resume from
anywhere, opt-ins only from the command line, damaged checkpoints refused cleanly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import TESTS

from specflow.execution.values import ValueNotStored, ValueStore, decode, encode

OPS = str(TESTS / "run" / "integrity_ops.py")


def cli(*args: str, cwd: Path, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "specflow", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "specflow", *args], cwd=cwd, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def until(cond: object, proc: subprocess.Popen[str] | None = None, limit: float = 120) -> None:
    """Wait for a condition (a failure guard bounds the wait; nothing is timed)."""
    deadline = time.monotonic() + limit
    while not cond():  # type: ignore[operator]
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"driver ended early: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(0.02)


def lines(p: Path) -> list[str]:
    return p.read_text().split() if p.exists() else []


def gated_spec(d: Path, n: int = 4) -> Path:
    spec = d / "spec.yaml"
    spec.write_text(f'"@type": it.gated_many\ngate: {d / "gate"}\nout: {d / "out.txt"}\nn: {n}\n')
    return spec


def recorded(run: Path, op: str) -> int:
    """Done rows of ``op`` committed in the run's checkpoint (read from outside)."""
    db = run / "checkpoint.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT COUNT(*) FROM tasks WHERE operation = ? AND "
                               "status = 'done'", (op,)).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def status_json(run: Path, cwd: Path) -> dict:
    r = cli("status", str(run), "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- values ---------------------------------------------------------------------------------
def test_values_round_trip_exactly(tmp_path: Path) -> None:
    import numpy as np
    from integrity_ops import rich_value

    v = rich_value(5000)
    back = decode(encode(v))
    assert back.keys() == v.keys()
    arr = back.pop("array")
    scalar = back.pop("scalar")
    assert arr.dtype == np.int16 and arr.shape == (3, 4) and (arr == v["array"]).all()
    assert type(scalar) is np.float32 and scalar == np.float32(1.5)
    assert back == {k: x for k, x in v.items() if k not in ("array", "scalar")}
    assert type(back["tuple"]) is tuple and type(back["tuple"][1 + 1]) is tuple
    assert decode(encode({"$sf": 1})) == {"$sf": 1}
    store = ValueStore(tmp_path / "values")
    raw = store.store("abc", v)
    assert raw is not None and len(raw) < 500, "a large value goes to a file"
    assert (tmp_path / "values" / "abc.json").exists()
    assert store.load(raw)["big"] == list(range(5000))
    with pytest.raises(ValueNotStored):
        encode(object())
    bad = store.store("x", object())
    assert bad is not None
    with pytest.raises(ValueNotStored):
        store.load(bad)


def test_resumed_flow_gets_exactly_the_value_an_uninterrupted_run_gets(workdir: Path) -> None:
    fresh = workdir / "fresh.txt"
    cli("run", "-i", OPS, "--backend", "inline", "--no-progress", "--run-dir", "a",
        str(_consume_spec(workdir, fresh, block="")), cwd=workdir, check=True)
    resumed = workdir / "resumed.txt"
    block = workdir / "block"
    block.write_text("")
    spec = _consume_spec(workdir, resumed, block=str(block), name="b.yaml")
    r = cli("run", "-i", OPS, "--backend", "inline", "--no-progress", "--run-dir", "b",
            str(spec), cwd=workdir)
    assert r.returncode == 1 and not resumed.exists()
    block.unlink()
    r = cli("resume", "b", "--no-progress", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "skipped 1 task" in r.stdout
    assert resumed.read_text() == fresh.read_text()
    assert "(2.5, None)" in fresh.read_text() and "1: 'int key'" in fresh.read_text()


def _consume_spec(d: Path, out: Path, block: str, name: str = "a.yaml", opaque: bool = False) -> Path:
    spec = d / name
    spec.write_text(f'"@type": it.consume\nout: {out}\nblock: "{block}"\nopaque: {str(opaque).lower()}\n')
    return spec


def test_a_value_that_cannot_be_stored_fails_the_flow_that_needs_it(workdir: Path) -> None:
    out = workdir / "out.txt"
    block = workdir / "block"
    block.write_text("")
    spec = _consume_spec(workdir, out, block=str(block), opaque=True)
    r = cli("run", "-i", OPS, "--backend", "inline", "--no-progress", "--run-dir", "r",
            str(spec), cwd=workdir)
    assert r.returncode == 1
    block.unlink()
    r = cli("resume", "r", "--no-progress", cwd=workdir)
    assert r.returncode == 1
    assert "could not keep it" in " ".join((r.stderr + r.stdout).split())
    assert not out.exists(), "the consumer never ran with a wrong value"


# -- one driver --------------------------------------------------------------------------
def test_a_second_driver_is_refused_and_a_dead_ones_run_is_crashed_then_taken_over(
    workdir: Path,
) -> None:
    spec = gated_spec(workdir)
    out = workdir / "out.txt"
    proc = spawn("run", "-i", OPS, str(spec), "--run-dir", "r", "--backend", "inline",
                 "--no-progress", cwd=workdir)
    until(lambda: recorded(workdir / "r", "it.gated") == 1, proc)
    second = cli("resume", "r", "--no-progress", cwd=workdir)
    assert second.returncode == 2
    assert f"pid {proc.pid}" in second.stderr and "being driven by" in second.stderr
    third = cli("run", "-i", OPS, str(spec), "--run-dir", "r", "--no-progress", cwd=workdir)
    assert third.returncode == 2
    assert status_json(workdir / "r", workdir)["status"] == "running"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert status_json(workdir / "r", workdir)["status"] == "crashed"
    runs = json.loads(cli("runs", "--root", str(workdir / "nowhere"), "--json", cwd=workdir).stdout or "[]")
    assert runs == []
    (workdir / "gate").write_text("")
    r = cli("resume", "r", "--no-progress", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "taking over" in r.stderr and f"pid {proc.pid}" in r.stderr
    assert sorted(lines(out)) == ["0", "1", "2", "3"], "the recorded task did not run again"
    assert status_json(workdir / "r", workdir)["status"] == "done"


def test_sigterm_stops_a_run_like_ctrl_c(workdir: Path) -> None:
    spec = gated_spec(workdir)
    out = workdir / "out.txt"
    proc = spawn("run", "-i", OPS, str(spec), "--run-dir", "r", "--backend", "inline",
                 "--no-progress", cwd=workdir)
    until(lambda: lines(out) == ["0"], proc)
    # the task blocks in the driver (inline): the signal interrupts it
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(60) == 130
    data = status_json(workdir / "r", workdir)
    assert data["status"] == "interrupted"
    assert data["counts"]["it.gated"]["done"] == 1, "what finished is on record"


def test_a_spec_that_fails_to_build_creates_no_run(workdir: Path) -> None:
    spec = workdir / "bad.yaml"
    spec.write_text('"@type": it.gated_many\ngate: 3\nbogus: 1\n')
    r = cli("run", "-i", OPS, str(spec), "--no-progress", cwd=workdir)
    assert r.returncode == 2
    assert not list(workdir.glob(".specflow/runs/*"))


# -- resume anywhere, opt-ins, modules -----------------------------------------------------
def test_resume_works_where_the_run_started_whatever_the_callers_directory(workdir: Path) -> None:
    start = workdir / "start"
    elsewhere = workdir / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    spec = start / "spec.yaml"
    spec.write_text(f'"@type": it.relative_many\ngate: {workdir / "gate"}\n')
    proc = spawn("run", "-i", OPS, "spec.yaml", "--run-dir", "r", "--backend", "inline",
                 "--no-progress", cwd=start)
    until(lambda: (start / "out-0.txt").exists(), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    (workdir / "gate").write_text("")
    r = cli("resume", str(start / "r" / "checkpoint.db"), "--no-progress", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert f"resuming in {start}" in r.stderr
    assert sorted(p.name for p in start.glob("out-*.txt")) == ["out-0.txt", "out-1.txt", "out-2.txt"]
    assert not list(elsewhere.iterdir())


def test_resume_refuses_a_missing_start_dir(workdir: Path) -> None:
    start = workdir / "start"
    start.mkdir()
    (start / "spec.yaml").write_text(f'"@type": it.relative_many\ngate: {workdir / "gate"}\n')
    proc = spawn("run", "-i", OPS, "spec.yaml", "--run-dir", str(workdir / "r"), "--backend",
                 "inline", "--no-progress", cwd=start)
    until(lambda: (start / "out-0.txt").exists(), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    import shutil

    shutil.rmtree(start)
    r = cli("resume", "r", "--no-progress", cwd=workdir)
    assert r.returncode == 2
    assert "no longer exists" in r.stderr and str(start) in r.stderr


def test_allow_shell_must_be_given_again_on_resume(workdir: Path) -> None:
    gate = workdir / "gate"
    spec = workdir / "spec.yaml"
    spec.write_text(
        '"@type": sequential_flow\nstages:\n'
        f'  - {{"@type": shell, command: "echo one >> {workdir / "log"}"}}\n'
        f'  - {{"@type": it.gated, gate: "{gate}", out: "{workdir / "out.txt"}", i: 1}}\n'
    )
    proc = spawn("run", "-i", OPS, str(spec), "--run-dir", "r", "--backend", "inline",
                 "--allow-shell", "--no-progress", cwd=workdir)
    until(lambda: recorded(workdir / "r", "shell") == 1, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    gate.write_text("")
    r = cli("resume", "r", "--no-progress", cwd=workdir)
    assert r.returncode == 2
    assert "--allow-shell" in r.stderr and "never taken from a checkpoint" in r.stderr
    r = cli("resume", "r", "--allow-shell", "--no-progress", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert (workdir / "log").read_text() == "one\n"


def test_resume_names_the_modules_it_imports_and_refuses_changed_code(workdir: Path) -> None:
    mod = workdir / "my_ops.py"
    mod.write_text(Path(OPS).read_text())
    spec = gated_spec(workdir)
    proc = spawn("run", "-i", str(mod), str(spec), "--run-dir", "r", "--backend", "inline",
                 "--no-progress", cwd=workdir)
    until(lambda: lines(workdir / "out.txt") == ["0"], proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    (workdir / "gate").write_text("")
    mod.write_text(mod.read_text() + "\n# changed\n")
    r = cli("resume", "r", "--no-progress", cwd=workdir)
    assert r.returncode == 2
    assert str(mod) in r.stderr and "changed since this run started" in r.stderr
    r = cli("resume", "r", "--force", "--no-progress", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert f"importing the modules this run was started with: {mod}" in r.stderr


# -- damaged records ---------------------------------------------------------------------------
def test_damaged_checkpoints_are_clean_errors_and_runs_lists_the_rest(workdir: Path) -> None:
    root = workdir / ".specflow" / "runs"
    spec = workdir / "spec.yaml"
    spec.write_text('"@type": echo\nmessage: hi\n')
    for name in ("good", "bad", "junk"):
        cli("run", str(spec), "--run-dir", str(root / name), "--backend", "inline",
            "--no-progress", cwd=workdir, check=True)
    con = sqlite3.connect(root / "bad" / "checkpoint.db")
    con.execute("UPDATE run SET settings_json = '{not json'")
    con.commit()
    con.close()
    (root / "junk" / "checkpoint.db").write_bytes(b"garbage" * 100)
    for name in ("bad", "junk"):
        for cmd in (["status", str(root / name)], ["resume", str(root / name)]):
            r = cli(*cmd, cwd=workdir)
            assert r.returncode == 2, (cmd, r.stdout, r.stderr)
            assert "internal error" not in r.stderr and "Traceback" not in r.stderr
            assert "damaged" in r.stderr or "not a readable SQLite" in r.stderr
    r = cli("runs", "--json", cwd=workdir)
    assert r.returncode == 0, r.stderr
    states = {x["run"]: x["status"] for x in json.loads(r.stdout)}
    assert states == {"good": "done", "bad": "damaged", "junk": "damaged"}


def test_run_dir_pointing_at_a_file_is_a_clean_error(workdir: Path) -> None:
    spec = workdir / "spec.yaml"
    spec.write_text('"@type": echo\nmessage: hi\n')
    (workdir / "afile").write_text("x")
    r = cli("run", str(spec), "--run-dir", "afile", "--no-progress", cwd=workdir)
    assert r.returncode == 2 and "is a file" in r.stderr


# -- durable before destructive ------------------------------------------------------------
def test_a_flow_passes_a_barrier_only_once_what_it_waited_on_is_on_record(workdir: Path) -> None:
    out = workdir / "saw.txt"
    marker = workdir / "m"
    spec = workdir / "spec.yaml"
    spec.write_text(f'"@type": it.write_then_check\ncheckpoint: {workdir / "r" / "checkpoint.db"}\n'
                    f'out: {out}\nmarker: {marker}\n')
    for backend in ("inline", "local"):
        if (workdir / "r").exists():
            import shutil

            shutil.rmtree(workdir / "r")
        cli("run", "-i", OPS, str(spec), "--run-dir", "r", "--backend", backend,
            "--no-progress", cwd=workdir, check=True)
        assert out.read_text() == "1", backend
