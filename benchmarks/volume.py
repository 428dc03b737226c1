"""Chunked volume processing: specflow against the I/O limit, a hand-written loop, dask and
daisy, all on the same data and the same work.

The data: an N^3 float32 volume (default 512^3) in zarr, stored in 64^3 chunks without
compression. The work: a 5^3 mean filter (zeros outside the volume) computed block by block
over 64^3 blocks with 8 voxels of context, on 2 workers. Every output is checked against the
filter of the whole volume.

    python benchmarks/volume.py            # 512^3, a few minutes
    python benchmarks/volume.py --size 128 # a quick look

Each method runs in a fresh Python process (and so does every tensorstore user): the times
are of the work only, not of interpreter start-up.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

CHUNK = 64
CONTEXT = 8
RADIUS = 2
WORKERS = 2


def mean5(block: Any) -> Any:
    from specflow.processing.operations import mean_filter

    return mean_filter(block, radius=RADIUS)


# --------------------------------------------------------------------------- helpers


def ts_open(path: str, **kw: Any) -> Any:
    import tensorstore as ts

    return ts.open({"driver": "zarr", "kvstore": "file://" + path,
                    "context": {"cache_pool": {"total_bytes_limit": 0}}}, **kw).result()


def ts_create(path: str, n: int) -> None:
    import tensorstore as ts

    ts.open({"driver": "zarr", "kvstore": "file://" + path, "metadata": {
        "shape": [1, n, n, n], "chunks": [1, CHUNK, CHUNK, CHUNK], "dtype": "<f4",
        "compressor": None, "fill_value": 0, "order": "C"},
        "create": True, "delete_existing": True}).result()


def read_padded(store: Any, lo: list[int], hi: list[int], n: int) -> Any:
    """Voxels [lo, hi) of a (1, n, n, n) store, zeros outside."""
    a = [max(0, x) for x in lo]
    b = [min(n, x) for x in hi]
    inner = store[:, a[0]:b[0], a[1]:b[1], a[2]:b[2]].read().result()
    pads = [(0, 0)] + [(x - y, z - w) for x, y, z, w in zip(a, lo, hi, b, strict=True)]
    return np.pad(inner, pads)


def blocks(n: int) -> list[tuple[int, int, int]]:
    r = range(0, n, CHUNK)
    return [(x, y, z) for x in r for y in r for z in r]


# --------------------------------------------------------------------------- the methods


def m_limit(d: str, n: int) -> float:
    src = ts_open(f"{d}/src")
    ts_create(f"{d}/out_limit", n)
    dst = ts_open(f"{d}/out_limit")
    t = time.perf_counter()
    data = src.read().result()
    dst.write(data).result()
    return time.perf_counter() - t


def m_loop(d: str, n: int) -> float:
    src = ts_open(f"{d}/src")
    ts_create(f"{d}/out_loop", n)
    dst = ts_open(f"{d}/out_loop")

    def one(start: tuple[int, int, int]) -> None:
        lo = [s - CONTEXT for s in start]
        hi = [s + CHUNK + CONTEXT for s in start]
        out = mean5(read_padded(src, lo, hi, n))[:, CONTEXT:-CONTEXT, CONTEXT:-CONTEXT,
                                                 CONTEXT:-CONTEXT]
        x, y, z = start
        dst[:, x:x + CHUNK, y:y + CHUNK, z:z + CHUNK].write(out).result()

    t = time.perf_counter()
    with cf.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, blocks(n)))
    return time.perf_counter() - t


def m_dask(d: str, n: int) -> float:
    import dask
    import dask.array as da

    t = time.perf_counter()
    arr = da.from_zarr(f"{d}/src")
    out = arr.map_overlap(mean5, depth={0: 0, 1: CONTEXT, 2: CONTEXT, 3: CONTEXT},
                          boundary=0, dtype=np.float32)
    with dask.config.set(scheduler="threads", num_workers=WORKERS):
        out.to_zarr(f"{d}/out_dask", overwrite=True, compressors=None, zarr_format=2)
    return time.perf_counter() - t


@functools.cache
def _opened(path: str) -> Any:
    return ts_open(path)


def _daisy_block(d: str, n: int, block: Any) -> None:
    src = _opened(f"{d}/src")
    dst = _opened(f"{d}/out_daisy")
    r, w = block.read_roi, block.write_roi
    lo = list(r.offset)
    hi = [o + s for o, s in zip(r.offset, r.shape, strict=True)]
    out = mean5(read_padded(src, lo, hi, n))[:, CONTEXT:-CONTEXT, CONTEXT:-CONTEXT,
                                             CONTEXT:-CONTEXT]
    x, y, z = w.offset
    dst[:, x:x + CHUNK, y:y + CHUNK, z:z + CHUNK].write(out).result()


def _importable() -> Any:
    """This file as the module ``volume`` (daisy's spawned workers import it by name)."""
    import importlib

    return importlib.import_module("volume")


def m_daisy(d: str, n: int) -> float:
    import daisy
    from funlib.geometry import Roi

    ts_create(f"{d}/out_daisy", n)
    task = daisy.Task(
        "mean5",
        total_roi=Roi((-CONTEXT,) * 3, (n + 2 * CONTEXT,) * 3),
        read_roi=Roi((0, 0, 0), (CHUNK + 2 * CONTEXT,) * 3),
        write_roi=Roi((CONTEXT,) * 3, (CHUNK,) * 3),
        process_function=functools.partial(_importable()._daisy_block, d, n),
        read_write_conflict=False, num_workers=WORKERS, fit="valid",
    )
    t = time.perf_counter()
    ok = daisy.run_blockwise([task], progress=False)
    if ok is False:
        raise RuntimeError("daisy reported failed blocks")
    return time.perf_counter() - t


def _mean_fn() -> Any:
    from specflow.processing import mean_filter

    return functools.partial(mean_filter, radius=RADIUS)


def _specflow(d: str, n: int, name: str, **kw: Any) -> float:
    from specflow.processing import build_subchunkable_apply_flow
    from specflow.run import execute
    from specflow.volumes import BBox3D, build_ts_layer

    src = build_ts_layer(f"{d}/src")
    dst = build_ts_layer(f"{d}/{name}", info_reference_path=f"{d}/src")
    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=[1, 1, 1], bbox=BBox3D((0, 0, 0), (n, n, n)),
        op_kwargs={"src": src}, **kw)
    t = time.perf_counter()
    report = execute(flow, backend="local", workers=WORKERS, checkpoint=False)
    if report.status != "done":
        raise RuntimeError(f"specflow run {report.status}: {report.failures[:1]}")
    return time.perf_counter() - t


