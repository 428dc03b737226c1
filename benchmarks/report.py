"""How long ``specflow report`` takes to write, and a browser to load, a 100,000-task run.

    python benchmarks/report.py [--tasks N] [--workers W]

Records N finished volume-chunk tasks (a 3-D grid of chunks, 1% failed, on W workers) in a
real checkpoint, renders the report, and loads it in headless Chromium (Debian's
``chromium``), which reports how long the page took to parse and run, and to finish
loading. The baseline is the goal: a page that loads in under 2 s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from specflow.run.record import Run
from specflow.run.report import write_report
from specflow.run.settings import RunSettings
from specflow.volumes.geometry import VolumetricIndex

GOAL_S = 2.0


def make_run(folder: Path, n: int, workers: int) -> Path:
    run = Run.create(folder / "run", spec={"@type": "bench"}, spec_hash="0", spec_file=None,
                     spec_file_hash=None, overrides=[], imports=[], settings=RunSettings())
    side = round(n ** (1 / 3)) + 1
    t0 = 1_000_000.0
    lane_clock = [t0] * workers
    k = 0
    for z in range(side):
        for y in range(side):
            for x in range(side):
                if k >= n:
                    break
                w = k % workers
                start = lane_clock[w]
                dur = 0.05 + (k % 7) * 0.01
                lane_clock[w] = start + dur
                idx = VolumetricIndex.from_voxels((x * 64, y * 64, z * 32),
                                                  (x * 64 + 64, y * 64 + 64, z * 32 + 32),
                                                  (8, 8, 40))
                args = f"{idx.__specflow_summary__()} in file:///data/out.zarr/"
                failed = k % 100 == 99
                run.checkpoint.record(
                    f"{k:032x}", "subchunkable.process_chunk", "failed" if failed else "done",
                    1, start, start + dur, error="ValueError: bad chunk" if failed else None,
                    traceback="Traceback ...\nValueError: bad chunk" if failed else None,
                    worker=f"node{w // 8}:{1000 + w}", args=args)
                k += 1
    run.checkpoint.set_status("failed")
    run.close()
    return folder / "run"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--keep", help="also copy the report to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rdir = make_run(Path(tmp), args.tasks, args.workers)
        out = Path(tmp) / "report.html"
        t = time.perf_counter()
        with Run.open(rdir, drive=False) as run:
            write_report(run, out)
        render_s = time.perf_counter() - t
        if args.keep:
            shutil.copyfile(out, args.keep)
        print(f"{args.tasks:,} tasks on {args.workers} workers")
        print(f"  report written in {render_s:.2f} s, {out.stat().st_size / 1e6:.1f} MB")
        browser = shutil.which("chromium")
        if browser is None:
            print("  chromium is not installed: no load time")
            return 0
        t = time.perf_counter()
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
             out.as_uri()], capture_output=True, text=True, timeout=300).stdout
        wall = time.perf_counter() - t
        parsed = re.search(r'data-parsed-ms="([\d.]+)"', dom)
        loaded = re.search(r'data-load-ms="([\d.]+)"', dom)
        if parsed is None:
            print("  the page did not run its script")
            return 1
        p = float(parsed.group(1)) / 1000
        print(f"  parsed and scripted in the browser: {p:.2f} s "
              f"({p / GOAL_S:.2f}x the {GOAL_S:g} s goal)")
        if loaded:
            ld = float(loaded.group(1)) / 1000
            print(f"  load event: {ld:.2f} s ({ld / GOAL_S:.2f}x the goal)")
        print(f"  chromium start to DOM dump (includes starting the browser): {wall:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
