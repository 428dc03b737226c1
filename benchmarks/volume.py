"""Chunked volume processing on equal terms: specflow against a hand-written loop, the I/O
limit, dask and daisy, on the same data, the same work, the same cache and the same number
of processes, every one timed the same way.

The data: an N^3 float32 volume (default 512^3) in zarr, stored in 64^3 chunks without
compression. The work: a 5^3 mean filter (zeros outside the volume) computed block by block
with 8 voxels of context. Every output is checked against the filter of the whole volume
(bit-identical; blending to 1e-6).

Equal terms:

* every tensorstore user opens its arrays through one context per process with a
  128 MiB cache pool (specflow's default for its layers);
* two processes do the work: the loop and the read-all + write-all limit run as two
  processes, each over a contiguous half of the blocks; specflow runs the local backend with
  2 workers (plus its driver); daisy runs 2 workers; dask runs 2 threads;
* each method is timed from the start of its processes to the end of the last one (wall
  clock, interpreter start-up and imports included), and the output is verified after;
* specflow's modules are byte-compiled before the first method runs, as numpy's and
  tensorstore's are by pip (an editable install is not; see :func:`compile_specflow`);
* every process allocates memory as specflow's workers do
  (:func:`specflow.backends.tuning.allocator_env`: arrays of a few MiB reused from the
  heap rather than fresh pages each time), the baselines included.

    python benchmarks/volume.py                 # 512^3, a few minutes
    python benchmarks/volume.py --size 128      # a quick look
    python benchmarks/volume.py --only loop,crop64 --repeat 5

The "user" chunking is the one a user picks for speed here: flat tasks of 256^3 with the same
8-voxel crop pads (8 tasks, 4 per worker). Each task reads and filters (272/256)^3 = 1.2x its
voxels, against (80/64)^3 = 1.95x for 64^3 blocks, and specflow's separable filters run in
cache-sized slabs, so a large block costs about what a small one does per voxel. The
two-level rows compute 256^3 tasks as 64^3 sub-chunks (processing_chunk_sizes [[256]^3,
[64]^3]): with the 8-voxel crop pads, and with 4 voxels of crop and 4 of blend pads, blended in
memory inside each task. Blending is judged like for like: the 64^3 blend (top-level chunks,
staged on disk and reduced) against the 64^3 crop, and the in-memory blend against the
two-level crop. The staged blend runs twice: with its staging area beside the data, and on
tmpfs (/dev/shm), the fast local scratch a user of one machine can give it; the staging area
is written once and read back once, so where it lives sets much of the blend's cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

CHUNK = 64
CONTEXT = 8
RADIUS = 2
PROCESSES = 2
CACHE_BYTES = 128 * 1024 * 1024
USER_CHUNK = 256


def mean5(block: Any) -> Any:
    from specflow.processing.operations import mean_filter

    return mean_filter(block, radius=RADIUS)


# --------------------------------------------------------------------------- helpers


@functools.cache
def _context() -> Any:
    import tensorstore as ts

    return ts.Context({"cache_pool": {"total_bytes_limit": CACHE_BYTES}})


def ts_open(path: str, driver: str = "zarr") -> Any:
    """An array of this benchmark, through this process's 128 MiB cache pool."""
    import tensorstore as ts

    spec: dict[str, Any] = {"driver": driver, "kvstore": "file://" + path}
    store = ts.open(spec, context=_context()).result()
    if driver == "neuroglancer_precomputed":  # (x, y, z, c) -> (c, x, y, z)
        store = store[ts.d[3].transpose[0]][ts.d[0].translate_to[0]]
    return store


def _zarr_compressor(codec: str) -> Any:
    return {"raw": None, "zstd": {"id": "zstd", "level": 3},
            "blosc": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
            "gzip": {"id": "zlib", "level": 5}}[codec]


def ts_create(path: str, n: int, codec: str = "raw") -> None:
    import tensorstore as ts

    ts.open({"driver": "zarr", "kvstore": "file://" + path, "metadata": {
        "shape": [1, n, n, n], "chunks": [1, CHUNK, CHUNK, CHUNK], "dtype": "<f4",
        "compressor": _zarr_compressor(codec), "fill_value": 0, "order": "C"},
        "create": True, "delete_existing": True}).result()


