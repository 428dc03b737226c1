"""How fast specflow hands out chunk tasks: the driver alone, and end to end.

    python benchmarks/dispatch.py                  # 10^4, 10^5, 10^6 chunks (driver alone)
    python benchmarks/dispatch.py --e2e 10000,100000
    python benchmarks/dispatch.py --sizes 10000 --e2e 10000 --profile driver.prof

The flow: a subchunkable apply flow over a region of N chunks of 16^3 voxels (uint8), with an
operation that computes nothing (zeros, which tensorstore does not store: the write path runs,
the disk stays empty).

* **driver alone**: the real flow, executor and SQLite checkpoint, on a backend that runs the
  flow's driver-side tasks (creating dst) and completes every chunk task at once without
  running it: chunk tasks created, hashed, scheduled and checkpointed per second. Also the dry
  run (``specflow run --dry-run``'s counting), when it can count this flow.
* **end to end**: the same flow on the local backend, 2 workers, checkpoint on.

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


def build_flow(work: Path, n: int) -> Any:
    from specflow.processing import build_subchunkable_apply_flow
    from specflow.volumes import BBox3D, build_ts_layer

    gx, gy, gz = grid_for(n)
    size = [gx * CHUNK, gy * CHUNK, gz * CHUNK]
    dst = build_ts_layer(str(work / "dst"), format="zarr", info_dtype="uint8", info_size=size,
                         info_chunk_size=[CHUNK] * 3, info_resolution=[1, 1, 1],
                         info_overwrite=True)
    return build_subchunkable_apply_flow(
        dst=dst, dst_resolution=[1, 1, 1], bbox=BBox3D((0, 0, 0), tuple(size)),
        processing_chunk_sizes=[[CHUNK] * 3], skip_intermediaries=True, op=_noop_op())


def _noop_op() -> Any:
    from dispatch_ops import NoOp  # a module of its own, so workers can unpickle it

    return NoOp()


class DriverOnly:
    """A backend that runs driver-side tasks inline and completes chunk tasks unrun."""

    def __new__(cls) -> Any:
        from specflow.backends.base import Backend, Outcome, run_task

        class _DriverOnly(Backend):
            name = "driver-only"

            def __init__(self) -> None:
                self.done: list[Any] = []

            def capacity(self) -> int:
                return 4096

            def submit(self, tasks: Sequence[Any]) -> None:
                for t in tasks:
                    if t.operation == "subchunkable.process_chunk":
                        self.done.append(Outcome(t.id, True))
                    else:
                        self.done.append(run_task(t))

            def wait(self, timeout: float) -> list[Any]:
                out, self.done = self.done, []
                return out

            def in_flight(self) -> int:
                return len(self.done)

        return _DriverOnly()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(kind: str, n: int, work: Path, profile: str | None) -> dict[str, Any]:
    from specflow.run import count_tasks, execute

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
        flow = build_flow(work, n)
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
    per_cpu = n / max(r["cpu"], 1e-9)
    # CPU of the driver and its workers per task: what the machine's cores must supply,
    # steadier than wall time on a shared machine
    all_us = 1e6 * r.get("cpu_all", r["cpu"]) / n
    print(f"  {label:34s} {n:>9,}  {r['seconds']:8.2f} s  {rate:10,.0f} tasks/s "
          f"({per_cpu:9,.0f} per driver CPU s, {all_us:5.0f} us CPU/task in all)  "
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
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, Path(args.work), args.profile)))
        return 0
    sizes = [int(x) for x in args.sizes.split(",") if x]
    e2e = [int(x) for x in args.e2e.split(",") if x]
    print(f"chunk tasks of {CHUNK}^3 voxels, no-op kernel, checkpoint on; each row a fresh "
          "process (peak RSS is the driver's)")
    engine: dict[int, float] = {}
    for n in sorted(set(sizes) | set(e2e)):
        r = run_child("engine", min(n, 100_000))
        if "error" not in r:
            engine[n] = min(n, 100_000) / r["seconds"]
        _row("engine no-op tasks, local 2 workers", min(n, 100_000), r, None, None)
    for n in sizes:
        r = run_child("driver", n, args.profile if n == sizes[0] else None)
        _row("driver alone (chunk tasks)", n, r, engine.get(n), 20_000)
        if not args.no_dry:
            _row("dry run (count_tasks)", n, run_child("dry", n), engine.get(n), None)
    for n in e2e:
        r = run_child("local", n)
        _row("end to end, local 2 workers", n, r, engine.get(n), 5_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
