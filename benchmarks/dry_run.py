"""How fast a dry run counts the chunk tasks of a subchunkable flow, against how fast a real
run creates them.

    python benchmarks/dry_run.py [--chunks N] [--copies M]

Builds one subchunkable apply flow over N top-level chunks (direct writes, so one task per
chunk) on a real zarr layer in a temporary folder, and measures, in this one process, chunk
tasks per second of:

* the dry run (``specflow.execution.dryrun.dry_run``), which creates every task (ids
  included) and counts it, running nothing;
* the real run's executor creating and dispatching the same tasks, on a backend that runs
  the driver-side tasks (``prepare_dst``) for real and completes each chunk task at once
  without computing it: the rate at which a real run can create chunk tasks at all;
* the flow's bare generator, stepped by hand: the cost of creating the tasks alone.

``--copies M`` also dry-runs ``repeat`` of one task M times and prints the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from specflow.backends.base import Backend, Outcome
from specflow.execution.dryrun import dry_run
from specflow.execution.executor import Executor
from specflow.flow.core import Dependency
from specflow.flow.task import Task
from specflow.processing import build_subchunkable_apply_flow, copy
from specflow.volumes import VolumetricIndex, build_ts_layer

CHUNK = 8


class NoWorkBackend(Backend):
    """Runs driver-side tasks, completes chunk tasks at once without their work."""

    name = "no-work"

    def __init__(self) -> None:
        self._done: list[Outcome] = []

    def capacity(self) -> int:
        return 4096

    def submit(self, tasks: Sequence[Task]) -> None:
        for t in tasks:
            value = None if t.operation.endswith("process_chunk") else t()
            self._done.append(Outcome(t.id, True, value=value))

    def wait(self, timeout: float) -> list[Outcome]:
        out, self._done = self._done, []
        return out

    def in_flight(self) -> int:
        return len(self._done)


def make_flow(folder: Path, chunks: int) -> Any:
    nx = max(1, round(chunks ** (1 / 3)))
    ny = nx
    nz = max(1, chunks // (nx * ny))
    shape = [nx * CHUNK, ny * CHUNK, nz * CHUNK]
    src = build_ts_layer(str(folder / "src.zarr"), info_dtype="uint8", info_size=shape,
                         info_chunk_size=[CHUNK] * 3, info_resolution=[1, 1, 1])
    dst = build_ts_layer(str(folder / "dst.zarr"), info_reference_path=str(folder / "src.zarr"))
    src.prepare_for_write([1, 1, 1])
    bbox = VolumetricIndex.from_voxels((0, 0, 0), shape, (1, 1, 1)).bbox
    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=[1, 1, 1], processing_chunk_sizes=[[CHUNK] * 3], fn=copy,
        op_kwargs={"src": src}, bbox=bbox, skip_intermediaries=True)
    return flow, nx * ny * nz


def bare(flow: Any) -> int:
    gen = flow.generator()
    n = 0
    send: Any = None
    last: Any = None
    while True:
        try:
            item = gen.send(send)
        except StopIteration:
            return n
        send = None
        if isinstance(item, Dependency):
            send = last() if item.target is not None else None
        elif isinstance(item, Task):
            if item.operation.endswith("process_chunk"):
                n += 1
            else:
                last = item


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--copies", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flow, n = make_flow(Path(tmp), args.chunks)
        t0 = time.perf_counter()
        result = dry_run(flow)
        t_dry = time.perf_counter() - t0
        assert result.exact and result.counts["subchunkable.process_chunk"] == n, result
        t0 = time.perf_counter()
        report = Executor(NoWorkBackend(), batch_size=4096).run(flow)
        t_exec = time.perf_counter() - t0
        assert report.counts["subchunkable.process_chunk"]["done"] == n
        t0 = time.perf_counter()
        assert bare(flow) == n
        t_bare = time.perf_counter() - t0
    print(f"{n:,} chunk tasks of one subchunkable flow")
    print(f"  dry run            {n / t_dry:12,.0f} tasks/s")
    print(f"  real run (no work) {n / t_exec:12,.0f} tasks/s   dry run / real run = "
          f"{t_exec / t_dry:.2f}x (goal: >= 1)")
    print(f"  bare generator     {n / t_bare:12,.0f} tasks/s   dry run / bare generator = "
          f"{t_bare / t_dry:.2f}x")
    if args.copies:
        from specflow.flow.ops import noop, repeat

        t0 = time.perf_counter()
        res = dry_run(repeat(noop(), args.copies))
        dt = time.perf_counter() - t0
        assert res.exact and res.total == args.copies
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(f"repeat x {args.copies:,}: dry run {dt:.2f} s, peak RSS {rss:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