def read_padded(store: Any, lo: list[int], hi: list[int], n: int) -> Any:
    """Voxels [lo, hi) of a (1, n, n, n) store, zeros outside."""
    a = [max(0, x) for x in lo]
    b = [min(n, x) for x in hi]
    inner = store[:, a[0]:b[0], a[1]:b[1], a[2]:b[2]].read().result()
    pads = [(0, 0)] + [(x - y, z - w) for x, y, z, w in zip(a, lo, hi, b, strict=True)]
    return np.pad(inner, pads)


def blocks(n: int) -> list[tuple[int, int, int]]:
    """The 64^3 blocks in x, y, z order (z fastest)."""
    r = range(0, n, CHUNK)
    return [(x, y, z) for x in r for y in r for z in r]


def half(items: list[Any], part: int, parts: int) -> list[Any]:
    """The ``part``-th of ``parts`` contiguous pieces of ``items``."""
    k = len(items)
    return items[part * k // parts:(part + 1) * k // parts]


# --------------------------------------------------------------------------- the methods
# Each runs in its own process(es): ``fn(d, n, part, parts, codec)``; ``prepare(d, n,
# codec)`` runs before the clock starts (creating an empty output, as a user would have).


def m_limit(d: str, n: int, part: int, parts: int, codec: str) -> None:
    src = ts_open(f"{d}/src")
    dst = ts_open(f"{d}/out_limit_{codec}")
    lo, hi = part * n // parts, (part + 1) * n // parts
    data = src[:, lo:hi].read().result()
    dst[:, lo:hi].write(data).result()


def m_loop(d: str, n: int, part: int, parts: int, codec: str) -> None:
    src = ts_open(f"{d}/src")
    dst = ts_open(f"{d}/out_loop")
    c = CONTEXT
    for x, y, z in half(blocks(n), part, parts):
        block = read_padded(src, [x - c, y - c, z - c], [x + CHUNK + c, y + CHUNK + c,
                                                          z + CHUNK + c], n)
        out = mean5(block)[:, c:-c, c:-c, c:-c]
        dst[:, x:x + CHUNK, y:y + CHUNK, z:z + CHUNK].write(out).result()


def m_compute(d: str, n: int, part: int, parts: int, codec: str) -> float:
    """The filter of the whole volume in memory, one thread: the time of the kernel alone
    (returned; the read before it is not counted)."""
    data = ts_open(f"{d}/src").read().result()
    t = time.perf_counter()
    mean5(data)
    return time.perf_counter() - t


def m_dask(d: str, n: int, part: int, parts: int, codec: str) -> None:
    import dask
    import dask.array as da

    arr = da.from_zarr(f"{d}/src")
    out = arr.map_overlap(mean5, depth={0: 0, 1: CONTEXT, 2: CONTEXT, 3: CONTEXT},
                          boundary=0, dtype=np.float32)
    with dask.config.set(scheduler="threads", num_workers=PROCESSES):
        out.to_zarr(f"{d}/out_dask", overwrite=True, compressors=None, zarr_format=2)


def _daisy_block(d: str, n: int, block: Any) -> None:
    src = ts_open(f"{d}/src")
    dst = ts_open(f"{d}/out_daisy")
    r, w = block.read_roi, block.write_roi
    lo = list(r.offset)
    hi = [o + s for o, s in zip(r.offset, r.shape, strict=True)]
    c = CONTEXT
    out = mean5(read_padded(src, lo, hi, n))[:, c:-c, c:-c, c:-c]
    x, y, z = w.offset
    dst[:, x:x + CHUNK, y:y + CHUNK, z:z + CHUNK].write(out).result()


def _importable() -> Any:
    """This file as the module ``volume`` (daisy's spawned workers import it by name)."""
    import importlib

    return importlib.import_module("volume")


def m_daisy(d: str, n: int, part: int, parts: int, codec: str) -> None:
    import daisy
    from funlib.geometry import Roi

    task = daisy.Task(
        "mean5",
        total_roi=Roi((-CONTEXT,) * 3, (n + 2 * CONTEXT,) * 3),
        read_roi=Roi((0, 0, 0), (CHUNK + 2 * CONTEXT,) * 3),
        write_roi=Roi((CONTEXT,) * 3, (CHUNK,) * 3),
        process_function=functools.partial(_importable()._daisy_block, d, n),
        read_write_conflict=False, num_workers=PROCESSES, fit="valid",
    )
    if daisy.run_blockwise([task], progress=False) is False:
        raise RuntimeError("daisy reported failed blocks")


def _specflow(d: str, n: int, name: str, codec: str = "raw", fmt: str = "auto",
              **kw: Any) -> None:
    from specflow.processing import build_subchunkable_apply_flow
    from specflow.run import execute
    from specflow.volumes import BBox3D, build_ts_layer

    src = build_ts_layer(f"{d}/src", readonly=True, cache_bytes=CACHE_BYTES)
    dst = build_ts_layer(f"{d}/{name}", format=fmt, info_reference_path=f"{d}/src",
                         info_compression=codec, cache_bytes=CACHE_BYTES)
    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=[1, 1, 1], bbox=BBox3D((0, 0, 0), (n, n, n)),
        op_kwargs={"src": src}, **kw)
    report = execute(flow, backend="local", workers=PROCESSES, checkpoint=False)
    if report.status != "done":
        raise RuntimeError(f"specflow run {report.status}: {report.failures[:1]}")