def m_specflow_crop(d: str, n: int) -> float:
    return _specflow(d, n, "out_sf_crop", fn=_mean_fn(),
                     processing_chunk_sizes=[[CHUNK] * 3],
                     processing_crop_pads=[[CONTEXT] * 3], skip_intermediaries=True)


def m_specflow_blend(d: str, n: int) -> float:
    return _specflow(d, n, "out_sf_blend", fn=_mean_fn(),
                     processing_chunk_sizes=[[CHUNK] * 3],
                     processing_crop_pads=[[CONTEXT // 2] * 3],
                     processing_blend_pads=[[CONTEXT // 2] * 3],
                     processing_blend_modes="linear",
                     level_intermediaries_dirs=[f"{d}/staging"],
                     max_reduction_chunk_size=[2 * CHUNK] * 3)


def m_specflow_copy(d: str, n: int) -> float:
    from specflow.processing import copy

    size = min(n, 2 * CHUNK)
    return _specflow(d, n, "out_sf_copy", fn=copy, processing_chunk_sizes=[[size] * 3],
                     skip_intermediaries=True)


METHODS = {
    "limit": ("(a) tensorstore read all + write all", m_limit, "out_limit"),
    "loop": ("(b) per-block tensorstore loop, 2 threads", m_loop, "out_loop"),
    "dask": ("(c) dask map_overlap + to_zarr, 2 threads", m_dask, "out_dask"),
    "daisy": ("(d) daisy run_blockwise, 2 workers", m_daisy, "out_daisy"),
    "specflow_crop": ("(e) specflow, crop pads, 2 workers", m_specflow_crop, "out_sf_crop"),
    "specflow_blend": ("(f) specflow, blend pads, 2 workers", m_specflow_blend,
                       "out_sf_blend"),
    "specflow_copy": ("(g) specflow aligned copy, 2 workers", m_specflow_copy, "out_sf_copy"),
}


# --------------------------------------------------------------------------- driving


def make_data(d: str, n: int) -> None:
    from specflow.processing.operations import SyntheticVolumeOp
    from specflow.volumes import VolumetricIndex

    ts_create(f"{d}/src", n)
    src = ts_open(f"{d}/src")
    op = SyntheticVolumeOp(seed=1, noise=0.5)
    for x in range(0, n, CHUNK):
        idx = VolumetricIndex.from_voxels((x, 0, 0), (x + CHUNK, n, n), (1, 1, 1))
        src[:, x:x + CHUNK].write(op(idx)).result()


def run_one(method: str, d: str, n: int) -> float:
    """Time ``method`` in a fresh process."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, __file__, "--size", str(n), "--dir", d, "--method", method],
        capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{out.stdout}\n{out.stderr}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def check(d: str, name: str, want: Any, tol: float) -> str:
    if not os.path.exists(f"{d}/{name}"):
        return "missing"
    got = ts_open(f"{d}/{name}").read().result()
    if got.shape != want.shape:
        return f"WRONG shape {got.shape}"
    err = float(np.abs(got - want).max())
    return "ok" if err <= tol else f"WRONG (max error {err:.3g})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512, help="edge of the cubic volume (voxels)")
    p.add_argument("--dir", default=None, help="where the data goes (default: a temp dir)")
    p.add_argument("--method", default=None, help=argparse.SUPPRESS)
    p.add_argument("--only", default=None, help="comma-separated methods to run")
    p.add_argument("--repeat", type=int, default=1, help="runs per method (best is kept)")
    args = p.parse_args()
    n = args.size
    if n % CHUNK:
        p.error(f"--size must be a multiple of {CHUNK}")
    if args.method:  # a child: run one method, print its time
        seconds = METHODS[args.method][1](args.dir, n)
        print(json.dumps({"seconds": seconds}))
        return

    d = args.dir or tempfile.mkdtemp(prefix="specflow-bench-")
    os.makedirs(d, exist_ok=True)
    mb = n ** 3 * 4 / 1e6
    print(f"data: {n}^3 float32 ({mb:,.0f} MB) in {d}, chunks {CHUNK}^3, raw; context "
          f"{CONTEXT}; {WORKERS} workers")
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                    f"import volume; volume.make_data({d!r}, {n})"], check=True)
    src = ts_open(f"{d}/src").read().result()
    want = mean5(src)
    chosen = args.only.split(",") if args.only else list(METHODS)
    times: dict[str, float] = {}
    for key in chosen:
        label, _, out = METHODS[key]
        best = min(run_one(key, d, n) for _ in range(args.repeat))
        times[key] = best
        ref = src if key in ("limit", "specflow_copy") else want
        status = check(d, out, ref, 0.0 if key != "specflow_blend" else 1e-6)
        print(f"{label:44s} {best:7.2f} s  {mb / best:8.1f} MB/s  {status}", flush=True)
        shutil.rmtree(f"{d}/{out}", ignore_errors=True)

    def ratio(a: str, b: str, what: str, goal: float) -> None:
        if a in times and b in times:
            r = times[b] / times[a]
            verdict = "meets" if r >= goal else "MISSES"
            print(f"  {what:40s} {r:5.2f}x  (goal >= {goal:g}: {verdict})")

    print("ratios (throughput of the first over the second):")
    ratio("specflow_crop", "dask", "(e) specflow crop / (c) dask", 1.5)
    ratio("specflow_crop", "daisy", "(e) specflow crop / (d) daisy", 1.5)
    ratio("specflow_crop", "loop", "(e) specflow crop / (b) plain loop", 0.9)
    ratio("specflow_copy", "limit", "(g) specflow copy / (a) limit", 0.7)
    ratio("specflow_blend", "specflow_crop", "(f) blend / (e) crop", 0.0)
    if not args.dir:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
