"""Per-task overhead of specflow's executor, against dask's threaded scheduler.

    python benchmarks/engine.py [--tasks N] [--million]

Runs N no-op tasks from one flow with checkpointing on through the inline and the local
backends, and the same no-ops as ``dask.compute`` of delayed calls with dask's threaded
scheduler, in this one process; prints per-task costs and the ratios.
``--million`` runs 1,000,000 no-op tasks inline and prints the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import specflow
from specflow.runs import execute


@specflow.taskable_operation
def noop(i: int) -> None:
    return None


@specflow.flow_schema
def many(n: int) -> Generator[Any, Any, None]:
    for i in range(n):
        yield noop.make_task(i=i)


def run_specflow(n: int, backend: str, workdir: Path) -> float:
    t0 = time.perf_counter()
    report = execute(many(n), backend=backend, run_dir=workdir / f"{backend}-{n}", workers=2)
    dt = time.perf_counter() - t0
    assert report.status == "done", report.status
    done = report.total("done")
    assert done == n, (done, n)
    return dt


def run_dask(n: int) -> float:
    import dask

    @dask.delayed
    def dnoop(i: int) -> None:
        return None

    t0 = time.perf_counter()
    dask.compute(*[dnoop(i) for i in range(n)], scheduler="threads")
    return time.perf_counter() - t0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--million", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.million:
            n = 1_000_000
            base = peak_rss_mb()
            dt = run_specflow(n, "inline", work)
            print(f"inline, {n:,} no-op tasks, checkpoint on: {dt:.1f} s "
                  f"({dt / n * 1e6:.1f} µs/task)")
            print(f"peak RSS: {peak_rss_mb():.0f} MB (at start {base:.0f} MB; goal < 500 MB)")
            return 0
        n = args.tasks
        inline = run_specflow(n, "inline", work)
        local = run_specflow(n, "local", work)
        dsk = run_dask(n)
        print(f"{n:,} no-op tasks, one flow, checkpoint on")
        print(f"  inline backend : {inline:7.2f} s  {inline / n * 1e6:7.1f} µs/task  "
              f"(goal <= 20 µs)")
        print(f"  local backend  : {local:7.2f} s  {n / local:9,.0f} tasks/s "
              f"(goal >= 20,000 tasks/s)")
        print(f"  dask threaded  : {dsk:7.2f} s  {dsk / n * 1e6:7.1f} µs/task")
        print(f"  ratio dask / specflow inline: {dsk / inline:.1f}x (goal >= 5x)")
        print(f"  ratio dask / specflow local : {dsk / local:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
