"""The local backend with real worker processes: the run's processes die with its driver,
outcomes stream back per task, a task's mishap stays in its task, output lands in logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from support import TESTS

import specflow
from specflow.backends.base import RUN_ID_ENV, BackendContext, Outcome
from specflow.backends.local import LocalBackend

sys.path.insert(0, str(TESTS))
import backend_ops  # noqa: E402

BACKENDS = ["inline", "local"]
GUARD_S = 120.0  # a failure guard only: every wait below ends on a condition


def until(condition: Callable[[], bool], what: str, guard: float = GUARD_S) -> None:
    deadline = time.monotonic() + guard
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def run_processes(run_id: str) -> list[int]:
    """Pids of processes carrying ``SPECFLOW_RUN_ID=<run_id>`` in their environment."""
    marker = f"{RUN_ID_ENV}={run_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if marker in env:
            try:  # zombies waiting for their (dead) parent's reaper do not count
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
            except OSError:
                continue
            found.append(int(entry))
    return found


def children_named(parent: int, word: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == parent and word.encode() in cmd:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def our_semaphores() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith("sem.specflow-")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_death_of_the_driver_ends_every_process_of_the_run(
    workdir: Path, how: signal.Signals
) -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    gate = workdir / "gate"  # never opened: the tasks block until they are killed
    spec = workdir / "spec.yaml"
    spec.write_text(
        '"@type": execute\nbackend: local\nworkers: 2\nsemaphores: {cpu: 2}\n'
        f'target:\n  "@type": bt.gated_many\n  folder: {workdir}\n  gate: {gate}\n'
        '  n: 6\n  resource: cpu\n'
    )
    sems_before = our_semaphores()
    driver = subprocess.Popen(
        [sys.executable, "-m", "specflow", "run", "-i", str(TESTS / "backend_ops.py"),
         str(spec), "--run-dir", run_id, "--no-progress"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        until(lambda: len(list(workdir.glob("started-*"))) >= 2 or driver.poll() is not None,
              "two tasks to start")
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        workers = run_processes(run_id)
        assert len(workers) == 2
        trackers = children_named(driver.pid, "resource_tracker")
        assert len(trackers) == 1
        run_sems = our_semaphores() - sems_before
        assert len(run_sems) == 1  # the run's cpu semaphore is in /dev/shm while it runs
    finally:
        os.kill(driver.pid, how)
        driver.wait()
    until(lambda: not run_processes(run_id), "the workers to exit")
    until(lambda: not any(alive(p) for p in trackers), "the resource tracker to exit")
    until(lambda: not (run_sems & our_semaphores()), "the semaphore to be removed")
    # nothing ran for the dead driver: exactly the two tasks that were running had started
    assert len(list(workdir.glob("started-*"))) == 2


def _gated_backend(tmp: Path, workers: int = 1) -> LocalBackend:
    backend = LocalBackend(workers=workers)
    backend.start(BackendContext(run_dir=tmp, run_id=f"t-{uuid.uuid4().hex[:8]}"))
    return backend


def _collect(backend: LocalBackend, n: int, got: list[Outcome] | None = None) -> list[Outcome]:
    """Drive ``backend`` (as the executor does) until ``got`` holds ``n`` outcomes."""
    got = [] if got is None else got

    def enough() -> bool:
        if len(got) < n:
            got.extend(backend.wait(0.1))
        return len(got) >= n

    until(enough, f"{n} outcomes")
    return got


def _until_exists(backend: LocalBackend, path: Path, got: list[Outcome]) -> None:
    """Drive ``backend`` until ``path`` exists, keeping the outcomes that came meanwhile."""

    def there() -> bool:
        got.extend(backend.wait(0.05))
        return path.exists()

    until(there, f"{path.name} to exist")


def test_outcomes_of_a_batch_stream_back_while_the_rest_of_it_runs(workdir: Path) -> None:
    gate = workdir / "gate"
    backend = _gated_backend(workdir)
    try:
        squares = [backend_ops.square.make_task(x=i) for i in range(3)]
        blocker = backend_ops.gated.make_task(started=str(workdir / "s"), gate=str(gate))
        backend.submit([*squares, blocker])  # one worker: one batch holds all four
        got = _collect(backend, 3)
        assert sorted(o.value for o in got) == [0, 1, 4]
        assert backend.in_flight() == 1  # the blocker still runs
        more: list[Outcome] = []
        _until_exists(backend, workdir / "s", more)
        assert more == []
        gate.touch()
        last = _collect(backend, 1)
        assert [o.task_id for o in last] == [blocker.id] and last[0].ok
    finally:
        backend.close()


def test_a_worker_death_fails_its_task_and_returns_the_rest_of_its_batch_as_lost(
    workdir: Path,
) -> None:
    gate = workdir / "gate"
    backend = _gated_backend(workdir)
    try:
        killer = backend_ops.kill_self.make_task(started=str(workdir / "s"), gate=str(gate))
        rest = [backend_ops.square.make_task(x=i) for i in range(3)]
        # one timed task first: until then the backend sends one task per batch
        backend.submit([backend_ops.square.make_task(x=10)])
        assert [o.value for o in _collect(backend, 1)] == [100]
        backend.submit([killer, *rest])
        early: list[Outcome] = []
        _until_exists(backend, workdir / "s", early)
        assert early == []
        gate.touch()
        got = {o.task_id: o for o in _collect(backend, 4, early)}
        dead = got.pop(killer.id)
        assert not dead.ok and not dead.lost
        assert dead.error == "WorkerDied: worker killed by SIGKILL while running this task"
        assert dead.log_path == str(workdir / "logs" / "worker-0.log")
        assert f"==> task {killer.id} (bt.kill_self) failed: WorkerDied: worker killed by " \
            "SIGKILL" in Path(dead.log_path).read_text()
        assert all(o.lost and not o.ok for o in got.values())
        assert set(got) == {t.id for t in rest}
        # a new worker took its place
        backend.submit(rest)
        assert sorted(o.value for o in _collect(backend, 3)) == [0, 1, 4]
    finally:
        backend.close()


def test_sigkill_inside_a_task_fails_only_that_task(workdir: Path) -> None:
    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield [backend_ops.kill_self.make_task(), *(backend_ops.square.make_task(x=i)
                                                   for i in range(10))]

    report = specflow.execute(flow(), backend="local", workers=2, keep_going=True)
    assert report.status == "failed"
    assert [f.operation for f in report.failures] == ["bt.kill_self"]
    assert "worker killed by SIGKILL while running this task" in report.failures[0].error
    assert report.counts["bt.square"]["done"] == 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_sys_exit_in_a_task_fails_only_that_task(workdir: Path, backend: str) -> None:
    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield [backend_ops.exit_with.make_task(code=3),
               *(backend_ops.square.make_task(x=i) for i in range(5))]

    report = specflow.execute(flow(), backend=backend, workers=2, keep_going=True)
    assert report.status == "failed"
    assert [f.error for f in report.failures] == ["SystemExit: 3"]
    assert report.counts["bt.square"]["done"] == 5


def test_sys_exit_in_a_task_from_the_command_line(workdir: Path) -> None:
    spec = workdir / "spec.yaml"
    spec.write_text(
        '"@type": concurrent_flow\nstages:\n  - {"@type": bt.exit, code: 3}\n'
        '  - {"@type": bt.square, x: 4}\n  - {"@type": bt.square, x: 5}\n'
    )
    r = subprocess.run(
        [sys.executable, "-m", "specflow", "run", "-i", str(TESTS / "backend_ops.py"),
         str(spec), "--run-dir", "run", "--keep-going", "--no-progress", "--backend", "local"],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 1, r.stderr
    assert "SystemExit: 3" in r.stdout + r.stderr
    import sqlite3

    con = sqlite3.connect(workdir / "run" / "checkpoint.db")
    rows = dict(con.execute("SELECT operation || ':' || status, COUNT(*) FROM tasks "
                            "GROUP BY operation, status").fetchall())
    con.close()
    assert rows == {"bt.exit:failed": 1, "bt.square:done": 2}


def test_a_driver_read_from_stdin_starts_its_workers(workdir: Path) -> None:
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "import backend_ops, specflow\n"
        "report = specflow.execute([backend_ops.square.make_task(x=i) for i in range(4)],\n"
        "                          backend='local', workers=2, checkpoint=False)\n"
        "print(report.status, report.counts['bt.square']['done'])\n")
    r = subprocess.run([sys.executable, "-"], input=script, cwd=workdir, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ["done", "4"], r.stdout + r.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unpicklable_value_fails_its_task_alike(workdir: Path, backend: str) -> None:
    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield [backend_ops.lock.make_task(), backend_ops.square.make_task(x=3)]

    report = specflow.execute(flow(), backend=backend, workers=1, keep_going=True)
    assert [f.operation for f in report.failures] == ["bt.lock"]
    error = report.failures[0].error
    assert error.startswith("TaskTransportError: the task's return value cannot be pickled")
    assert "lock" in error
    assert report.counts["bt.square"]["done"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_error_texts_are_bounded(workdir: Path, backend: str) -> None:
    report = specflow.execute(backend_ops.huge_error.make_task(size=10_000_000),
                              backend=backend, workers=1)
    failure = report.failures[0]
    assert failure.error.startswith("ValueError: xxx")
    assert len(failure.error) < 9 * 1024 and "characters cut" in failure.error
    assert failure.traceback is not None
    assert len(failure.traceback) < 65 * 1024 and "characters cut" in failure.traceback
    assert "ValueError: xxx" in failure.traceback[-10_000:]
    assert "huge_error" in failure.traceback  # the frames are kept


def test_runtime_limit_ends_a_task_that_ignores_its_alarm(workdir: Path) -> None:
    gate = workdir / "gate"  # never opened
    slow = backend_ops.stubborn.with_options(runtime_limit_sec=0.3)

    @specflow.flow_schema
    def flow() -> Generator[Any, Any, None]:
        yield slow.make_task(started=str(workdir / "s"), gate=str(gate))
        yield backend_ops.square.make_task(x=2)

    report = specflow.execute(flow(), backend="local", workers=1, keep_going=True)
    assert len(report.failures) == 1 and "stubborn" in report.failures[0].operation
    error = report.failures[0].error
    assert error.startswith("TaskTimeoutError: task exceeded its runtime limit of 0.3 s")
    assert "worker was killed" in error
    assert report.counts["bt.square"]["done"] == 1  # the new worker ran the rest


def test_task_output_lands_in_the_worker_log_between_marks(workdir: Path) -> None:
    backend = _gated_backend(workdir)
    try:
        tasks = [backend_ops.chatty.make_task(word=w) for w in ("alpha", "beta")]
        backend.submit(tasks)
        got = _collect(backend, 2)
        assert all(o.ok for o in got)
        log = Path(got[0].log_path or "")
        assert log == workdir / "logs" / "worker-0.log"
        lines = log.read_text().splitlines()
        for task, word in zip(tasks, ("alpha", "beta"), strict=True):
            start = lines.index(f"==> task {task.id} (bt.chatty)")
            end = next(i for i, line in enumerate(lines)
                       if line.startswith(f"==> task {task.id} (bt.chatty) done"))
            inside = set(lines[start + 1 : end])
            assert inside == {f"print {word}", f"stderr {word}", f"fd1 {word}",
                              f"child {word}"}
        recent = backend.recent_output()
        assert "child alpha" in recent and "print beta" in recent
        assert not any(line.startswith("==>") for line in recent)
        assert backend.recent_output() == []  # only new lines
    finally:
        backend.close()


def test_semaphores_belong_to_their_run(workdir: Path) -> None:
    first = specflow.execute(backend_ops.bounded_resources.make_task(), backend="local",
                             workers=1, semaphores={"cpu": 1, "read": 2}, run_dir="a")
    assert first.status == "done"
    second = specflow.execute(backend_ops.bounded_resources.make_task(), backend="local",
                              workers=1, run_dir="b")
    assert second.status == "done"
    import sqlite3

    def value(run: str) -> object:
        con = sqlite3.connect(workdir / run / "checkpoint.db")
        try:
            return json.loads(con.execute("SELECT value_json FROM tasks").fetchone()[0])
        finally:
            con.close()

    assert value("a") == {"cpu": 1, "read": 2}
    assert value("b") == {}


@pytest.mark.parametrize("bad", [{"cpu": -1}, {"cpu": 0}, {"read": "2"}, {"cpu": 1.5},
                                 {"cpu": True}, {"disk": 1}])
def test_bad_semaphore_values_are_refused(workdir: Path, bad: dict[str, Any]) -> None:
    from specflow.spec import SpecError

    with pytest.raises(SpecError, match="semaphores"):
        specflow.execute(backend_ops.square.make_task(x=1), backend="local", workers=1,
                         semaphores=bad)


def test_a_killed_worker_gives_back_the_semaphore_units_it_held(workdir: Path) -> None:
    backend = LocalBackend(workers=1)
    backend.start(BackendContext(run_dir=workdir, run_id=f"t-{uuid.uuid4().hex[:8]}",
                                 semaphores={"cpu": 1}))
    try:
        dying = backend_ops.die_holding.make_task(resource="cpu")
        backend.submit([dying])
        (dead,) = _collect(backend, 1)
        assert dead.error == "WorkerDied: worker killed by SIGKILL while running this task"
        # without the unit back, this would wait forever for the only cpu unit
        backend.submit([backend_ops.hold.make_task(resource="cpu", x=i) for i in range(3)])
        assert sorted(o.value for o in _collect(backend, 3)) == [0, 1, 2]
    finally:
        backend.close()


def test_a_worker_that_cannot_start_fails_the_tasks_with_its_reason(workdir: Path) -> None:
    module = workdir / "fragile_ops.py"
    module.write_text(
        "import os\nimport specflow\n\n"
        "if os.environ.get('SPECFLOW_RUN_ID'):\n"
        "    raise RuntimeError('this module refuses to load in a worker')\n\n"
        "@specflow.taskable_operation\ndef one() -> int:\n    return 1\n"
    )
    from specflow.builder.imports import import_user_module

    fragile = import_user_module(str(module))
    report = specflow.execute(fragile.one.make_task(), backend="local", workers=1,
                              imports=[str(module)])
    assert report.status == "failed"
    error = report.failures[0].error
    assert error.startswith("WorkerStartError: a worker could not start")
    assert "this module refuses to load in a worker" in error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cancel_kills_the_workers_and_new_work_gets_new_ones(workdir: Path) -> None:
    run_id = f"t-{uuid.uuid4().hex[:8]}"
    backend = LocalBackend(workers=2)
    backend.start(BackendContext(run_dir=workdir, run_id=run_id))
    try:
        blockers = [backend_ops.gated.make_task(started=str(workdir / f"s{i}"),
                                                gate=str(workdir / "gate")) for i in range(2)]
        backend.submit(blockers)
        got: list[Outcome] = []
        _until_exists(backend, workdir / "s0", got)
        _until_exists(backend, workdir / "s1", got)
        first = set(run_processes(run_id))
        assert len(first) == 2
        backend.cancel()
        assert backend.in_flight() == 0 and backend.wait(0) == []
        assert not any(alive(p) for p in first)
        backend.submit([backend_ops.square.make_task(x=9)])
        assert [o.value for o in _collect(backend, 1)] == [81]
        assert not set(run_processes(run_id)) & first
    finally:
        backend.close()
    until(lambda: not run_processes(run_id), "the workers to exit after close")


def test_a_lone_first_task_runs_on_the_first_ready_worker_while_another_still_starts(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The start gate (work waits until every worker started) holds back only work the
    ready workers cannot take one task each of: a run's lone first task does not wait for
    a worker that starts late. One of the two workers here blocks in its imports until the
    test opens the gate, and the gate's own time limit is out of reach."""
    import specflow.backends.local as local

    monkeypatch.setattr(local, "START_GATE_S", 3600.0)
    gate = workdir / "gate"
    module = workdir / "late_start.py"
    module.write_text(
        "import os, time\n"
        "if os.environ.get('SPECFLOW_RUN_ID'):\n"
        f"    try:\n        os.close(os.open({str(workdir / 'first')!r}, "
        "os.O_CREAT | os.O_EXCL))\n"
        "    except FileExistsError:  # the second worker to get here waits for the gate\n"
        f"        while not os.path.exists({str(gate)!r}):\n"
        "            time.sleep(0.01)\n"
    )
    backend = LocalBackend(workers=2)
    backend.start(BackendContext(run_dir=workdir, run_id=f"t-{uuid.uuid4().hex[:8]}",
                                 imports=(str(module),)))
    try:
        backend.submit([backend_ops.square.make_task(x=7)])
        got = _collect(backend, 1)
        assert got[0].ok and got[0].value == 49
        assert not gate.exists() and (workdir / "first").exists()
        assert sum(w.ready for w in backend._pool.values()) == 1  # the other still starts
        # more work than the ready worker can take one task of waits for the late one
        backend.submit([backend_ops.square.make_task(x=i) for i in range(4)])
        assert backend.wait(0.2) == [] and backend.in_flight() == 4
        gate.touch()
        assert sorted(o.value for o in _collect(backend, 4)) == [0, 1, 4, 9]
    finally:
        backend.close()
