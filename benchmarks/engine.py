"""Per-task overhead of specflow's executor, against dask's threaded scheduler.

    python benchmarks/engine.py [--tasks N] [--million]

Runs N no-op tasks from one flow with checkpointing on through the inline and the local
backends, and the same no-ops through dask's threaded scheduler, in this one process: as a
plain task graph (N tasks) and as ``dask.compute`` of delayed calls (a sample, since its
cost per task grows with the count). Prints per-task costs and the ratios against the faster
of the two dask figures.
``--million`` runs 1,000,000 no-op tasks inline and prints the peak RSS.

The dask.distributed row runs the same flow with ``--backend dask`` (an embedded cluster of
two worker processes, as the local backend has two) and compares it with the local backend.
Both are timed the same way, best of ``--repeat`` alternating runs: the marginal cost per
task between a run of N tasks and a run of ``--small`` tasks, so neither pays its start-up
(process pool, cluster) in the figure; the start-up itself is printed beside it.
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


def run_specflow(n: int, backend: str, workdir: Path, tag: str = "") -> float:
    t0 = time.perf_counter()
    report = execute(many(n), backend=backend, run_dir=workdir / f"{backend}-{n}{tag}",
                     workers=2)
    dt = time.perf_counter() - t0
    assert report.status == "done", report.status
    done = report.total("done")
    assert done == n, (done, n)
    return dt


def marginal(backend: str, n: int, small: int, workdir: Path) -> tuple[float, float]:
    """Per-task cost between a run of ``small`` tasks and one of ``n``, and the time of the
    small run (mostly start-up)."""
    t_small = run_specflow(small, backend, workdir, "-m")
    t_big = run_specflow(n, backend, workdir, "-m")
    return (t_big - t_small) / (n - small), t_small


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
    ap.add_argument("--small", type=int, default=200,
                    help="tasks of the short run the dask-vs-local figure is taken against")
    ap.add_argument("--no-distributed", action="store_true",
                    help="skip the dask.distributed row")
    ap.add_argument("--repeat", type=int, default=3,
                    help="repeats of the dask.distributed row (best of each backend kept)")
    ap.add_argument("--only-distributed", action="store_true",
                    help="only the dask.distributed row (against local)")
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
        if args.only_distributed:
            distributed_row(n, min(args.small, n // 2), work, args.repeat)
            return 0
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
        if not args.no_distributed:
            distributed_row(n, min(args.small, n // 2), work, args.repeat)
    return 0


def distributed_row(n: int, small: int, work: Path, repeat: int = 3) -> None:
    """Both backends measured ``repeat`` times, alternating, the best of each kept."""
    runs: dict[str, list[tuple[float, float]]] = {"local": [], "dask": []}
    for r in range(repeat):
        for backend in runs:
            sub = work / f"{backend}-{r}"
            sub.mkdir()
            runs[backend].append(marginal(backend, n, small, sub))
    loc, loc_start = min(runs["local"])
    dsk, dsk_start = min(runs["dask"])
    print(f"--backend dask against --backend local ({n:,} vs {small:,} tasks, "
          f"2 workers each, marginal cost per task, best of {repeat})")
    print(f"  specflow local                     {loc * 1e6:9.1f} µs/task  "
          f"(a {small}-task run: {loc_start:.2f} s)")
    print(f"  specflow dask (embedded cluster)   {dsk * 1e6:9.1f} µs/task  "
          f"(a {small}-task run: {dsk_start:.2f} s)")
    print(f"  ratio dask / local: {dsk / loc:.1f}x per task")


if __name__ == "__main__":
    sys.exit(main())
