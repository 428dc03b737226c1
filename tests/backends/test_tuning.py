"""Worker processes tune their allocator and collector before they run tasks
(specflow.backends.tuning), and leave the allocator alone when the user set glibc's own
variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import user_ops

from specflow.backends.slurm import SlurmBackend
from specflow.backends.tuning import MMAP_THRESHOLD, TRIM_THRESHOLD, allocator_env
from specflow.run import execute

USER_OPS = str(Path(__file__).resolve().parent.parent / "user_ops.py")


def _report(out: Path) -> dict[str, object]:
    return dict(json.loads(out.read_text()))


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No glibc malloc variable in the environment workers inherit (another library in
    this test process may have set one)."""
    for key in list(os.environ):
        if key.startswith("MALLOC_"):
            monkeypatch.delenv(key)


def test_a_local_worker_runs_tasks_with_the_allocator_and_collector_tuned(
        tmp_path: Path, plain_env: None) -> None:
    out = tmp_path / "tuning.json"
    report = execute(user_ops.tuning.make_task(out=str(out)), backend="local", workers=1,
                     checkpoint=False, imports=[USER_OPS])
    assert report.status == "done", [f.error for f in report.failures]
    got = _report(out)
    assert got["pid"] != os.getpid()
    assert got["allocator"] == "applied"
    assert int(got["frozen"]) > 1000  # the modules and classes of a started worker
    assert int(got["gen0"]) >= 50_000


def test_the_users_malloc_variables_win(tmp_path: Path, plain_env: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", str(1 << 20))
    out = tmp_path / "tuning.json"
    report = execute(user_ops.tuning.make_task(out=str(out)), backend="local", workers=1,
                     checkpoint=False, imports=[USER_OPS])
    assert report.status == "done", [f.error for f in report.failures]
    assert _report(out)["allocator"] == "set by the environment"


def test_allocator_env_names_glibcs_variables_with_the_workers_values() -> None:
    env = allocator_env()
    assert env == {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
                   "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
    # a process started with them is served as a tuned worker is: a freed block of a few
    # MiB comes back from the heap, so allocating it again touches no fresh page
    probe = ("import resource, numpy as np\n"
             "a = np.ones(3 << 20, np.uint8); del a\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
             "for _ in range(50):\n"
             "    a = np.ones(3 << 20, np.uint8); del a\n"
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    tuned = int(subprocess.run([sys.executable, "-c", probe], env={**base, **env},
                               capture_output=True, text=True, check=True).stdout)
    plain = int(subprocess.run([sys.executable, "-c", probe], env=base,
                               capture_output=True, text=True, check=True).stdout)
    assert tuned < 50 <= plain  # 3 MiB is 768 pages: untuned, each allocation faults


@pytest.mark.slurm
def test_a_slurm_job_runs_its_tasks_tuned(tmp_path: Path, job_name: str,
                                          plain_env: None) -> None:
    out = tmp_path / "tuning.json"
    report = execute(user_ops.tuning.make_task(out=str(out)),
                     backend=SlurmBackend(job_name=job_name), run_dir=tmp_path / "run",
                     imports=[USER_OPS])
    assert report.status == "done", [f.error for f in report.failures]
    got = _report(out)
    assert got["allocator"] == "applied"
    assert int(got["frozen"]) > 1000
