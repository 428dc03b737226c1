"""How fast specflow hands out chunk tasks: the driver alone, and end to end.

    python benchmarks/dispatch.py                  # 10^4, 10^5, 10^6 chunks (driver alone)
    python benchmarks/dispatch.py --e2e 10000,100000
    python benchmarks/dispatch.py --sizes 10000 --e2e 10000 --profile driver.prof

The flow: a subchunkable apply flow over a region of N chunks of 16^3 voxels (uint8), with an
operation that computes and writes nothing: what remains is specflow's own work per chunk.

* **driver alone**: the real flow, executor and SQLite checkpoint, on a backend that runs the
  flow's driver-side tasks (creating dst) and completes every chunk task at once without
  running it: chunk tasks created, hashed, scheduled and checkpointed per second. Also the dry
  run (``specflow run --dry-run``'s counting), when it can count this flow.
* **end to end**: the same flow on the local backend, 2 workers, checkpoint on.
* **writing zeros**: end to end again, the operation returning zeros of the chunk's shape, so
  that every chunk task goes through tensorstore's write path (zarr with fill value 0: each
  chunk's key is deleted, the disk stays empty). Beside it, **tensorstore alone** writes the
  same chunks from 2 fresh processes, grouped in transactions as specflow's workers group
  them: the floor the write path sets on this machine.

Each figure is measured in a fresh process, whose peak RSS is printed; the engine's no-op
figure (benchmarks/engine.py: plain no-op tasks from one flow, checkpoint on) is measured
the same way beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHUNK = 16
WORKERS = 2


def grid_for(n: int) -> tuple[int, int, int]:
    """A grid of about ``n`` chunks, as cubic as whole numbers allow (exact for 10^4..10^6)."""
    best = (n, 1, 1)
    for x in range(1, int(round(n ** (1 / 3))) + 2):
        if n % x:
            continue
        for y in range(x, int((n // x) ** 0.5) + 1):
            if (n // x) % y == 0:
                best = min(best, (n // x // y, y, x), key=max)
    return best


def build_flow(work: Path, n: int, writes: bool = False) -> Any:
    from specflow.processing import build_subchunkable_apply_flow
    from specflow.volumes import BBox3D, build_ts_layer

    gx, gy, gz = grid_for(n)
    size = [gx * CHUNK, gy * CHUNK, gz * CHUNK]
    dst = build_ts_layer(str(work / "dst"), format="zarr", info_dtype="uint8", info_size=size,
                         info_chunk_size=[CHUNK] * 3, info_resolution=[1, 1, 1],
                         info_overwrite=True)
    return build_subchunkable_apply_flow(
        dst=dst, dst_resolution=[1, 1, 1], bbox=BBox3D((0, 0, 0), tuple(size)),
        processing_chunk_sizes=[[CHUNK] * 3], skip_intermediaries=True, op=_noop_op(writes))


def _noop_op(writes: bool) -> Any:
    import dispatch_ops  # a module of its own, so workers can unpickle it

    return dispatch_ops.Zeros() if writes else dispatch_ops.Nothing()


class DriverOnly:
    """A backend that runs driver-side tasks inline and completes chunk tasks unrun (the
    dry run's counting backend, running what is not a chunk task)."""

    def __new__(cls) -> Any:
        from specflow.backends.base import Outcome, run_task
        from specflow.run.api import CountingBackend

        class _DriverOnly(CountingBackend):
            name = "driver-only"

            def submit(self, tasks: Sequence[Any]) -> None:
                for t in tasks:
                    if t.operation == "subchunkable.process_chunk":
                        self._done.append(Outcome(t.id, True))
                    else:
                        self._done.append(run_task(t))

        return _DriverOnly()


def ts_floor(work: Path, n: int, part: int, parts: int) -> None:
    """tensorstore alone: the zero chunks of the benchmark's region in this process's
    contiguous share, written as specflow's workers write them (one transaction per
    ``GROUP_TASKS`` chunks, up to ``GROUPS_IN_FLIGHT`` commits in flight: the constants of
    the workers' pipeline), through the same kind of store (zarr, fill value 0, raw, one
    channel)."""
    import numpy as np
    import tensorstore as ts

    from specflow.backends.base import GROUP_TASKS, GROUPS_IN_FLIGHT

    gx, gy, gz = grid_for(n)
    store = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(work / "dst")},
                     "open": True}).result()
    zeros = np.zeros((1, CHUNK, CHUNK, CHUNK), dtype=np.uint8)
    cells = [(x, y, z) for x in range(gx) for y in range(gy) for z in range(gz)]
    mine = cells[part * len(cells) // parts:(part + 1) * len(cells) // parts]
    commits: list[Any] = []
    for g in range(0, len(mine), GROUP_TASKS):
        txn = ts.Transaction()
        view = store.with_transaction(txn)
        writes = [view[:, x * CHUNK:(x + 1) * CHUNK, y * CHUNK:(y + 1) * CHUNK,
                       z * CHUNK:(z + 1) * CHUNK].write(zeros)
                  for x, y, z in mine[g:g + GROUP_TASKS]]
        for w in writes:
            w.result()
        commits.append(txn.commit_async())
        while len(commits) > GROUPS_IN_FLIGHT:
            commits.pop(0).result()
    for c in commits:
        c.result()


def run_floor(n: int) -> dict[str, Any]:
    """:func:`ts_floor` in :data:`WORKERS` fresh processes at once, timed from their start
    to the end of the last (their imports included, as specflow's figure includes its
    workers' start)."""
    from specflow.backends.tuning import allocator_env
    from specflow.volumes import build_ts_layer

    here = os.path.dirname(os.path.abspath(__file__))
    env = {**allocator_env(), **os.environ}  # it allocates as specflow's workers do
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="specflow-dispatch-") as tmp:
        gx, gy, gz = grid_for(n)
        build_ts_layer(str(Path(tmp) / "dst"), format="zarr", info_dtype="uint8",
                       info_size=[gx * CHUNK, gy * CHUNK, gz * CHUNK],
                       info_chunk_size=[CHUNK] * 3, info_resolution=[1, 1, 1],
                       info_overwrite=True).prepare_for_write([1, 1, 1])
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--child", "floor", "--n", str(n),
                                   "--work", tmp, "--part", str(i)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for i in range(WORKERS)]
        outs = [p.communicate() for p in procs]
        seconds = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            return {"error": (err.strip().splitlines() or ["?"])[-1]}
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    rss = max(json.loads(out.strip().splitlines()[-1])["rss_mb"] for out, _ in outs)
    return {"seconds": seconds, "cpu": cpu, "rss_mb": rss}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(kind: str, n: int, work: Path, profile: str | None) -> dict[str, Any]:
    from specflow.run import count_tasks, execute

    if kind != "dry":
        # every row that keeps a checkpoint loads its database layer (SQLAlchemy, 0.2 s)
        # before the clock starts, as it loads specflow itself: the rows time the run
        import specflow.execution.checkpoint  # noqa: F401

    result: dict[str, Any] = {}
    if kind == "engine":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from engine import many

        t = time.perf_counter()
        report = execute(many(n), backend="local", workers=WORKERS, run_dir=work / "engine")
        result["seconds"] = time.perf_counter() - t
        assert report.total("done") == n, report.counts
    elif kind == "dry":
        flow = build_flow(work, n)
        t = time.perf_counter()
        try:
            counted = count_tasks(flow)
            counts = dict(getattr(counted, "counts", counted))
        except Exception as exc:  # noqa: BLE001 - reported as the row's result
            result["error"] = f"{type(exc).__name__}: {exc}"
        else:
            result["seconds"] = time.perf_counter() - t
            result["chunks"] = counts.get("subchunkable.process_chunk", 0)
            if result["chunks"] != n:
                result["error"] = (f"counted {result['chunks']} chunk tasks of {n} "
                                   f"(counts: {counts})")
    else:
        flow = build_flow(work, n, writes=kind == "zeros")
        if kind == "driver":
            # the stand-in backend runs the flow's few driver-side tasks here, in place of a
            # worker: it loads tensorstore for them before the clock starts, as a worker does
            import tensorstore  # noqa: F401
        backend: Any = DriverOnly() if kind == "driver" else "local"
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        t = time.perf_counter()
        report = execute(flow, backend=backend, workers=WORKERS, run_dir=work / kind)
        result["seconds"] = time.perf_counter() - t
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        if report.status != "done":
            raise SystemExit(f"run {report.status}: {report.failures[:1]}")
        result["chunks"] = report.counts["subchunkable.process_chunk"]["done"]
    result["rss_mb"] = peak_rss_mb()
    use = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = use.ru_utime + use.ru_stime
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, once they have ended
    result["cpu_all"] = result["cpu"] + kids.ru_utime + kids.ru_stime
    return result


