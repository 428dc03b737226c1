"""Chaos: the driver and its workers are killed again and again (SIGKILL, SIGTERM), during
runs and during resumes; after the final resume every output equals an uninterrupted run's,
no task is missing, a task on record never runs again, no process of the run survives, and
no run is left ``running``.

Kill points are chosen by a seeded random generator among conditions on the checkpoint
(a number of recorded tasks), never by elapsed time.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, TESTS

OPS = str(TESTS / "run" / "integrity_ops.py")
MARKER = "SPECFLOW_RUN_ID"
N_TASKS = 2000


def processes_of(run_id: str) -> list[int]:
    """Pids of live processes carrying the run's environment marker."""
    want = f"{MARKER}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and want in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def recorded(db: Path) -> dict[str, int]:
    """Done rows per operation committed in the checkpoint, read from outside."""
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT operation, COUNT(*) FROM tasks WHERE status = 'done' "
                                "GROUP BY operation").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def recorded_values(db: Path, op: str) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {json.loads(v) for (v,) in con.execute(
            "SELECT value_json FROM tasks WHERE status = 'done' AND operation = ?", (op,))}
    finally:
        con.close()


def wait(cond: object, limit: float = 180.0) -> bool:
    deadline = time.monotonic() + limit
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def start(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "specflow", *args, "--no-progress"],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def status_of(run_dir: Path, cwd: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "specflow", "status", str(run_dir), "--json"],
                       cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout)["status"])


def kill_somewhere(proc: subprocess.Popen[bytes], run_id: str, rng: random.Random,
                   db: Path, total: int, backend: str) -> str:
    """Wait until a random number of further tasks is on record, then kill something."""
    base = sum(recorded(db).values())
    target = base + rng.randint(1, max(1, (total - base) // 3))
    if not wait(lambda: sum(recorded(db).values()) >= target or proc.poll() is not None):
        raise AssertionError("the run made no progress")
    if proc.poll() is not None:
        return "finished"
    how = rng.choice(["SIGKILL", "SIGTERM", "worker"] if backend == "local" else
                     ["SIGKILL", "SIGTERM"])
    if how == "worker":
        workers = [p for p in processes_of(run_id) if p != proc.pid]
        if workers:
            os.kill(rng.choice(workers), signal.SIGKILL)
            return how  # a dead worker is replaced and the run goes on
        how = "SIGKILL"
    os.kill(proc.pid, signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
    proc.wait(120)
    return how


def finish(proc: subprocess.Popen[bytes], run_dir: Path, workdir: Path,
           history: list[str]) -> None:
    """Wait for the last driver; resume once more when the run is not done. A killed worker
    fails the task it was running (the run then ends failed and a resume runs that task
    again); a killed driver leaves the run to resume."""
    code = proc.wait(600)
    if code != 0:
        text = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        assert {"SIGKILL", "SIGTERM", "worker"} & set(history), text[-4000:]
    if status_of(run_dir, workdir) != "done":
        final = start(["resume", str(run_dir)], workdir)
        if final.wait(600) != 0:
            text = final.stderr.read().decode(errors="replace") if final.stderr else ""
            raise AssertionError(f"the final resume failed after kills {history}:\n"
                                 f"{text[-4000:]}")


def check_no_orphans(run_id: str) -> None:
    assert wait(lambda: not processes_of(run_id), limit=30), (
        f"processes of run {run_id} survived their driver: {processes_of(run_id)}")


def chaos(workdir: Path, run_args: list[str], run_dir: Path, total: int, backend: str,
          kills: int, seed: int, on_kill: Callable[[], None] | None = None) -> list[str]:
    """Run, kill something ``kills`` times (resuming after each driver kill), finish; the
    run must end done with no process of it left. ``on_kill`` looks at the record after
    each driver kill."""
    rng = random.Random(seed)
    db = run_dir / "checkpoint.db"
    proc = start(run_args, workdir)
    history = []
    for _ in range(kills):
        how = kill_somewhere(proc, run_dir.name, rng, db, total, backend)
        history.append(how)
        if how == "finished":
            break
        if how == "worker":
            continue
        check_no_orphans(run_dir.name)
        if on_kill is not None:
            on_kill()
        state = status_of(run_dir, workdir)
        if state == "done":  # the signal came as the run ended
            break
        # a worker killed earlier fails the task it ran: the run may have ended failed
        # just before the driver was killed
        assert state in ("crashed", "interrupted") or (state == "failed" and "worker" in history)
        proc = start(["resume", str(run_dir)], workdir)
    finish(proc, run_dir, workdir, history)
    check_no_orphans(run_dir.name)
    assert status_of(run_dir, workdir) == "done"
    return history


@pytest.mark.parametrize("backend,seed", [("local", 11), ("inline", 12)])
def test_chaos_2000_task_flow(workdir: Path, backend: str, seed: int) -> None:
    out = workdir / "out.txt"
    spec = workdir / "spec.yaml"
    (workdir / "gate").write_text("")  # never blocks: tasks append their index and return
    spec.write_text(f'"@type": it.gated_many\ngate: {workdir / "gate"}\nout: {out}\n'
                    f'n: {N_TASKS}\n')
    run_dir = workdir / "r"
    db = run_dir / "checkpoint.db"
    # effects seen of each task on record at a kill: none may be added later
    frozen: dict[int, int] = {}

    def remember() -> None:
        effects = Counter(int(x) for x in out.read_text().split())
        for v in recorded_values(db, "it.gated"):
            frozen.setdefault(int(v), effects[int(v)])

    history = chaos(workdir, ["run", "-i", OPS, str(spec), "--run-dir", str(run_dir),
                              "--backend", backend, "--workers", "2"],
                    run_dir, N_TASKS, backend, 4, seed, on_kill=remember)
    counts = Counter(int(x) for x in out.read_text().split())
    assert set(counts) == set(range(N_TASKS)), "no task is missing"
    again = {i for i, n in frozen.items() if counts[i] != n}
    assert not again, f"tasks on record ran again: {sorted(again)[:10]}"
    reruns = sum(c - 1 for c in counts.values())
    print(f"chaos {backend}: kills {history}, re-runs {reruns}")


def _zarr_arrays(root: Path) -> dict[str, np.ndarray]:
    import tensorstore as ts

    arrays = {}
    for meta in sorted(root.rglob(".zarray")):
        rel = str(meta.parent.relative_to(root))
        if "tmp" in rel.split(os.sep) or "staging" in rel:
            continue
        arr = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(meta.parent)}},
                      open=True).result()
        arrays[rel] = arr.read().result()
    return arrays