def _mean_fn() -> Any:
    from specflow.processing import mean_filter

    return functools.partial(mean_filter, radius=RADIUS)


def m_crop64(d: str, n: int, part: int, parts: int, codec: str) -> None:
    _specflow(d, n, "out_crop64", fn=_mean_fn(), processing_chunk_sizes=[[CHUNK] * 3],
              processing_crop_pads=[[CONTEXT] * 3], skip_intermediaries=True)


def m_crop_user(d: str, n: int, part: int, parts: int, codec: str) -> None:
    _specflow(d, n, "out_crop_user", fn=_mean_fn(), processing_chunk_sizes=[[min(n, USER_CHUNK)] * 3],
              processing_crop_pads=[[CONTEXT] * 3], skip_intermediaries=True)


def m_crop_2level(d: str, n: int, part: int, parts: int, codec: str) -> None:
    size = min(n, USER_CHUNK)
    _specflow(d, n, "out_crop_2level", fn=_mean_fn(),
              processing_chunk_sizes=[[size] * 3, [CHUNK] * 3],
              processing_crop_pads=[[0] * 3, [CONTEXT] * 3], skip_intermediaries=True)


#: fast local scratch (tmpfs) for a staging area, where the machine has one
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


def scratch_staging(d: str) -> str:
    assert SCRATCH is not None
    return f"{SCRATCH}/{os.path.basename(os.path.abspath(d))}-staging"


