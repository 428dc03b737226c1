"""What running tasks on SLURM costs: specflow's SLURM backend against the local backend and
against naive submitit (one SLURM job per task).

    bash slurm/cluster.sh up        # a real single-node cluster on this machine
    python benchmarks/slurm.py [--tasks 2000] [--ms 10] [--naive 100]

(a) the local backend (process pool), (b) specflow's SLURM backend, both running ``--tasks``
tasks that each sleep ``--ms`` milliseconds; (c) submitit submitting one job per task, stopped
after ``--naive`` tasks and extrapolated. Prints wall times, the cost per task above the
ideal (the tasks' own time spread over the cluster's CPUs), and the ratios. Goals: (b) adds
at most 2 ms per task over (a), and its overhead per task is at least 100x below (c)'s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import specflow
from specflow.backends.slurm import SlurmBackend, partition_cpus
from specflow.flow.task import Task
from specflow.run import execute


def nap(i: int, ms: float) -> int:
    time.sleep(ms / 1000.0)
    return i


@specflow.flow_schema
def naps(n: int, ms: float) -> Generator[Any, Any, None]:
    # plain tasks of a function in this script: cloudpickle ships it by value to the jobs
    for i in range(n):
        yield Task(fn=nap, kwargs={"i": i, "ms": ms}, id=f"nap-{ms:g}-{i}", operation="nap")


def timed_run(n: int, ms: float, backend: Any, run_dir: Path) -> float:
    t0 = time.perf_counter()
    report = execute(naps(n, ms), backend=backend, run_dir=run_dir, workers=None)
    dt = time.perf_counter() - t0
    assert report.status == "done", (report.status, report.failures[:1])
    assert report.total("done") == n, report.total("done")
    return dt


def naive_submitit(n: int, ms: float, folder: Path) -> float:
    import submitit

    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    ex.update_parameters(timeout_min=10)
    t0 = time.perf_counter()
    jobs = [ex.submit(nap, i=i, ms=ms) for i in range(n)]
    results = [job.result() for job in jobs]
    dt = time.perf_counter() - t0
    assert results == list(range(n))
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--ms", type=float, default=10.0)
    ap.add_argument("--naive", type=int, default=100, help="tasks for naive submitit (0: skip)")
    args = ap.parse_args()
    if shutil.which("sbatch") is None or subprocess.run(
        ["sinfo"], capture_output=True, check=False
    ).returncode != 0:
        print("no SLURM cluster here: run `bash slurm/cluster.sh up` first", file=sys.stderr)
        return 2
    n, ms = args.tasks, args.ms
    cpus = partition_cpus(None) or 1
    workers = os.cpu_count() or 1
    print(f"{n} tasks of {ms:g} ms; SLURM partition CPUs: {cpus}; local workers: {workers}")

    with tempfile.TemporaryDirectory(prefix="specflow-bench-slurm-") as tmp:
        work = Path(tmp)
        # (a) local
        a = timed_run(n, ms, "local", work / "local")
        # (b) SLURM backend
        b = timed_run(n, ms, SlurmBackend(), work / "slurm")
        # (c) naive submitit, one job per task
        c_n = min(args.naive, n)
        c = naive_submitit(c_n, ms, work / "naive") if c_n else float("nan")

    def overhead(wall: float, count: int, width: int) -> float:
        """Seconds per task above the ideal: the tasks' own time spread over ``width``."""
        return (wall - count * ms / 1000.0 / width) / count

    oa, ob = overhead(a, n, workers), overhead(b, n, cpus)
    oc = overhead(c, c_n, cpus) if c_n else float("nan")
    print(f"(a) local backend:        {a:8.2f} s  {a / n * 1e3:8.3f} ms/task wall  "
          f"overhead {oa * 1e3:8.3f} ms/task")
    print(f"(b) specflow SLURM:       {b:8.2f} s  {b / n * 1e3:8.3f} ms/task wall  "
          f"overhead {ob * 1e3:8.3f} ms/task")
    if c_n:
        print(f"(c) naive submitit:       {c:8.2f} s for {c_n} tasks  "
              f"{c / c_n * 1e3:8.1f} ms/task wall  overhead {oc * 1e3:8.1f} ms/task  "
              f"(extrapolated to {n}: {c / c_n * n:.0f} s)")
    extra = (b - a) / n
    print(f"(b) - (a): {extra * 1e3:+.3f} ms/task (goal <= 2 ms)")
    if c_n:
        print(f"(c) / (b) per-task wall: {(c / c_n) / (b / n):.0f}x; per-task overhead: "
              f"{oc / max(ob, 1e-9):.0f}x (goal >= 100x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
