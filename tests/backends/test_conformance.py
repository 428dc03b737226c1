"""One suite, every backend: a backend is done when it passes all of these.

The same behaviours are asked of ``inline``, ``local``, ``slurm`` (the local cluster of
``slurm/cluster.sh``) and ``dask`` (an embedded dask.distributed cluster): a plain flow,
values handed to flows through dependencies, failures, retries of transient errors,
keep-going, SIGKILL of the driver then resume, worker death, and volume output identical to
an inline run. Waiting is on conditions (gate files, lines in files), never on a guessed
duration.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import slurm_cluster
import user_ops

from specflow.backends import Backend
from specflow.run import execute

TESTS = Path(__file__).resolve().parent.parent
USER_OPS = str(TESTS / "user_ops.py")
BACKENDS = ["inline", "local", "slurm", "dask"]
#: how long a condition is waited for before the test gives up (a hang guard, not a bound)
PATIENCE_S = 240.0



@pytest.fixture(params=BACKENDS)
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    backend: str = request.param
    if backend == "slurm":
        request.getfixturevalue("cluster")
    yield backend


def backend_of(name: str, tmp_path: Path) -> str | Backend:
    """The backend to hand ``execute``: a SLURM backend under a job name of this test's own
    (so cleanup cancels only its jobs), the others by name."""
    if name == "slurm":
        from specflow.backends.slurm import SlurmBackend

        job = f"specflow-conf-{os.getpid()}-{tmp_path.name[-20:]}"
        return SlurmBackend(job_name=job, tasks_per_job=4)
    return name


def run(name: str, tmp_path: Path, target: Any, **kw: Any) -> Any:
    backend = backend_of(name, tmp_path)
    try:
        return execute(target, backend=backend, workers=2, run_dir=tmp_path / "run",
                       imports=[USER_OPS], retry_backoff=0.01, **kw)
    finally:
        if not isinstance(backend, str):
            slurm_cluster.cancel_all(getattr(backend, "job_name", "") or "")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specflow", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=PATIENCE_S)


def spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "specflow", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(cond: Any, what: str, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not cond():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the driver ended before {what}: {out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def cancel_recorded_jobs(checkpoint: Path) -> None:
    if not checkpoint.exists():
        return
    con = sqlite3.connect(checkpoint)
    try:
        ids = [r[0] for r in con.execute("SELECT job_id FROM jobs")]
    except sqlite3.Error:
        ids = []
    finally:
        con.close()
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, check=False)


def cli_backend_args(name: str) -> list[str]:
    return ["--backend", name, "--workers", "2"] if name != "slurm" else ["--backend", name]


# -- the behaviours ----------------------------------------------------------------------
def test_plain_flow(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    report = run(name, tmp_path, user_ops.append_many(path=str(out), n=20))
    assert report.status == "done", [f.error for f in report.failures]
    assert sorted(lines(out)) == sorted(f"t{i}" for i in range(20))
    assert report.counts["test.append"]["done"] == 20
    con = sqlite3.connect(tmp_path / "run" / "checkpoint.db")
    done = con.execute("SELECT COUNT(*) FROM tasks WHERE status = 'done'").fetchone()[0]
    con.close()
    assert done == 20


def test_dependency_values_reach_the_flow(name: str, tmp_path: Path) -> None:
    out = tmp_path / "sum.txt"
    report = run(name, tmp_path, user_ops.sum_of_squares(n=9, out=str(out)))
    assert report.status == "done", [f.error for f in report.failures]
    assert lines(out) == [str(sum(i * i for i in range(9)))]


def test_failure_is_reported(name: str, tmp_path: Path) -> None:
    report = run(name, tmp_path, user_ops.fail.make_task(message="planned on every backend"))
    assert report.status == "failed"
    assert report.exit_code == 1
    [failure] = report.failures
    assert failure.operation == "test.fail"
    assert "ValueError: planned on every backend" in failure.error
    assert failure.traceback and "planned on every backend" in failure.traceback
    con = sqlite3.connect(tmp_path / "run" / "checkpoint.db")
    row = con.execute("SELECT status, error FROM tasks").fetchone()
    con.close()
    assert row[0] == "failed" and "planned on every backend" in row[1]


def test_transient_errors_are_retried(name: str, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    report = run(name, tmp_path, user_ops.flaky.make_task(counter=str(counter), failures=2))
    assert report.status == "done", [f.error for f in report.failures]
    assert counter.read_text() == "3"
    assert report.counts["test.flaky"]["retried"] == 2
    assert report.counts["test.flaky"]["done"] == 1


def test_keep_going_runs_what_does_not_depend_on_the_failure(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    report = run(name, tmp_path, user_ops.partly_failing(path=str(out), n=5), keep_going=True)
    assert report.status == "failed"
    assert sorted(lines(out)) == [f"ok{i}" for i in range(5)]
    assert "after-failure" not in lines(out)
    assert len(report.skipped_flows) == 1
    assert [f.operation for f in report.failures] == ["test.fail"]


def test_worker_death_loses_only_its_own_tasks(name: str, tmp_path: Path) -> None:
    """A task kills the process it runs in; the others run exactly once and the run ends
    done (the dead task is retried: its death is declared transient, since by default a
    worker's death fails the task it was running). For ``inline`` that process is the
    driver: the run stops and ``resume`` ends it."""
    out, marker = tmp_path / "out.txt", tmp_path / "marker"
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"@type": "execute", "transient_errors": ["WorkerDied"],
                                "target": {"@type": "test.death_among_others",
                                           "path": str(out), "marker": str(marker), "n": 6}}))
    ckpt = tmp_path / "run" / "checkpoint.db"
    try:
        r = cli("run", "-i", USER_OPS, str(spec), "--run-dir", "run", "--no-progress",
                *cli_backend_args(name), cwd=tmp_path)
        if name == "inline":
            assert r.returncode == 17, r.stdout + r.stderr
            assert marker.exists()
            r = cli("resume", str(ckpt), "--no-progress", cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        if name == "slurm":
            cancel_recorded_jobs(ckpt)
    assert marker.read_text() == "died"
    counts = Counter(lines(out))
    assert set(counts) == {f"ok{i}" for i in range(6)}
    if name == "local":
        # a local worker gathers its outcomes for up to 20 ms before sending them: tasks it
        # finished just before it died were still in flight, and may run once more
        assert all(c <= 2 for c in counts.values()), counts
    elif name != "inline":
        assert all(c == 1 for c in counts.values()), f"tasks beside the dead one ran again: {counts}"
    # inline: the dead process was the driver, and a driver's crash may lose the last
    # batch's bookkeeping (never a task's output), so those tasks may run again on resume
    con = sqlite3.connect(ckpt)
    rows = dict(con.execute("SELECT operation, status FROM tasks WHERE operation = "
                            "'test.die_once'").fetchall())
    con.close()
    assert rows == {"test.die_once": "done"}


def test_sigkill_of_the_driver_then_resume(name: str, tmp_path: Path) -> None:
    """Kill the driver while tasks wait behind a gate; resume: what was recorded is not
    done again, and everything is done in the end."""
    out, gate, started = tmp_path / "out.txt", tmp_path / "gate", tmp_path / "started"
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"@type": "test.free_then_gated", "path": str(out),
                                "gate": str(gate), "started": str(started), "n_free": 6,
                                "n_gated": 4}))
    ckpt = tmp_path / "run" / "checkpoint.db"
    proc = spawn("run", "-i", USER_OPS, str(spec), "--run-dir", "run", "--no-progress",
                 *cli_backend_args(name), cwd=tmp_path)
    try:
        # the gated tasks start only after the barrier, which commits the free ones
        wait_for(lambda: len(lines(started)) >= 1, "a gated task to start", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
        con = sqlite3.connect(ckpt)
        recorded = {json.loads(v) for (v,) in con.execute(
            "SELECT value_json FROM tasks WHERE status = 'done'")}
        con.close()
        assert recorded == {f"free{i}" for i in range(6)}
        gate.write_text("open")
        r = cli("resume", str(ckpt), "--no-progress", cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "skipped 6 tasks already done" in r.stdout
    finally:
        if proc.poll() is None:
            proc.kill()
        if name == "slurm":
            cancel_recorded_jobs(ckpt)
    counts = Counter(lines(out))
    assert set(counts) == {f"free{i}" for i in range(6)} | {f"gated{i}" for i in range(4)}
    assert all(counts[f"free{i}"] == 1 for i in range(6)), counts


# -- volumes --------------------------------------------------------------------------------
SHAPE = [48, 48, 32]


def volume_spec(root: Path) -> Path:
    raw, blurred, mask = (str(root / n) for n in ("raw.zarr", "blurred.zarr", "mask.zarr"))
    doc = {"@type": "sequential_flow", "stages": [
        {"@type": "synthetic_volume", "path": raw, "size": SHAPE, "chunk_size": [16, 16, 16],
         "seed": 5, "noise": 0.3},
        {"@type": "build_subchunkable_apply_flow",
         "fn": {"@type": "gaussian_filter", "@mode": "partial", "sigma": 1.0},
         "op_kwargs": {"src": {"@type": "build_ts_layer", "path": raw}},
         "dst": {"@type": "build_ts_layer", "path": blurred, "info_reference_path": raw},
         "dst_resolution": [1, 1, 1], "start_coord": [0, 0, 0], "end_coord": SHAPE,
         "coord_resolution": [1, 1, 1],
         "processing_chunk_sizes": [[24, 24, 16], [8, 8, 8]],
         "processing_crop_pads": [[0, 0, 0], [3, 3, 3]],
         "processing_blend_pads": [[4, 4, 4], [0, 0, 0]],
         "processing_blend_modes": "quadratic",
         "level_intermediaries_dirs": [str(root / "tmp")] * 2},
        {"@type": "build_subchunkable_apply_flow",
         "fn": {"@type": "threshold", "@mode": "partial", "value": 0.5},
         "op_kwargs": {"src": {"@type": "build_ts_layer", "path": blurred}},
         "dst": {"@type": "build_ts_layer", "path": mask, "info_reference_path": raw,
                 "info_dtype": "uint8", "info_layer_type": "segmentation"},
         "dst_resolution": [1, 1, 1], "start_coord": [0, 0, 0], "end_coord": SHAPE,
         "coord_resolution": [1, 1, 1], "processing_chunk_sizes": [[16, 16, 16]],
         "skip_intermediaries": True},
    ]}
    path = root / "volume.json"
    path.write_text(json.dumps(doc))
    return path


def read_all(path: Path) -> np.ndarray:
    from specflow.volumes import VolumetricIndex, build_ts_layer

    layer = build_ts_layer(path=str(path))
    return np.asarray(layer[VolumetricIndex.from_voxels((0, 0, 0), SHAPE, (1, 1, 1))])


@pytest.fixture(scope="module")
def inline_volume(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    root = tmp_path_factory.mktemp("inline-volume")
    r = cli("run", str(volume_spec(root)), "--backend", "inline", "--run-dir", "run",
            "--no-progress", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    return {n: read_all(root / n) for n in ("blurred.zarr", "mask.zarr")}


def test_volume_output_identical_to_inline(name: str, tmp_path: Path,
                                           inline_volume: dict[str, np.ndarray]) -> None:
    ckpt = tmp_path / "run" / "checkpoint.db"
    try:
        r = cli("run", str(volume_spec(tmp_path)), "--run-dir", "run", "--no-progress",
                *cli_backend_args(name), cwd=tmp_path)
    finally:
        if name == "slurm":
            cancel_recorded_jobs(ckpt)
    assert r.returncode == 0, r.stdout + r.stderr
    for n, expected in inline_volume.items():
        got = read_all(tmp_path / n)
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected), f"{n} differs from the inline run"
    assert inline_volume["mask.zarr"].any() and not inline_volume["mask.zarr"].all()
