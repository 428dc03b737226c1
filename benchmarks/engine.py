"""Per-task overhead of specflow's executor, against dask's threaded scheduler.

    python benchmarks/engine.py [--tasks N] [--million]

Runs N no-op tasks from one flow with checkpointing on through the inline and the local
backends, and the same no-ops through dask's threaded scheduler, in this one process: as a
plain task graph (N tasks) and as ``dask.compute`` of delayed calls (a sample, since its
cost per task grows with the count). Prints per-task costs and the ratios against the faster
of the two dask figures.
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
from specflow.run import execute


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


def _plain_noop(i: int) -> None:
    return None


def run_dask_delayed(n: int) -> float:
    """``dask.compute`` of ``n`` delayed no-ops with the threaded scheduler."""
    import dask

    dnoop = dask.delayed(_plain_noop)
    t0 = time.perf_counter()
    dask.compute(*[dnoop(i) for i in range(n)], scheduler="threads")
    return time.perf_counter() - t0


def run_dask_graph(n: int) -> float:
    """The same no-ops as a plain task graph through dask's threaded scheduler: the
    scheduler's own cost, without building and merging delayed collections."""
    import dask.threaded

    t0 = time.perf_counter()
    dsk = {("noop", i): (_plain_noop, i) for i in range(n)}
    dask.threaded.get(dsk, list(dsk))
    return time.perf_counter() - t0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--million", action="store_true")
    ap.add_argument("--delayed-sample", type=int, default=10_000,
                    help="tasks for the dask.compute-of-delayed timing (it is superlinear)")
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
        graph = run_dask_graph(n)
        # dask.compute of delayed objects grows faster than linearly with the count, so it
        # is timed on a sample and its per-task cost reported as measured there
        n_delayed = min(n, args.delayed_sample)
        delayed = run_dask_delayed(n_delayed)
        per = {
            "specflow inline": inline / n,
            "specflow local": local / n,
            "dask graph, threads": graph / n,
            f"dask.compute delayed ({n_delayed:,})": delayed / n_delayed,
        }
        print(f"{n:,} no-op tasks, one flow, specflow with checkpoint on")
        for name, cost in per.items():
            print(f"  {name:34s} {cost * 1e6:9.1f} µs/task  {1 / cost:11,.0f} tasks/s")
        best_dask = min(graph / n, delayed / n_delayed)
        print(f"  specflow inline: {inline / n * 1e6:.1f} µs/task (goal <= 20 µs)")
        print(f"  specflow local : {n / local:,.0f} tasks/s (goal >= 20,000 tasks/s)")
        print(f"  ratio best dask / specflow inline: {best_dask / (inline / n):.1f}x (goal >= 5x)")
        print(f"  ratio best dask / specflow local : {best_dask / (local / n):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