def _blend64(d: str, n: int, out: str, staging: str) -> None:
    _specflow(d, n, out, fn=_mean_fn(), processing_chunk_sizes=[[CHUNK] * 3],
              processing_crop_pads=[[CONTEXT // 2] * 3],
              processing_blend_pads=[[CONTEXT // 2] * 3], processing_blend_modes="linear",
              level_intermediaries_dirs=[staging], max_reduction_chunk_size=[2 * CHUNK] * 3)


def m_blend(d: str, n: int, part: int, parts: int, codec: str) -> None:
    _blend64(d, n, "out_blend", f"{d}/staging")


def m_blend_scratch(d: str, n: int, part: int, parts: int, codec: str) -> None:
    _blend64(d, n, "out_blend_scratch", scratch_staging(d))


def batch_of(n: int) -> list[int]:
    """Top-level chunks per batch: half the volume along x and all of it along y and z (one
    batch per worker)."""
    return [max(1, n // (PROCESSES * CHUNK)), n // CHUNK, n // CHUNK]


def m_crop_batch(d: str, n: int, part: int, parts: int, codec: str) -> None:
    _specflow(d, n, "out_crop_batch", fn=_mean_fn(), processing_chunk_sizes=[[CHUNK] * 3],
              processing_crop_pads=[[CONTEXT] * 3], skip_intermediaries=True,
              processing_batch=batch_of(n))


def m_blend_batch(d: str, n: int, part: int, parts: int, codec: str) -> None:
    _specflow(d, n, "out_blend_batch", fn=_mean_fn(), processing_chunk_sizes=[[CHUNK] * 3],
              processing_crop_pads=[[CONTEXT // 2] * 3],
              processing_blend_pads=[[CONTEXT // 2] * 3], processing_blend_modes="linear",
              level_intermediaries_dirs=[f"{d}/staging"], processing_batch=batch_of(n),
              max_reduction_chunk_size=[CHUNK, 4 * CHUNK, 4 * CHUNK])


def m_blend_user(d: str, n: int, part: int, parts: int, codec: str) -> None:
    size = min(n, USER_CHUNK)
    _specflow(d, n, "out_blend_user", fn=_mean_fn(),
              processing_chunk_sizes=[[size] * 3, [CHUNK] * 3],
              processing_crop_pads=[[0] * 3, [CONTEXT // 2] * 3],
              processing_blend_pads=[[0] * 3, [CONTEXT // 2] * 3], processing_blend_modes="linear",
              level_intermediaries_dirs=[f"{d}/staging", f"{d}/staging"])


def m_copy(d: str, n: int, part: int, parts: int, codec: str) -> None:
    from specflow.processing import copy

    size = min(n, 2 * CHUNK)
    fmt = "precomputed" if codec == "precomputed-gzip" else "auto"
    _specflow(d, n, f"out_copy_{codec}", codec="gzip" if fmt == "precomputed" else codec,
              fmt=fmt, fn=copy, processing_chunk_sizes=[[size] * 3], skip_intermediaries=True)


def p_limit(d: str, n: int, codec: str) -> None:
    if codec == "precomputed-gzip":
        _precomputed_create(f"{d}/out_limit_{codec}", n)
    else:
        ts_create(f"{d}/out_limit_{codec}", n, codec)


def _precomputed_create(path: str, n: int) -> None:
    from specflow.volumes import build_ts_layer

    build_ts_layer(path, format="precomputed", info_reference_path=os.path.dirname(path) + "/src",
                   info_compression="gzip").prepare_for_write([1, 1, 1])


@dataclasses.dataclass
class Method:
    """One row: what runs, in how many processes, what it writes and what that must equal."""

    label: str
    fn: Callable[..., Any]
    out: str
    ref: str = "filter"  # "filter": the whole-volume filter; "src": the input; "": nothing
    procs: int = 1
    prepare: Callable[..., None] | None = None
    tol: float = 0.0
    codec: str = "raw"


def _loop_prepare(d: str, n: int, codec: str) -> None:
    ts_create(f"{d}/out_loop", n)


def _daisy_prepare(d: str, n: int, codec: str) -> None:
    ts_create(f"{d}/out_daisy", n)


METHODS: dict[str, Method] = {
    "limit": Method("tensorstore read all + write all, 2 procs", m_limit, "out_limit_raw",
                    ref="src", procs=PROCESSES, prepare=p_limit),
    "loop": Method("bare loop 64^3, 2 procs x half the blocks", m_loop, "out_loop",
                   procs=PROCESSES, prepare=_loop_prepare),
    "compute": Method("compute only, whole volume, 1 thread", m_compute, "", ref=""),
    "crop64": Method("specflow crop pads, 64^3, local 2 workers", m_crop64, "out_crop64"),
    "crop_user": Method(f"specflow crop pads, {USER_CHUNK}^3 tasks, local 2 workers",
                        m_crop_user, "out_crop_user"),
    "crop_2level": Method(f"specflow crop, {USER_CHUNK}^3 tasks of 64^3, local 2 workers",
                          m_crop_2level, "out_crop_2level"),
    "blend": Method("specflow blend pads, 64^3, local 2 workers", m_blend, "out_blend",
                    tol=1e-6),
    "blend_scratch": Method("  the same, staging area on tmpfs (/dev/shm)", m_blend_scratch,
                            "out_blend_scratch", tol=1e-6),
    "crop_batch": Method("specflow crop pads, 64^3, 2 batches, 2 workers",
                         m_crop_batch, "out_crop_batch"),
    "blend_batch": Method("specflow blend pads, 64^3, 2 batches, seams staged",
                          m_blend_batch, "out_blend_batch", tol=1e-6),
    "blend_user": Method(f"specflow blend, {USER_CHUNK}^3 tasks of 64^3 blended in memory",
                         m_blend_user, "out_blend_user", tol=1e-6),
    "copy": Method("specflow aligned copy 128^3, local 2 workers", m_copy, "out_copy_raw",
                   ref="src"),
    "dask": Method("dask map_overlap + to_zarr, 2 threads", m_dask, "out_dask"),
    "daisy": Method("daisy run_blockwise, 2 workers", m_daisy, "out_daisy",
                    prepare=_daisy_prepare),
}
for _codec in ("zstd", "blosc", "gzip", "precomputed-gzip"):
    METHODS[f"limit_{_codec}"] = Method(
        f"  {_codec}: read all + write all, 2 procs", m_limit, f"out_limit_{_codec}",
        ref="src", procs=PROCESSES, prepare=p_limit, codec=_codec)
    METHODS[f"copy_{_codec}"] = Method(
        f"  {_codec}: specflow aligned copy, 2 workers", m_copy, f"out_copy_{_codec}",
        ref="src", codec=_codec)
del _codec

#: the default selection (codec rows included)
DEFAULT = ["limit", "loop", "compute", "crop64", "crop_batch", "crop_user", "crop_2level",
           "blend", "blend_scratch", "blend_batch", "blend_user", "copy", "dask", "daisy",
           "limit_zstd", "copy_zstd", "limit_blosc", "copy_blosc", "limit_gzip", "copy_gzip",
           "limit_precomputed-gzip", "copy_precomputed-gzip"]


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


#: --compare: another specflow tree (e.g. an older checkout) whose rows run beside these
COMPARE: dict[str, str] = {}


def _child_env(tree: str | None = None) -> dict[str, str]:
    from specflow.backends.tuning import allocator_env

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    # every method's processes allocate as specflow's workers do (equal terms)
    for key, value in allocator_env().items():
        env.setdefault(key, value)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, tree, env.get("PYTHONPATH")) if p)
    return env


def _base(key: str) -> str:
    return key.split("@", 1)[0]


def run_one(key: str, d: str, n: int) -> tuple[float, float | None]:
    """Run ``key`` in fresh processes: (wall seconds from their start to the end of the
    last one, the time a child reported for itself if any)."""
    m = METHODS[_base(key)]
    if m.prepare is not None:
        m.prepare(d, n, m.codec)
    # what earlier methods wrote is on disk before the clock starts: otherwise the kernel's
    # writeback of their gigabytes throttles this method's writes (seen: a 2 s copy taking
    # 14 s right after another method)
    os.sync()
    env = _child_env(COMPARE.get(key))
    t = time.perf_counter()
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--size", str(n), "--dir", d, "--method", _base(key),
         "--part", str(i), "--parts", str(m.procs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(m.procs)]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t
    for p, (out, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"{key} failed:\n{out}\n{err}")
    inner = json.loads(outs[0][0].strip().splitlines()[-1]).get("seconds")
    return wall, inner


def check(d: str, m: Method, src: Any, want: Any) -> str:
    if not m.out:
        return ""
    path = f"{d}/{m.out}"
    if not os.path.exists(path):
        return "missing"
    driver = "neuroglancer_precomputed" if m.codec == "precomputed-gzip" else "zarr"
    got = ts_open(path, driver).read().result()
    ref = src if m.ref == "src" else want
    if got.shape != ref.shape:
        return f"WRONG shape {got.shape}"
    err = float(np.abs(got - ref).max())
    if err > m.tol:
        return f"WRONG (max error {err:.3g})"
    return "bit-identical" if err == 0 else f"ok (max error {err:.1g})"


def _codec_supported(codec: str) -> str | None:
    """Why ``codec`` cannot be written here (None when it can)."""
    if codec != "precomputed-gzip":
        return None
    from specflow.volumes.layers import COMPRESSIONS, _precomputed_encoding

    try:
        _precomputed_encoding("gzip")
    except ValueError as exc:
        return str(exc)
    return None if "gzip" in COMPRESSIONS else "gzip is not a layer compression"


def compile_specflow(tree: str | None = None) -> None:
    """Byte-compile specflow's modules before any method starts, as numpy's and tensorstore's
    are when pip installs them: an editable install is never compiled, and where
    PYTHONDONTWRITEBYTECODE is set every specflow process would compile its modules again
    (about 0.15 s each for a driver and every worker)."""
    import compileall

    root = os.path.join(tree, "specflow") if tree else os.path.dirname(
        importlib.util.find_spec("specflow").origin or "")
    compileall.compile_dir(root, quiet=1)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size", type=int, default=512, help="edge of the cubic volume (voxels)")
    p.add_argument("--dir", default=None, help="where the data goes (default: a temp dir)")
    p.add_argument("--only", default=None, help="comma-separated methods: " + ",".join(METHODS))
    p.add_argument("--repeat", type=int, default=3, help="runs per method (the median is shown)")
    p.add_argument("--compare", default=None, metavar="TREE",
                   help="also run the specflow rows with the specflow found in TREE (e.g. an "
                        "older checkout), in the same rounds; their rows are marked @TREE")
    p.add_argument("--method", default=None, help=argparse.SUPPRESS)
    p.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    n = args.size
    if n % (2 * CHUNK):
        p.error(f"--size must be a multiple of {2 * CHUNK}")
    if args.method:  # a child: run one method (one part of it)
        m = METHODS[args.method]
        seconds = m.fn(args.dir, n, args.part, args.parts, m.codec)
        print(json.dumps({"seconds": seconds}))
        return

    compile_specflow()
    if args.compare:
        compile_specflow(os.path.abspath(args.compare))
    d = args.dir or tempfile.mkdtemp(prefix="specflow-bench-")
    os.makedirs(d, exist_ok=True)
    mb = n ** 3 * 4 / 1e6
    print(f"data: {n}^3 float32 ({mb:,.0f} MB) in {d}, stored chunks {CHUNK}^3 raw; context "
          f"{CONTEXT}; {PROCESSES} processes; {CACHE_BYTES >> 20} MiB tensorstore cache pool "
          f"per process; median of {args.repeat}; wall clock of whole processes")
    subprocess.run([sys.executable, "-c", f"import volume; volume.make_data({d!r}, {n})"],
                   check=True, env=_child_env())
    src = ts_open(f"{d}/src").read().result()
    want = mean5(src)
    chosen = list(args.only.split(",") if args.only else DEFAULT)
    unknown = [k for k in chosen if _base(k) not in METHODS]
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if args.compare:
        tree = os.path.abspath(args.compare)
        for key in list(chosen):
            if key.startswith(("crop", "blend", "copy")):
                COMPARE[f"{key}@before"] = tree
                chosen.insert(chosen.index(key) + 1, f"{key}@before")
        print(f"rows marked @before run the specflow in {tree}")
    runnable = []
    for key in chosen:
        why = _codec_supported(METHODS[_base(key)].codec)
        if _base(key) == "blend_scratch" and SCRATCH is None:
            why = "no tmpfs at /dev/shm"
        if why is not None:
            print(f"{METHODS[_base(key)].label:50s} not supported: {why}")
        else:
            runnable.append(key)
    # rounds over all methods (not all repeats of one method in a row), so that every method
    # samples the same spells of load on a shared machine
    walls: dict[str, list[float]] = {k: [] for k in runnable}
    inners: dict[str, list[float]] = {k: [] for k in runnable}
    status: dict[str, str] = {}
    for r in range(args.repeat):
        for key in runnable:
            m = METHODS[_base(key)]
            wall, inner = run_one(key, d, n)
            walls[key].append(wall)
            if inner is not None:
                inners[key].append(inner)
            got = check(d, m, src, want)
            if not status.get(key, "").startswith("WRONG"):
                status[key] = got
            if m.out:
                shutil.rmtree(f"{d}/{m.out}", ignore_errors=True)
            shutil.rmtree(f"{d}/staging", ignore_errors=True)
            if SCRATCH is not None:
                shutil.rmtree(scratch_staging(d), ignore_errors=True)
            print(f"  round {r + 1}: {key} {inner if inner is not None else wall:.2f} s", flush=True)
    times: dict[str, float] = {}
    bests: dict[str, float] = {}
    print(f"{'method':50s} {'time':>8s} {'MB/s':>8s}  output")
    for key in runnable:
        m = METHODS[_base(key)]
        ts = inners[key] or walls[key]
        t = statistics.median(ts)
        times[key] = t
        bests[key] = min(ts)
        spread = f"[{min(ts):.2f}-{max(ts):.2f}]"
        note = " (kernel time in process)" if inners[key] else ""
        label = m.label + (" @before" if key in COMPARE else "")
        print(f"{label:50s} {t:7.2f}s {mb / t:8.1f}  {status[key]}{note} {spread}", flush=True)

    def ratio(what: str, num: str, den: str, goal: float, higher: bool = True) -> None:
        """The ratio of the medians (judged against the goal), and beside it the ratio of
        the best runs (each side's least disturbed run, on a shared machine)."""
        if num not in times or den not in times:
            return
        r = times[den] / times[num] if higher else times[num] / times[den]
        b = bests[den] / bests[num] if higher else bests[num] / bests[den]
        if goal:
            ok = r >= goal if higher else r <= goal
            sign = ">=" if higher else "<="
            verdict = f"goal {sign} {goal:g}: {'met' if ok else 'NOT met'}"
        else:
            verdict = "no goal"
        print(f"  {what:58s} {r:5.2f}x  (best runs {b:5.2f}x; {verdict})")

    print("ratios:")
    ratio("crop 64^3 vs bare loop (throughput)", "crop64", "loop", 1.0)
    ratio("crop 64^3 in batches vs bare loop (throughput)", "crop_batch", "loop", 0.0)
    ratio(f"crop {USER_CHUNK}^3 tasks vs bare loop (throughput)", "crop_user", "loop", 1.2)
    ratio(f"crop {USER_CHUNK}^3 tasks of 64^3 vs bare loop (throughput)", "crop_2level", "loop",
          0.0)
    ratio("blend time / crop time (64^3)", "blend", "crop64", 1.3, higher=False)
    ratio("  the same, staging area on tmpfs", "blend_scratch", "crop64", 1.3, higher=False)
    ratio("blend / crop time, 64^3 in batches (seams staged)", "blend_batch", "crop64", 1.3,
          higher=False)
    ratio("  the same blend / the batched crop", "blend_batch", "crop_batch", 0.0, higher=False)
    ratio(f"blend / crop time, {USER_CHUNK}^3 tasks of 64^3 (in memory)", "blend_user",
          "crop_2level", 1.3, higher=False)
    ratio(f"  the same blend / flat {USER_CHUNK}^3 crop time", "blend_user", "crop_user", 0.0,
          higher=False)
    ratio("aligned copy vs read all + write all (throughput)", "copy", "limit", 0.9)
    for codec in ("zstd", "blosc", "gzip", "precomputed-gzip"):
        ratio(f"{codec} copy vs {codec} read all + write all", f"copy_{codec}",
              f"limit_{codec}", 0.9)
    if COMPARE:
        ratio("@before: crop 64^3 vs bare loop", "crop64@before", "loop", 1.0)
        ratio(f"@before: crop {USER_CHUNK}^3 tasks vs bare loop", "crop_user@before", "loop", 1.2)
        ratio("@before: blend time / crop time", "blend@before", "crop64@before", 1.3,
              higher=False)
        ratio("@before: aligned copy vs read all + write all", "copy@before", "limit", 0.9)
        for codec in ("zstd", "blosc", "gzip"):
            ratio(f"@before: {codec} copy vs {codec} read all + write all",
                  f"copy_{codec}@before", f"limit_{codec}", 0.9)
    ratio("crop 64^3 vs dask (throughput)", "crop64", "dask", 0.0)
    ratio("crop 64^3 vs daisy (throughput)", "crop64", "daisy", 0.0)
    ratio("bare loop vs compute only (throughput)", "loop", "compute", 0.0)
    if not args.dir:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