def run_child(kind: str, n: int, profile: str | None = None) -> dict[str, Any]:
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="specflow-dispatch-") as tmp:
        cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--work", tmp]
        if profile:
            cmd += ["--profile", profile]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _row(label: str, n: int, r: dict[str, Any], base: float | None, goal: float | None) -> None:
    if "error" in r:
        print(f"  {label:34s} {n:>9,}  failed: {r['error']}")
        return
    rate = n / r["seconds"]
    vs = f"{rate / base:6.2f}x engine" if base else ""
    g = ""
    if goal:
        g = f"  (goal >= {goal:,.0f}/s: {'met' if rate >= goal else 'NOT met'})"
    # tasks per CPU second of the driver (a row without a driver: blank), and the CPU of
    # every process per task: what the machine's cores must supply, steadier than wall
    # time on a shared machine
    driver = f"{n / max(r['cpu'], 1e-9):9,.0f} per driver CPU s" if "cpu_all" in r else \
        f"{'no driver':>26s}"
    all_us = 1e6 * r.get("cpu_all", r["cpu"]) / n
    print(f"  {label:34s} {n:>9,}  {r['seconds']:8.2f} s  {rate:10,.0f} tasks/s "
          f"({driver}, {all_us:5.0f} us CPU/task in all)  "
          f"peak RSS {r['rss_mb']:6.0f} MB  {vs}{g}")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000",
                    help="chunk counts for the driver alone (comma-separated)")
    ap.add_argument("--e2e", default="10000,100000",
                    help="chunk counts end to end on 2 workers (1000000 takes minutes)")
    ap.add_argument("--no-dry", action="store_true", help="skip the dry-run rows")
    ap.add_argument("--profile", default=None, help="write a cProfile of the driver-alone run")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "floor":
        ts_floor(Path(args.work), args.n, args.part, WORKERS)
        print(json.dumps({"rss_mb": peak_rss_mb()}))
        return 0
    if args.child:
        print(json.dumps(child(args.child, args.n, Path(args.work), args.profile)))
        return 0
    sizes = [int(x) for x in args.sizes.split(",") if x]
    e2e = [int(x) for x in args.e2e.split(",") if x]
    print(f"chunk tasks of {CHUNK}^3 voxels, no-op kernel, checkpoint on; each row a fresh "
          "process (peak RSS is the driver's; for tensorstore alone, its processes')")
    # the engine's no-op rate, measured once per size up to 100,000 tasks
    rates: dict[int, float] = {}
    for m in sorted({min(n, 100_000) for n in set(sizes) | set(e2e)}):
        r = run_child("engine", m)
        if "error" not in r:
            rates[m] = m / r["seconds"]
        _row("engine no-op tasks, local 2 workers", m, r, None, None)
    engine = {n: rates[min(n, 100_000)] for n in set(sizes) | set(e2e) if min(n, 100_000) in rates}
    for n in sizes:
        r = run_child("driver", n, args.profile if n == sizes[0] else None)
        _row("driver alone (chunk tasks)", n, r, engine.get(n), 20_000)
        if not args.no_dry:
            _row("dry run (count_tasks)", n, run_child("dry", n), engine.get(n), None)
    for n in e2e:
        r = run_child("local", n)
        _row("end to end, local 2 workers", n, r, engine.get(n), 5_000)
    for n in e2e:
        r = run_child("zeros", n)
        _row("writing zeros, local 2 workers", n, r, engine.get(n), None)
        floor = run_floor(n)
        _row("tensorstore alone, 2 processes", n, floor, None, None)
        if "error" not in r and "error" not in floor:
            print(f"  {'':34s} {n:>9,}  writing zeros: specflow at "
                  f"{floor['seconds'] / r['seconds']:.2f}x tensorstore alone's throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