@pytest.mark.parametrize("backend,seed,kills", [("local", 21, 3), ("inline", 22, 2)])
def test_chaos_volume_job_is_bit_identical(workdir: Path, backend: str, seed: int,
                                           kills: int) -> None:
    spec = ROOT / "specs" / "quickstart.yaml"
    clean = workdir / "clean"
    chaotic = workdir / "chaotic"
    for d in (clean, chaotic):
        d.mkdir()
    r = subprocess.run([sys.executable, "-m", "specflow", "run", str(spec), "--backend", backend,
                        "--run-dir", "run", "--no-progress"], cwd=clean, capture_output=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    total = sum(recorded(clean / "run" / "checkpoint.db").values())
    run_dir = chaotic / "run"
    history = chaos(chaotic, ["run", str(spec), "--backend", backend, "--run-dir", "run"],
                    run_dir, total, backend, kills, seed)
    # a second driver of a finished run's resume is fine; of a live one it is refused
    want = _zarr_arrays(clean / ".specflow" / "quickstart")
    got = _zarr_arrays(chaotic / ".specflow" / "quickstart")
    assert want.keys() == got.keys() and want
    for k in want:
        assert np.array_equal(want[k], got[k]), f"{k} differs after kills {history}"
    print(f"chaos volume {backend}: kills {history}")


def test_two_concurrent_drivers_of_a_volume_run(workdir: Path) -> None:
    import yaml

    quick = yaml.safe_load((ROOT / "specs" / "quickstart.yaml").read_text())
    gate = workdir / "gate"
    gated = {"@type": "it.gated", "gate": str(gate), "out": str(workdir / "g.txt"), "i": 1}
    doc = {**quick, "target": {"@type": "sequential_flow", "stages": [gated, quick["target"]]}}
    spec = workdir / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc))
    first = start(["run", "-i", OPS, str(spec), "--backend", "local", "--run-dir", "run"],
                  workdir)
    assert wait(lambda: status_of(workdir / "run", workdir) == "running"
                if (workdir / "run" / "checkpoint.db").exists() else False)
    second = subprocess.run([sys.executable, "-m", "specflow", "resume", "run", "--no-progress"],
                            cwd=workdir, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "being driven by" in second.stderr
    gate.write_text("")
    assert first.wait(600) == 0
    ref = workdir / "ref"
    ref.mkdir()
    subprocess.run([sys.executable, "-m", "specflow", "run", str(ROOT / "specs" / "quickstart.yaml"),
                    "--backend", "inline", "--run-dir", "run", "--no-progress"], cwd=ref,
                   check=True, capture_output=True, timeout=600)
    want = _zarr_arrays(ref / ".specflow" / "quickstart")
    got = _zarr_arrays(workdir / ".specflow" / "quickstart")
    assert want.keys() == got.keys() and want
    for k in want:
        assert np.array_equal(want[k], got[k]), k
    shutil.rmtree(ref)
