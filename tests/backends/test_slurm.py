"""The SLURM backend on a real single-node cluster (``slurm/cluster.sh up``).

Every run has its own job name, so the tests can watch and cancel their own jobs with
``squeue``/``scancel`` while the backend polls the same cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import slurm_cluster
import user_ops

from specflow.backends.slurm import SlurmBackend
from specflow.execution.checkpoint import Checkpoint
from specflow.run import execute

pytestmark = pytest.mark.slurm

TESTS = Path(__file__).resolve().parent.parent
USER_OPS = str(TESTS / "user_ops.py")
SLOW_OPS = str(TESTS / "processing" / "slow_ops.py")




def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def jobs_of(run_dir: Path) -> list[dict[str, Any]]:
    with Checkpoint(run_dir / "checkpoint.db") as ckpt:
        return ckpt.jobs()


def cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specflow", *args], capture_output=True,
                          text=True, timeout=300, **kw)


def test_cluster_script_reports_and_up_is_idempotent(cluster: None) -> None:
    script = str(slurm_cluster.CLUSTER_SH)
    status = subprocess.run(["bash", script, "status"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    for daemon in ("mariadbd", "munged", "slurmdbd", "slurmctld", "slurmd"):
        assert "running (pid" in rows[daemon], status.stdout
    assert "debug*" in status.stdout and "cluster accepts jobs" in status.stdout
    again = subprocess.run(["bash", script, "up"], capture_output=True, text=True, timeout=300,
                           check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already up" in again.stderr
    srun = subprocess.run(["srun", "hostname"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert srun.returncode == 0 and srun.stdout.strip(), srun.stderr


def test_plain_flow_runs_as_grouped_array_jobs(tmp_path: Path, job_name: str) -> None:
    out = tmp_path / "out.txt"
    backend = SlurmBackend(tasks_per_job=8, job_name=job_name)
    report = execute(user_ops.append_many(path=str(out), n=30), backend=backend,
                     run_dir=tmp_path / "run", imports=[USER_OPS])
    assert report.status == "done", [f.error for f in report.failures]
    assert sorted(lines(out)) == sorted(f"t{i}" for i in range(30))
    jobs = jobs_of(tmp_path / "run")
    # 30 tasks in groups of at most 8, spread evenly: four array elements, each recorded
    # with its log
    assert len(jobs) == 4
    assert {j["state"] for j in jobs} == {"COMPLETED"}
    assert sorted(j["n_tasks"] for j in jobs) == [7, 7, 8, 8]
    for j in jobs:
        assert "_" in j["job_id"], j
        assert Path(j["log_path"]).is_file()
        assert Path(j["log_path"]).is_relative_to(tmp_path / "run")


def test_arrays_are_split_at_the_cluster_limit(
    tmp_path: Path, job_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specflow.backends import slurm

    real = slurm.cluster_config()
    assert real["MaxArraySize"] == "1001"  # what slurm/slurm.conf.in sets
    monkeypatch.setattr(slurm, "cluster_config", lambda: {**real, "MaxArraySize": "3"})
    out = tmp_path / "out.txt"
    report = execute(user_ops.append_many(path=str(out), n=8),
                     backend=SlurmBackend(tasks_per_job=1, job_name=job_name),
                     run_dir=tmp_path / "run", imports=[USER_OPS])
    assert report.status == "done", [f.error for f in report.failures]
    assert len(lines(out)) == 8
    arrays: dict[str, list[str]] = {}
    for j in jobs_of(tmp_path / "run"):
        main, _, index = j["job_id"].partition("_")
        arrays.setdefault(main, []).append(index)
    assert sorted(len(v) for v in arrays.values()) == [2, 3, 3]


def test_values_and_dependencies_come_back(tmp_path: Path, job_name: str) -> None:
    out = tmp_path / "sum.txt"
    report = execute(user_ops.sum_of_squares(n=12, out=str(out)),
                     backend=SlurmBackend(job_name=job_name), run_dir=tmp_path / "run",
                     imports=[USER_OPS])
    assert report.status == "done", [f.error for f in report.failures]
    assert lines(out) == [str(sum(i * i for i in range(12)))]


def test_task_exception_reaches_the_outcome(tmp_path: Path, job_name: str) -> None:
    backend = SlurmBackend(job_name=job_name)
    report = execute(user_ops.fail.make_task(message="boom on the cluster"), backend=backend,
                     run_dir=tmp_path / "run", imports=[USER_OPS], max_attempts=1)
    assert report.status == "failed"
    (failure,) = report.failures
    assert failure.error == "ValueError: boom on the cluster"
    assert failure.traceback is not None
    assert "raise ValueError(message)" in failure.traceback
    assert "user_ops.py" in failure.traceback
    assert failure.log_path is not None
    log = Path(failure.log_path)
    assert log.is_file() and log.is_relative_to(tmp_path / "run")


def test_a_job_that_fails_outside_its_tasks_fails_them_honestly(
    tmp_path: Path, job_name: str
) -> None:
    """A user module that does not import in the job is no task's own error, but retrying
    would fail the same way: the tasks fail (not lost) with the job's traceback. (The module
    imports in the driver, which checks its imports first, and fails on the node.)"""
    missing = str(tmp_path / "not_there.py")
    Path(missing).write_text(
        "import os\n"
        "if os.environ.get('SLURM_JOB_ID'):\n"
        "    raise ImportError('not_there.py cannot be imported on this node')\n"
    )
    report = execute(user_ops.square.make_task(x=3), backend=SlurmBackend(job_name=job_name),
                     run_dir=tmp_path / "run", imports=[USER_OPS, missing], max_attempts=1)
    assert report.status == "failed"
    (failure,) = report.failures
    assert failure.error.startswith("SlurmJobError: job ")
    assert "not_there.py" in failure.error
    assert failure.traceback is not None and "import_modules" in failure.traceback
    assert failure.log_path is not None and Path(failure.log_path).is_file()
    assert [j["state"] for j in jobs_of(tmp_path / "run")] == ["FAILED"]


def test_sbatch_refusing_the_jobs_fails_the_run_with_its_reason(
    tmp_path: Path, job_name: str
) -> None:
    backend = SlurmBackend(partition="no-such-partition", job_name=job_name)
    report = execute(user_ops.square.make_task(x=2), backend=backend, run_dir=tmp_path / "run",
                     imports=[USER_OPS], retry_backoff=0.05)
    assert report.status == "failed"
    (failure,) = report.failures
    assert failure.error.startswith("SlurmSubmitError: sbatch failed")
    assert "partition" in failure.error.lower()


def test_a_job_whose_process_dies_is_retried(tmp_path: Path, job_name: str) -> None:
    marker = tmp_path / "marker"
    tasks = [user_ops.square.make_task(x=i) for i in range(3)]
    tasks.insert(1, user_ops.die_once.make_task(marker=str(marker)))
    report = execute(tasks, backend=SlurmBackend(tasks_per_job=4, job_name=job_name),
                     run_dir=tmp_path / "run", imports=[USER_OPS], max_attempts=1)
    assert report.status == "done", [f.error for f in report.failures]
    assert marker.read_text() == "died"
    states = sorted(j["state"] for j in jobs_of(tmp_path / "run"))
    # the first job died in its second task; what it had not reported ran in a new job
    assert states == ["COMPLETED", "FAILED"]
    with Checkpoint(tmp_path / "run" / "checkpoint.db") as ckpt:
        rows = {r.operation: r for r in ckpt.task_rows()}
    assert rows["test.die_once"].status == "done"


def test_scancel_of_running_jobs_is_retried(tmp_path: Path, job_name: str) -> None:
    out = tmp_path / "out.txt"
    cancelled: list[str] = []

    def cancel_running() -> None:
        # once both running jobs are into their tasks, scancel them from outside
        deadline = time.monotonic() + 60
        while len(lines(out)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        running = [j for j, s in slurm_cluster.squeue(job_name).items() if s == "RUNNING"]
        if running:
            subprocess.run(["scancel", *running], check=False)
            cancelled.extend(running)

    killer = threading.Thread(target=cancel_running, daemon=True)
    killer.start()
    backend = SlurmBackend(tasks_per_job=6, job_name=job_name)
    report = execute(user_ops.append_many(path=str(out), n=24, delay=0.5), backend=backend,
                     run_dir=tmp_path / "run", imports=[USER_OPS])
    killer.join(timeout=5)
    assert cancelled, "no job of the run was seen running"
    assert report.status == "done", [f.error for f in report.failures]
    # a task killed midway may have written its line before it died: it runs again
    assert set(lines(out)) == {f"t{i}" for i in range(24)}
    states = {j["job_id"]: j["state"] for j in jobs_of(tmp_path / "run")}
    assert all(states[j] == "CANCELLED" for j in cancelled), states
    # the cancelled jobs' unfinished tasks went out again, in new jobs
    assert len(states) > 4
    assert sum(1 for s in states.values() if s == "COMPLETED") == len(states) - len(cancelled)


def test_a_requeued_job_does_not_redo_reported_tasks(tmp_path: Path, job_name: str) -> None:
    out = tmp_path / "out.txt"
    requeued: list[str] = []

    def requeue_running() -> None:
        deadline = time.monotonic() + 60
        while len(lines(out)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        running = [j for j, s in slurm_cluster.squeue(job_name).items() if s == "RUNNING"]
        for jid in running:
            subprocess.run(["scontrol", "requeue", jid], check=False, capture_output=True)
            requeued.append(jid)

    killer = threading.Thread(target=requeue_running, daemon=True)
    killer.start()
    backend = SlurmBackend(tasks_per_job=8, job_name=job_name)
    report = execute(user_ops.append_many(path=str(out), n=16, delay=0.3), backend=backend,
                     run_dir=tmp_path / "run", imports=[USER_OPS])
    killer.join(timeout=5)
    assert requeued, "no job of the run was seen running"
    assert report.status == "done", [f.error for f in report.failures]
    got = lines(out)
    assert set(got) == {f"t{i}" for i in range(16)}
    # only a task that was running when its job was requeued can have run twice
    assert len(got) <= 16 + len(requeued)
    # the same two jobs did all the work, none was lost
    states = {j["job_id"]: j["state"] for j in jobs_of(tmp_path / "run")}
    assert states == {j: "COMPLETED" for j in states} and len(states) == 2


def test_cancel_stops_the_jobs(tmp_path: Path, job_name: str) -> None:
    """Fail-fast cancels the backend's other jobs: nothing of the run keeps running."""
    from specflow.backends.base import BackendContext

    backend = SlurmBackend(tasks_per_job=1, job_name=job_name)
    backend.start(BackendContext(run_dir=tmp_path, run_id="cancel-test", imports=(USER_OPS,)))
    backend.submit([user_ops.append.make_task(path=str(tmp_path / "x"), line=f"{i}", delay=30)
                    for i in range(3)])
    backend.wait(1.0)  # past the linger: submitted
    assert len(backend.running_jobs()) == 3
    assert slurm_cluster.wait_for_state(job_name, "RUNNING", timeout=30) is not None
    backend.cancel()
    assert backend.in_flight() == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = {j: s for j, s in slurm_cluster.squeue(job_name).items()
                if s in ("PENDING", "RUNNING", "COMPLETING")}
        if not live:
            break
        time.sleep(0.2)
    assert not live
    assert {r.state for r in backend.job_updates()} == {"CANCELLED"}
    backend.close()


