"""Settings a process that runs many array tasks gets when it starts as a worker.

**Memory allocation.** glibc serves an allocation above its mmap threshold (128 KiB at
first, raised as such blocks are freed) with fresh pages from the kernel, and gives freed
memory at the top of its heap back to the kernel above its trim threshold. A chunk task
allocates and frees arrays of a few MiB many times a second (a padded read, its output, a
write's staging buffer), and each fresh page costs a page fault and a zeroing (on a
2-core machine, about half of a 512^3 float32 pass's CPU was kernel time). A worker
therefore keeps arrays up to :data:`MMAP_THRESHOLD` in its heap for reuse and
returns free memory only past :data:`TRIM_THRESHOLD`. A user who sets glibc's own
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` keeps what they set.

**Garbage collection.** The objects that exist once a worker has started (modules,
classes, functions) are moved out of the collector's way (:func:`gc.freeze`), and the
young generation is collected less often, as the driver does while it runs.
"""

from __future__ import annotations

import gc
import os
import sys

#: arrays up to this size come from the heap, not from fresh pages (glibc's maximum)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: free memory past this at the top of the heap goes back to the kernel
TRIM_THRESHOLD = 64 * 1024 * 1024

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: what the tuning did in this process: ``allocator`` (applied, or why not) and
#: ``collector`` (the objects frozen out of the collector's way); empty until it runs
STATE: dict[str, object] = {}


def tune_allocator() -> bool:
    """Apply :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` to this process's allocator
    (glibc only; True when applied)."""
    if not sys.platform.startswith("linux"):
        STATE["allocator"] = "not linux"
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        STATE["allocator"] = "set by the environment"
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        STATE["allocator"] = "no mallopt"
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok: bool = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1) and ok
    STATE["allocator"] = "applied" if ok else "refused"
    return ok


def tune_collector() -> None:
    """Freeze what exists now and collect the young generation less often."""
    gc.freeze()  # without collecting first: a full collection would cost a start ~30 ms
    STATE["collector"] = gc.get_freeze_count()
    gc.set_threshold(*relaxed_gc_thresholds())


def relaxed_gc_thresholds() -> tuple[int, int, int]:
    """The collector's thresholds, raised for a process that makes many short-lived objects
    (a worker, the driver's loop): young collections every 50,000 allocations at the least."""
    first, second, third = gc.get_threshold()
    return max(first, 50_000), max(second, 20), max(third, 100)


def allocator_env() -> dict[str, str]:
    """The environment that gives another process the allocator settings of a worker (for
    benchmarks' baselines, which get what specflow's workers get)."""
    return {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
            "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
