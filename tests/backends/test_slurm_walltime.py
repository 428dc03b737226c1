"""Walltime-aware SLURM jobs on the local cluster: with a 20-second time limit and 3-second
tasks, jobs start only tasks that fit, hand the rest to new jobs, and the run completes with
no task killed by the limit and no retry spent on walltime."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import user_ops

from specflow.backends.slurm import SlurmBackend, parse_time_limit_s
from specflow.execution.checkpoint import Checkpoint
from specflow.run import execute

pytestmark = pytest.mark.slurm
TESTS = Path(__file__).resolve().parent.parent
USER_OPS = str(TESTS / "user_ops.py")




def test_time_limits_in_seconds() -> None:
    assert parse_time_limit_s("0:20") == 20
    assert parse_time_limit_s("1:00:05") == 3605
    assert parse_time_limit_s(2) == 120
    assert parse_time_limit_s(None) == 3600


def test_jobs_start_only_tasks_that_fit_in_their_time_limit(tmp_path: Path,
                                                            job_name: str) -> None:
    out = tmp_path / "out.txt"
    n = 12
    backend = SlurmBackend(time_limit="0:20", tasks_per_job=8, job_name=job_name)
    report = execute(user_ops.append_many(path=str(out), n=n, delay=3.0), backend=backend,
                     run_dir=tmp_path / "run", imports=[USER_OPS], max_attempts=1)
    assert report.status == "done", [f.error for f in report.failures]
    counts = Counter(out.read_text().splitlines())
    assert counts == Counter({f"t{i}": 1 for i in range(n)}), "each task ran exactly once"
    c = report.counts["test.append"]
    assert c["retried"] == 0, "no attempt was lost to the time limit"
    assert c["done"] == n
    with Checkpoint(tmp_path / "run" / "checkpoint.db") as ck:
        jobs = ck.jobs()
        attempts = [r.attempts for r in ck.task_rows("done")]
    states = Counter(j["state"] for j in jobs)
    assert set(states) == {"COMPLETED"}, states
    assert attempts == [1] * n
    # 6 tasks of 3 s per job do not fit in 20 s: jobs drained, said so, and more jobs ran
    drained = [j for j in jobs if j["note"] and "drained" in j["note"]]
    assert drained, jobs
    assert len(jobs) >= 3
    assert backend.drained_jobs == len(drained)
    for j in jobs:
        assert j["busy_s"] is not None and j["allocated_s"] is not None
        assert 0 < j["busy_s"] <= j["allocated_s"] <= 20.0, j
    status = subprocess.run([sys.executable, "-m", "specflow", "status",
                             str(tmp_path / "run")], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "COLUMNS": "250"})
    assert status.returncode == 0, status.stderr
    assert "efficiency" in status.stdout and "drained with" in status.stdout


def test_min_job_minutes_packs_tasks_so_each_job_runs_a_useful_while() -> None:
    tasks = [user_ops.square.make_task(x=i) for i in range(1000)]
    wide = SlurmBackend(time_limit=60)
    packed = SlurmBackend(time_limit=60, min_job_minutes=10)
    for b in (wide, packed):
        b._slots = 100
        b._durations = {"test.square": (1.0, 10)}
    assert wide._job_size(tasks) == 10  # one job per slot
    assert packed._job_size(tasks) == 600  # ten minutes of one-second tasks
    short = SlurmBackend(time_limit="0:30", min_job_minutes=10)
    short._slots = 100
    short._durations = {"test.square": (1.0, 10)}
    assert short._job_size(tasks) <= 30, "never more than fits in the time limit"