def test_backend_chosen_on_the_command_line(tmp_path: Path, cluster: None) -> None:
    out = tmp_path / "out.txt"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"@type": "test.append_many", "path": str(out), "n": 5}))
    run_dir = tmp_path / "run-cli"
    try:
        done = cli("run", str(spec), "-i", USER_OPS, "--backend", "slurm", "--run-dir",
                   str(run_dir), "--no-progress")
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        slurm_cluster.cancel_all(f"specflow-{run_dir.name}")
    assert sorted(lines(out)) == [f"t{i}" for i in range(5)]
    jobs = jobs_of(run_dir)
    assert jobs and all(j["backend"] == "slurm" and j["state"] == "COMPLETED" for j in jobs)


def test_sigkill_of_the_driver_then_resume(tmp_path: Path, cluster: None) -> None:
    out, gate, started = tmp_path / "out.txt", tmp_path / "gate", tmp_path / "started.txt"
    run_dir = tmp_path / "run"
    job_name = f"specflow-{run_dir.name}"
    spec = tmp_path / "spec.json"
    # two free tasks, then gated ones: the jobs left by the killed driver block on the gate,
    # so they are still alive when the resumed driver cancels them (no race with the clock)
    spec.write_text(json.dumps({
        "@type": "execute_on_slurm",
        "tasks_per_job": 4,
        "target": {"@type": "test.free_then_gated", "path": str(out), "gate": str(gate),
                   "started": str(started), "n_free": 2, "n_gated": 8},
    }))
    driver = subprocess.Popen(
        [sys.executable, "-m", "specflow", "run", str(spec), "-i", USER_OPS, "--run-dir",
         str(run_dir), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    resumed: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 120
        while not lines(started) and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.05)
        assert lines(started), "the run never got going"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        # the jobs outlive their driver, and the checkpoint knows them
        orphans = [j for j, s in slurm_cluster.squeue(job_name).items()
                   if s in ("PENDING", "RUNNING")]
        assert orphans, "the gated jobs should still be alive"
        recorded = {j["job_id"] for j in jobs_of(run_dir)}
        assert set(orphans) <= recorded

        resumed = subprocess.Popen(
            [sys.executable, "-m", "specflow", "resume", str(run_dir / "checkpoint.db"),
             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # the resumed driver cancels what the killed one had left running ...
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = slurm_cluster.sacct_states(orphans)
            if states and all(s.startswith("CANCELLED") for s in states.values()):
                break
            assert resumed.poll() is None, resumed.communicate()
            time.sleep(0.1)
        states = slurm_cluster.sacct_states(orphans)
        assert states and all(s.startswith("CANCELLED") for s in states.values()), states
        # ... then runs the rest itself
        gate.write_text("open")
        stdout, stderr = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, stdout + stderr
        assert set(lines(out)) == {"free0", "free1"} | {f"gated{i}" for i in range(8)}
        # ... and the checkpoint says so: no job of the run is left looking alive
        recorded_states = {j["job_id"]: j["state"] for j in jobs_of(run_dir)}
        assert all(recorded_states[j] == "CANCELLED" for j in orphans), recorded_states
        with Checkpoint(run_dir / "checkpoint.db") as ckpt:
            assert ckpt.live_jobs() == []
    finally:
        gate.write_text("open")
        if driver.poll() is None:
            driver.kill()
        if resumed is not None and resumed.poll() is None:
            resumed.kill()
        slurm_cluster.cancel_all(job_name)


def _volume_spec(tmp: Path, name: str, on_slurm: bool) -> Path:
    raw = str(tmp / "raw.zarr")
    shape = [64, 48, 32]
    blur = {
        "@type": "build_subchunkable_apply_flow",
        "fn": {"@type": "jittery_gaussian", "@mode": "partial", "sigma": 1.0,
               "max_delay": 0.02},
        "op_kwargs": {"src": {"@type": "build_ts_layer", "path": raw}},
        "dst": {"@type": "build_ts_layer", "path": str(tmp / f"{name}.zarr"),
                "info_reference_path": raw},
        "dst_resolution": [1, 1, 1],
        "start_coord": [0, 0, 0], "end_coord": shape, "coord_resolution": [1, 1, 1],
        "processing_chunk_sizes": [[16, 16, 16], [8, 8, 8]],
        "processing_crop_pads": [[0, 0, 0], [2, 2, 2]],
        "processing_blend_pads": [[4, 4, 4], [0, 0, 0]],
        "processing_blend_modes": "quadratic",
        "level_intermediaries_dirs": [str(tmp / f"tmp_{name}")] * 2,
        "max_reduction_chunk_size": [32, 32, 32],
    }
    stages = [
        {"@type": "synthetic_volume", "path": raw, "size": shape, "chunk_size": [16, 16, 16],
         "seed": 5},
        blur,
    ]
    doc: dict[str, Any] = {"target": {"@type": "sequential_flow", "stages": stages}}
    doc["@type"] = "execute_on_slurm" if on_slurm else "execute"
    if not on_slurm:
        doc["backend"] = "local"
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def test_subchunkable_volume_flow_matches_the_local_backend(tmp_path: Path, cluster: None) -> None:
    from specflow.volumes import VolumetricIndex, build_ts_layer

    outputs = {}
    for name, on_slurm in (("local", False), ("slurm", True)):
        spec = _volume_spec(tmp_path, name, on_slurm)
        run_dir = tmp_path / f"run-{name}"
        done = cli("run", str(spec), "-i", SLOW_OPS, "--run-dir", str(run_dir), "--no-progress")
        assert done.returncode == 0, done.stdout + done.stderr
        whole = VolumetricIndex.from_voxels((0, 0, 0), (64, 48, 32), (1, 1, 1))
        outputs[name] = build_ts_layer(str(tmp_path / f"{name}.zarr")).read(whole)
        if on_slurm:
            jobs = jobs_of(run_dir)
            assert jobs and {j["state"] for j in jobs} == {"COMPLETED"}
    assert outputs["local"].std() > 0.01
    assert np.array_equal(outputs["local"], outputs["slurm"])
