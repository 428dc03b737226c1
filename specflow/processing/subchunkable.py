"""The subchunkable apply flow: apply an operation to a region chunk by chunk, with context
(crop) pads, blended overlaps and hierarchical sub-chunks.

The parameters and every rule about which of them go together are zetta_utils' (see
:mod:`specflow.processing.subchunkable_rules`), so a spec written for zetta means the same
here. Levels are given top first. Each chunk of level ``i`` computes its chunk grown by its
blend and crop pads, drops the crop pad and contributes the rest (the chunk plus its blend
pad). Below the top, the grown box of a level-``i`` chunk is tiled exactly by the chunks of
level ``i + 1``, and the lowest level calls the operation. Top-level chunks may be spaced by
``processing_gap`` voxels that are not processed.

Only top-level chunks become tasks. Lower levels run inside the task, blended in memory,
optionally on a thread pool (``subchunk_threads``).

Top-level chunks never race on a stored chunk:

* **direct**: without a top-level blend pad, and with chunks aligned to the stored chunks of
  ``dst``, each task writes its own chunk of ``dst`` (``dst: null`` writes nothing);
* **staged**: otherwise each task writes its output (chunk plus blend pad) into its own slot
  of a staging array in ``level_intermediaries_dirs[0]`` (one slot per chunk, so no stored
  chunk is shared), and reduction tasks, aligned with the stored chunks of ``dst``, combine
  the slots that overlap them (weighted sum, max, or copy) and write ``dst``. ``defer``
  stops after staging and leaves the reduction to :func:`build_reduce_staged_flow`.

Every task is idempotent: it computes the same output from the same inputs and overwrites
its own chunk or slot, so a re-run after a crash writes identical bytes.
"""

from __future__ import annotations

import concurrent.futures as cf
import difflib
import inspect
import itertools
import json
import math
import shutil
import sys
from collections.abc import Generator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from specflow.builder.registry import register
from specflow.flow.completion import defer, shared
from specflow.flow.core import Dependency, Flow, TaskableOperation
from specflow.flow.dry import InnerLevel, describe_flow, describe_levels, dry_state
from specflow.flow.ids import task_digest_of
from specflow.flow.task import Task, with_requirements
from specflow.processing.blending import Combiner, neighbours
from specflow.processing.operations import FnOperation, as_operation, crop_pad
from specflow.processing.order import local_order
from specflow.processing.subchunkable_rules import (
    UNKNOWN,
    DstInfo,
    Geometry,
    Level,
    SubchunkableConfigError,
    Unknown,
    chunk_count,
    parameter_problems,
    per_level,
    plan,
    raise_problems,
    region_bbox,
)
from specflow.resources import is_bounded, semaphore
from specflow.volumes.geometry import BBox3D, IVec3, VolumetricIndex, ivec3, vec3
from specflow.volumes.layers import (
    PREFETCH_KEPT,
    ScaleInfo,
    TSLayer,
    cast_for_layer,
    forget_layer,
    kv_read,
    kv_write,
    kv_write_async,
    kvstore_url,
)

if TYPE_CHECKING:
    import tensorstore as ts
else:
    from specflow.volumes.lazy import tensorstore as ts

Array = npt.NDArray[Any]


def _add(a: Sequence[int], b: Sequence[int]) -> IVec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _largest_divisor_at_most(n: int, limit: int) -> int:
    for d in range(min(n, limit), 0, -1):
        if n % d == 0:
            return d
    return 1


# --------------------------------------------------------------------------- operations


class _SinkBackend:
    def __init__(self, name: str) -> None:
        self.name = name


class ChunkSink:
    """The destination a zetta-style operation (``op(idx, dst, **kwargs)`` that writes
    ``dst[idx] = data`` itself) is given: it keeps what is written over one index.
    ``name`` (also ``backend.name``) is the layer the data is bound for: a name holding
    ``_temp_`` when the flow stages intermediaries, the path of ``dst`` when it does not."""

    def __init__(self, idx: VolumetricIndex, name: str) -> None:
        self.idx = idx
        self.name = name
        self.backend = _SinkBackend(name)
        self.data: Array | None = None

    def __setitem__(self, idx: VolumetricIndex, data: Any) -> None:
        arr = np.asarray(data)
        if arr.ndim == 3:
            arr = arr[None]
        if tuple(arr.shape[1:]) != tuple(idx.shape):
            raise ValueError(f"cannot write an array of shape {list(arr.shape)} at an index of "
                             f"shape {list(idx.shape)}")
        if self.data is None:
            self.data = np.zeros((arr.shape[0], *self.idx.shape), dtype=arr.dtype)
        inter = idx.intersection(self.idx)
        if not inter.is_empty():
            self.data[(slice(None), *inter.slices_in(self.idx))] = \
                arr[(slice(None), *inter.slices_in(idx))]

    def __getitem__(self, idx: VolumetricIndex) -> Array:
        if self.data is None:
            raise ValueError(f"nothing was written to {self.name} yet")
        inter = idx.intersection(self.idx)
        out = np.zeros((self.data.shape[0], *idx.shape), dtype=self.data.dtype)
        out[(slice(None), *inter.slices_in(idx))] = \
            self.data[(slice(None), *inter.slices_in(self.idx))]
        return out

    def __repr__(self) -> str:
        return f"ChunkSink({self.name})"


def is_protocol_op(op: Any) -> bool:
    """Whether ``op`` follows zetta's operation protocol: called as ``op(idx, dst, **kw)``,
    it writes into ``dst`` itself (and has ``with_added_crop_pad``)."""
    if not callable(op) or not hasattr(op, "with_added_crop_pad"):
        return False
    try:
        params = list(inspect.signature(op).parameters)
    except (TypeError, ValueError):
        return False
    return len(params) >= 2 and params[1] == "dst"


class ProtocolOperation:
    """Runs a zetta-style operation for the flow: asked for an index grown by the bottom
    crop pad, it hands the operation (with that crop added) the inner index and a
    :class:`ChunkSink`, and returns what the operation wrote (None when it wrote nothing)."""

    def __init__(self, op: Any, crop: IVec3, sink_name: str) -> None:
        self.op = op
        self.crop = crop
        self.sink_name = sink_name

    def __call__(self, idx: VolumetricIndex, **kwargs: Any) -> Array | None:
        inner = self.op.with_added_crop_pad(self.crop) if any(self.crop) else self.op
        target = idx.cropped(self.crop)
        sink = ChunkSink(target, f"{self.sink_name}{target.start}-{target.stop}")
        inner(target, sink, **kwargs)
        if sink.data is None:
            return None
        if not any(self.crop):
            return sink.data
        pad = [(0, 0)] + [(c, c) for c in self.crop]
        out: Array = np.pad(sink.data, pad)
        return out

    def __specflow_id__(self) -> Any:
        return {"op": self.op, "crop": list(self.crop), "sink": self.sink_name}




class WriteProcs:
    """An operation whose output gets ``dst``'s write processors as it is produced, as zetta
    applies them when each bottom-level chunk is written (before blending and cropping);
    the flow then writes ``dst`` without them, so they apply once."""

    def __init__(self, op: Any, procs: Sequence[Any]) -> None:
        self.op = op
        self.procs = tuple(procs)
        self.semaphores = getattr(op, "semaphores", None)
        self.fn_semaphores = getattr(op, "fn_semaphores", None)

    def __call__(self, idx: VolumetricIndex, **kwargs: Any) -> Array | None:
        out = self.op(idx, **kwargs)
        if out is None:
            return None
        for proc in self.procs:
            out = proc(out)
        return np.asarray(out)

    def __specflow_id__(self) -> Any:
        return {"op": self.op, "write_procs": list(self.procs)}


def _holding(op: Any) -> ExitStack:
    """The semaphores held while ``op`` runs: its own (``fn_semaphores``) or ``cpu``."""
    names = getattr(op, "semaphores", None)
    if names is None and getattr(op, "fn_semaphores", None):
        names = ()  # the operation holds its own while its function runs
    stack = ExitStack()
    for name in ("cpu",) if names is None else names:
        stack.enter_context(semaphore(name))
    return stack


def _call(op: Any, idx: VolumetricIndex, op_kwargs: dict[str, Any]) -> Array | None:
    with _holding(op):
        out = op(idx, **op_kwargs)
    return None if out is None else np.asarray(out)


def _apply(
    op: Any, op_kwargs: dict[str, Any], levels: Sequence[Level], i: int,
    target: VolumetricIndex, threads: int,
) -> Array | None:
    """The output of levels ``i..`` over ``target`` (tiled by level ``i``'s chunks); None
    when the operation wrote nothing."""
    lvl = levels[i]
    chunks = target.split(lvl.chunk, mode="exact")
    combiner = Combiner(target, lvl.blend, lvl.mode)

    def one(chunk: VolumetricIndex) -> Array | None:
        compute = chunk.padded(_add(lvl.blend, lvl.crop))
        if i == len(levels) - 1:
            data = _call(op, compute, op_kwargs)
        else:
            data = _apply(op, op_kwargs, levels, i + 1, compute, 1)
        return None if data is None else crop_pad(data, lvl.crop)

    def add(chunk: VolumetricIndex, data: Array | None) -> None:
        if data is None:
            return
        low, high = neighbours(chunk, target)
        combiner.add(chunk.padded(lvl.blend), data, low, high)

    if threads > 1 and len(chunks) > 1:
        with cf.ThreadPoolExecutor(threads) as pool:
            for chunk, data in zip(chunks, pool.map(one, chunks), strict=True):
                add(chunk, data)
    else:
        for chunk in chunks:
            add(chunk, one(chunk))
    return None if combiner.out is None else combiner.result()


def compute_chunk(
    op: Any, op_kwargs: dict[str, Any], levels: Sequence[Level], chunk: VolumetricIndex,
    threads: int = 1,
) -> Array | None:
    """The output of one top-level chunk: it covers the chunk grown by the top blend pad
    (None when the operation wrote nothing)."""
    top = levels[0]
    compute = chunk.padded(_add(top.blend, top.crop))
    if len(levels) == 1:
        data = _call(op, compute, op_kwargs)
    else:
        data = _apply(op, op_kwargs, levels, 1, compute, threads)
    return None if data is None else crop_pad(data, top.crop)


def _slot(chunk: VolumetricIndex, region: VolumetricIndex, top: Level,
          stride: Sequence[int]) -> VolumetricIndex:
    """Where the output of top-level ``chunk`` lives in the staging array."""
    size = top.output
    g = [(c - r) // s for c, r, s in zip(chunk.start, region.start, stride, strict=True)]
    start = [k * p for k, p in zip(g, size, strict=True)]
    return chunk._new(start, _add(start, size))


def _process_chunk(
    op: Any, op_kwargs: dict[str, Any], levels: tuple[Level, ...], chunk: VolumetricIndex,
    region: VolumetricIndex, dst: TSLayer | None = None, staging: TSLayer | None = None,
    subchunk_threads: int = 1, stride: Sequence[int] | None = None,
) -> None:
    """One top-level chunk: compute it and write it to ``dst`` (direct) or to its staging
    slot; with neither (``dst: null``) the operation runs for its own effects. A chunk whose
    operation gives no output is marked so in the staging area (its slot stays empty)."""
    data = compute_chunk(op, op_kwargs, levels, chunk, subchunk_threads)
    if data is None and staging is not None:
        _mark_empty(staging, _slot(chunk, region, levels[0], stride or levels[0].chunk))
    if data is None or (dst is None and staging is None):
        return
    with semaphore("write"):
        if staging is not None:
            write_out(staging, _slot(chunk, region, levels[0], stride or levels[0].chunk), data)
        else:
            assert dst is not None
            write_out(dst, chunk, data)


def _commit(txn: ts.Transaction) -> Any:
    return txn.commit_async()


def write_out(layer: TSLayer, idx: VolumetricIndex, data: Array) -> None:
    """Write a task's output: staged in the storage transaction of the runner's write group
    (committed once for many tasks), else left in flight for the runner to wait for, else
    waited for here. A bounded write semaphore bounds writes in flight, so under one the
    write is durable before this returns (the caller holds the semaphore)."""
    if is_bounded("write"):
        layer.write_async(idx, data).result()
        return
    txn = shared("tensorstore", ts.Transaction, _commit)
    written = layer.write_async(idx, data, transaction=txn)
    if not defer(written, data.nbytes):
        written.result()


def _chunk_summary(chunk: VolumetricIndex, dst: TSLayer | None = None,
                   staging: TSLayer | None = None, **_: Any) -> str:
    layer = dst if dst is not None else staging
    return f"{chunk.__specflow_summary__()} in {layer.path if layer else '?'}"


#: most reads a chunk task starts ahead (one per bottom-level sub-chunk and input layer)
PREFETCH_READS = 16


def _compute_indices(levels: Sequence[Level], i: int,
                     target: VolumetricIndex) -> Generator[VolumetricIndex, None, None]:
    """The indices the operation is called on below level ``i - 1`` over ``target``, in the
    order :func:`_apply` calls it."""
    lvl = levels[i]
    for chunk in target.split(lvl.chunk, mode="exact"):
        compute = chunk.padded(_add(lvl.blend, lvl.crop))
        if i == len(levels) - 1:
            yield compute
        else:
            yield from _compute_indices(levels, i + 1, compute)


def _prefetch_chunk(op: Any, op_kwargs: dict[str, Any], levels: tuple[Level, ...],
                    chunk: VolumetricIndex, **_: Any) -> None:
    """Start reading the input layers of a chunk task whose operation reads them as they are
    (a function of arrays) over the index it is called on."""
    inner = op.op if isinstance(op, WriteProcs) else op
    if type(inner) is not FnOperation or is_bounded("read"):
        return
    layers = [v for v in op_kwargs.values() if isinstance(v, TSLayer)]
    if not layers:
        return
    top = levels[0]
    compute = chunk.padded(_add(top.blend, top.crop))
    indices = [compute] if len(levels) == 1 else \
        list(itertools.islice(_compute_indices(levels, 1, compute), PREFETCH_READS + 1))
    if len(indices) * len(layers) > PREFETCH_READS:
        return
    for idx in indices:
        for layer in layers:
            layer.prefetch(idx)


process_chunk = TaskableOperation(_process_chunk, operation_name="subchunkable.process_chunk",
                                  summary=_chunk_summary, outputs=("dst",),
                                  prefetch=_prefetch_chunk)


def _chunk_grid(region: VolumetricIndex, chunk: Sequence[int],
               step: Sequence[int]) -> list[int]:
    """How many top-level chunks the region holds along each axis."""
    return [(s + q - c) // q for s, q, c in zip(region.shape, step, chunk, strict=True)]


def _staged_pieces(
    region: VolumetricIndex, top: Level, part: VolumetricIndex, stride: Sequence[int] | None,
) -> Generator[tuple[VolumetricIndex, VolumetricIndex, VolumetricIndex, VolumetricIndex],
               None, None]:
    """The staged outputs overlapping ``part``: per top-level chunk, the chunk, the box its
    output spans, the part of that box inside ``part``, and where that part is staged."""
    step = stride or top.chunk
    grid = _chunk_grid(region, top.chunk, step)
    lo = [max(0, (p - b - r - c) // q) for p, b, r, c, q in
          zip(part.start, top.blend, region.start, top.chunk, step, strict=True)]
    hi = [min(g, (p + b - r) // q + 1) for p, b, r, q, g in
          zip(part.stop, top.blend, region.start, step, grid, strict=True)]
    for gx, gy, gz in itertools.product(*(range(a, b) for a, b in zip(lo, hi, strict=True))):
        start = [r + k * q for r, k, q in zip(region.start, (gx, gy, gz), step, strict=True)]
        chunk = region._new(start, _add(start, top.chunk))
        out_idx = chunk.padded(top.blend)
        inter = out_idx.intersection(part)
        if inter.is_empty():
            continue
        slot = _slot(chunk, region, top, step)
        offset = [s - o for s, o in zip(slot.start, out_idx.start, strict=True)]
        yield chunk, out_idx, inter, inter.translated(offset)


class StagingLostError(RuntimeError):
    """A staged output a reduction needs is missing, and it cannot be computed again here."""


@dataclass(frozen=True)
class Restage:
    """What a reduction task needs to compute a top-level chunk again when the staging area
    lost its output (deleted, or on storage that did not survive a restart) after the chunk
    was recorded done."""

    op: Any
    op_kwargs: dict[str, Any]
    levels: tuple[Level, ...]
    subchunk_threads: int = 1


def _empty_key(slot: VolumetricIndex) -> str:
    return "empty/" + ".".join(str(int(v)) for v in slot.start)


def _mark_empty(staging: TSLayer, slot: VolumetricIndex) -> None:
    kv_write(kvstore_url(staging.path), _empty_key(slot), b"")


def _read_or_none(started: Any) -> Array | None:
    """The array a staged read gives, or ``None`` when its slot is not stored."""
    try:
        data: Array = started.result()
    except ValueError as exc:
        if str(exc).startswith("NOT_FOUND"):
            return None
        raise
    return data


def _lost_piece(
    staging: TSLayer, region: VolumetricIndex, top: Level, chunk: VolumetricIndex,
    inter: VolumetricIndex, at: VolumetricIndex, step: Sequence[int], restage: Restage | None,
    batched: bool = False,
) -> Array:
    """The staged data at ``at`` for a slot that is not stored: zeros for a chunk without
    output (as the fill value always gave), else the chunk computed again and staged anew
    (``batched``: a staged piece, which is taken from the chunk computed again)."""
    slot = _slot(chunk, region, top, step)
    info = staging.scales()[0]

    def empty() -> Array:
        return np.zeros((info.num_channels, *inter.shape), dtype=info.dtype)

    if kv_read(kvstore_url(staging.path), _empty_key(slot)) is not None:
        return empty()
    where = f"top-level chunk {list(chunk.start)}..{list(chunk.stop)}"
    if restage is None:
        raise StagingLostError(
            f"the staged output of {where} is missing from {staging.path}: the staging area "
            "lost it after the chunk was recorded done; run the flow that staged it again "
            "(with a new run directory) to write it")
    data = compute_chunk(restage.op, restage.op_kwargs, restage.levels, chunk,
                         restage.subchunk_threads)
    print(f"specflow: the staged output of {where} was missing from {staging.path}; "
          "computed it again", file=sys.stderr)
    if data is None:
        _mark_empty(staging, slot)
        return empty()
    if batched:
        out_idx = chunk.padded(top.blend)
        return _as_staged(data, out_idx, info)[(slice(None), *inter.slices_in(out_idx))]
    staging.write_async(slot, data).result()
    return staging.read(at)  # what an uninterrupted run reads back


def _reduce_chunk(
    staging: TSLayer, dst: TSLayer, region: VolumetricIndex, top: Level, mode: str,
    part: VolumetricIndex, stride: Sequence[int] | None = None, restage: Restage | None = None,
    seams: list[Any] | None = None,
) -> None:
    """Combine the staged outputs overlapping ``part`` (a piece of the region aligned with
    the stored chunks of ``dst``) and write ``part`` of ``dst`` (nothing when no output
    overlaps it, as in a processing gap). A staged output found missing is computed again
    from ``restage`` (else an error), and combined in its place: the same sum, in the same
    order, as with nothing lost. ``seams``: the outputs were staged as pieces of the seams
    between batches of chunks (:func:`_process_batch`; the part grid and the batch size)."""
    combiner = Combiner(part, top.blend, mode)
    with semaphore("read"):
        if seams is not None:
            grid, info = _Seams(region, top, seams), staging.scales()[0]
            pieces = [(chunk, out_idx, inter, at,
                       _read_piece(staging, grid, chunk, top, part, inter, info))
                      for chunk, out_idx, inter, at in _staged_pieces(region, top, part, stride)]
        else:
            pending = [(chunk, out_idx, inter, at, staging.read_async(at)) for chunk, out_idx,
                       inter, at in _staged_pieces(region, top, part, stride)]
            pieces = [(chunk, out_idx, inter, at, _read_or_none(started))
                      for chunk, out_idx, inter, at, started in pending]
    for chunk, out_idx, inter, at, data in pieces:
        if data is None:
            data = _lost_piece(staging, region, top, chunk, inter, at, stride or top.chunk,
                               restage, seams is not None)
        low, high = neighbours(chunk, region)
        combiner.add(out_idx, data, low, high, data_idx=inter)
    if combiner.out is None:
        return
    with semaphore("write"):
        write_out(dst, part, combiner.result())


def _prefetch_part(staging: TSLayer, region: VolumetricIndex, top: Level,
                   part: VolumetricIndex, stride: Sequence[int] | None = None,
                   seams: list[Any] | None = None, **_: Any) -> None:
    """Start reading the staged outputs a reduction task combines (staged in slots)."""
    if is_bounded("read") or seams is not None:
        return
    pieces = list(itertools.islice(_staged_pieces(region, top, part, stride),
                                   PREFETCH_KEPT + 1))
    if len(pieces) > PREFETCH_KEPT:
        return
    for _c, _o, _i, at in pieces:
        staging.prefetch(at)


def _part_summary(part: VolumetricIndex, dst: TSLayer, **_: Any) -> str:
    return f"{part.__specflow_summary__()} in {dst.path}"


#: reduction tasks go ahead of chunk tasks waiting to run: each one that can run ends a
#: part of the output (and the staged outputs it needs are fresh in the caches)
reduce_chunk = TaskableOperation(_reduce_chunk, operation_name="subchunkable.reduce_chunk",
                                 summary=_part_summary, outputs=("dst",),
                                 prefetch=_prefetch_part, priority=1)


# --------------------------------------------------------------------------- batches of chunks


def _as_staged(data: Array, out_idx: VolumetricIndex, info: ScaleInfo) -> Array:
    """A chunk's output as the staging area holds it: (C, X, Y, Z) of the staging dtype (the
    values a slot written and read back gives)."""
    arr = np.asarray(data)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.shape != (info.num_channels, *out_idx.shape):
        raise ValueError(
            f"the operation gave an array of shape {list(arr.shape)} for the output "
            f"{list(out_idx.start)}..{list(out_idx.stop)}, which needs "
            f"{[info.num_channels, *out_idx.shape]}")
    return cast_for_layer(arr, str(info.dtype))


def _pieces_key(chunk: VolumetricIndex) -> str:
    return "pieces/" + ".".join(str(int(v)) for v in chunk.start)


class _PartGrid:
    """The reduction parts of a region (those of :func:`reduction_parts`) as a grid, and
    which top-level chunks have outputs overlapping each."""

    def __init__(self, region: VolumetricIndex, top: Level, stride: Sequence[int],
                 stored: Sequence[int], offset: Sequence[int],
                 max_size: Sequence[int] | None) -> None:
        self.size, self.origin = _part_grid(region, stored, offset, max_size, top.chunk)
        self.region = region
        self.start, self.stop = tuple(region.start), tuple(region.stop)
        self.chunk, self.blend, self.stride = tuple(top.chunk), tuple(top.blend), tuple(stride)
        self.grid = _chunk_grid(region, self.chunk, self.stride)
        self.nparts = [-(-(e - o) // z) for e, o, z in
                       zip(self.stop, self.origin, self.size, strict=True)]
        self._contributors: dict[tuple[int, int], tuple[int, int]] = {}

    def _bounds(self, axis: int, k: int) -> tuple[int, int]:
        lo = self.origin[axis] + k * self.size[axis]
        return max(lo, self.start[axis]), min(lo + self.size[axis], self.stop[axis])

    def contributors(self, axis: int, k: int) -> tuple[int, int]:
        """The chunks along ``axis`` (first, stop) whose outputs overlap part ``k`` on it."""
        known = self._contributors.get((axis, k))
        if known is None:
            known = self._contributors[(axis, k)] = self._find_contributors(axis, k)
        return known

    def _find_contributors(self, axis: int, k: int) -> tuple[int, int]:
        lo, hi = self._bounds(axis, k)
        r, q, c, b = self.start[axis], self.stride[axis], self.chunk[axis], self.blend[axis]
        first = max(0, (lo - r - c - b) // q + 1)
        stop = min(self.grid[axis], -(-(hi - r + b) // q))
        return first, max(first, stop)

    def _chunks_along(self, axis: int, k: int) -> int:
        first, stop = self.contributors(axis, k)
        return stop - first

    def _part(self, k: Sequence[int]) -> VolumetricIndex:
        b = [self._bounds(a, i) for a, i in enumerate(k)]
        return self.region._new([x for x, _ in b], [y for _, y in b])

    def parts_over(self, box: VolumetricIndex) -> Generator[tuple[int, int, int], None, None]:
        """The parts overlapping ``box``, in raster order (x outermost)."""
        ranges = []
        for a in range(3):
            lo, hi = max(box.start[a], self.start[a]), min(box.stop[a], self.stop[a])
            if lo >= hi:
                return
            o, z = self.origin[a], self.size[a]
            ranges.append(range((lo - o) // z, (hi - 1 - o) // z + 1))
        yield from itertools.product(*ranges)

    def seam(self, k: Sequence[int], per_batch: Sequence[int]) -> bool:
        """Whether part ``k`` gets outputs from more than one batch of ``per_batch`` chunks
        (batches tile the chunk grid from its first chunk)."""
        for a in range(3):
            first, stop = self.contributors(a, k[a])
            if first // per_batch[a] != (stop - 1) // per_batch[a]:
                return True
        return False

    def count(self, k: Sequence[int]) -> int:
        """How many chunks contribute to part ``k``."""
        return math.prod(self._chunks_along(a, k[a]) for a in range(3))


class _Seams(_PartGrid):
    """The parts on the seams between batches of ``per_batch`` chunks, and where each
    chunk's pieces of them are staged: one value per chunk holding its pieces of seam parts
    one after another, in raster order of the parts."""

    def __init__(self, region: VolumetricIndex, top: Level, seams: Sequence[Any]) -> None:
        stored, offset, max_size, per_batch = seams
        super().__init__(region, top, top.chunk, stored, offset, max_size)
        self.per_batch = tuple(int(n) for n in per_batch)

    def _seam_boxes(self, out_idx: VolumetricIndex) -> Generator[
            tuple[tuple[int, int, int], list[tuple[int, int]]], None, None]:
        """(part index, the voxel bounds of ``out_idx`` inside it per axis) for each seam
        part ``out_idx`` overlaps, in the order they are staged."""
        for k in self.parts_over(out_idx):
            if self.seam(k, self.per_batch):
                bounds = [self._bounds(a, k[a]) for a in range(3)]
                yield k, [(max(lo, s), min(hi, e)) for (lo, hi), s, e in
                          zip(bounds, out_idx.start, out_idx.stop, strict=True)]

    def pieces(self, out_idx: VolumetricIndex) -> list[VolumetricIndex]:
        """The parts of ``out_idx`` inside the seam parts it overlaps, in the order they are
        staged."""
        return [out_idx._new([lo for lo, _ in b], [hi for _, hi in b])
                for _k, b in self._seam_boxes(out_idx)]

    def byte_range(self, out_idx: VolumetricIndex, part: VolumetricIndex,
                   item: int) -> tuple[int, int]:
        """Where the piece of ``part`` lies in the value of the chunk whose output is
        ``out_idx`` (``item``: bytes per voxel, channels included)."""
        want = tuple((s - o) // z for s, o, z in zip(part.start, self.origin, self.size,
                                                     strict=True))
        at = 0
        for k, b in self._seam_boxes(out_idx):
            size = (b[0][1] - b[0][0]) * (b[1][1] - b[1][0]) * (b[2][1] - b[2][0]) * item
            if k == want:
                return at, at + size
            at += size
        raise KeyError(f"{list(part.start)} is not a seam part of {list(out_idx.start)}")


def _read_piece(staging: TSLayer, seams: _Seams, chunk: VolumetricIndex, top: Level,
                part: VolumetricIndex, inter: VolumetricIndex, info: ScaleInfo) -> Array | None:
    """The staged piece of ``chunk``'s output inside ``part`` (None when not stored)."""
    dtype = np.dtype(info.dtype)
    shape = (info.num_channels, *inter.shape)
    lo, hi = seams.byte_range(chunk.padded(top.blend), part, info.num_channels * dtype.itemsize)
    raw = kv_read(kvstore_url(staging.path), _pieces_key(chunk), (lo, hi))
    if raw is None:
        return None
    if len(raw) != hi - lo:
        raise StagingLostError(
            f"the staged pieces of {list(chunk.start)} in {staging.path} end before byte {hi}: "
            "the staging area is damaged; run the flow again with a new run directory")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _batch_range(region: VolumetricIndex, top: Level,
                 batch: VolumetricIndex) -> tuple[list[int], list[int]]:
    """The chunk indices [lo, hi) a batch holds, per axis."""
    lo = [(s - r) // c for s, r, c in zip(batch.start, region.start, top.chunk, strict=True)]
    hi = [(e - r) // c for e, r, c in zip(batch.stop, region.start, top.chunk, strict=True)]
    return lo, hi


def _batch_chunks(region: VolumetricIndex, top: Level,
                  batch: VolumetricIndex) -> list[VolumetricIndex]:
    """The top-level chunks of a batch in raster order (x outermost): the order every
    staged output is combined in."""
    lo, hi = _batch_range(region, top, batch)
    out = []
    for k in itertools.product(*(range(a, b) for a, b in zip(lo, hi, strict=True))):
        start = [r + i * c for r, i, c in zip(region.start, k, top.chunk, strict=True)]
        out.append(region._new(start, _add(start, top.chunk)))
    return out


def batches(region: VolumetricIndex, top: Level,
            per_batch: Sequence[int]) -> Generator[VolumetricIndex, None, None]:
    """Boxes of up to ``per_batch`` top-level chunks tiling the region, in raster order."""
    grid = _chunk_grid(region, top.chunk, top.chunk)
    for k in itertools.product(*(range(0, g, n) for g, n in zip(grid, per_batch, strict=True))):
        lo = [r + i * c for r, i, c in zip(region.start, k, top.chunk, strict=True)]
        hi = [r + min(i + n, g) * c for r, i, n, g, c in
              zip(region.start, k, per_batch, grid, top.chunk, strict=True)]
        yield region._new(lo, hi)


def _process_batch(
    op: Any, op_kwargs: dict[str, Any], levels: tuple[Level, ...], batch: VolumetricIndex,
    region: VolumetricIndex, dst: TSLayer | None = None, staging: TSLayer | None = None,
    subchunk_threads: int = 1, seams: list[Any] | None = None,
) -> None:
    """A batch of neighbouring top-level chunks, computed one after another (the next one's
    reads started while one computes). Without staging each chunk is written as
    :func:`_process_chunk` would. With staging (a blend), the batch combines its chunks'
    outputs in memory and writes every reduction part of dst that only its chunks overlap;
    of the parts that chunks of other batches overlap too (the seams) it stages each
    chunk's piece, for a reduction task to combine. Sums are taken in the order of the
    unbatched flow, so the bytes written are the same."""
    top = levels[0]
    chunks = _batch_chunks(region, top, batch)

    def ahead(i: int) -> None:
        if i + 1 < len(chunks):
            _prefetch_chunk(op, op_kwargs, levels, chunks[i + 1])

    if staging is None:
        direct = _InFlight(4)  # writes go on while the next chunks compute
        for i, chunk in enumerate(chunks):
            ahead(i)
            data = compute_chunk(op, op_kwargs, levels, chunk, subchunk_threads)
            if data is not None and dst is not None:
                direct.add(_start_write(dst, chunk, data))
                direct.trim()
        direct.wait()
        return
    assert dst is not None and seams is not None
    grid = _Seams(region, top, seams)
    info = staging.scales()[0]
    url = kvstore_url(staging.path)
    lo, hi = _batch_range(region, top, batch)
    # the batch's outputs are combined in slabs of parts along x, each spanning the batch in
    # y and z; a slab is written (its parts off the seams) once all its chunks are added
    span = batch.padded(top.blend).intersection(region)
    slabs: dict[int, tuple[Combiner, list[int]]] = {}
    # writes go on while the next chunk computes; at most a slab's worth in flight
    writing = _InFlight(max(2, (hi[1] - lo[1]) * (hi[2] - lo[2])))
    for i, chunk in enumerate(chunks):
        ahead(i)
        out_idx = chunk.padded(top.blend)
        data = compute_chunk(op, op_kwargs, levels, chunk, subchunk_threads)
        if data is None:
            _mark_empty(staging, _slot(chunk, region, top, top.chunk))
            data = np.zeros((info.num_channels, *out_idx.shape), dtype=info.dtype)
        else:
            data = _as_staged(data, out_idx, info)
            pieces = [data[(slice(None), *inter.slices_in(out_idx))].ravel()
                      for inter in grid.pieces(out_idx)]
            if pieces:
                writing.add(kv_write_async(url, _pieces_key(chunk),
                                           np.concatenate(pieces).tobytes()))
        low, high = neighbours(chunk, region)
        x0, x1 = max(out_idx.start[0], region.start[0]), min(out_idx.stop[0], region.stop[0])
        for px in range((x0 - grid.origin[0]) // grid.size[0],
                        (x1 - 1 - grid.origin[0]) // grid.size[0] + 1):
            slab = slabs.get(px)
            if slab is None:
                first, stop = grid.contributors(0, px)
                along = min(stop, hi[0]) - max(first, lo[0])
                xs = grid._bounds(0, px)
                box = VolumetricIndex.from_voxels(
                    [xs[0], span.start[1], span.start[2]], [xs[1], span.stop[1], span.stop[2]],
                    region.resolution)
                slab = slabs[px] = (Combiner(box, top.blend, top.mode),
                                    [along * (hi[1] - lo[1]) * (hi[2] - lo[2])])
            slab[0].add(out_idx, data, low, high)
            slab[1][0] -= 1
            if slab[1][0] == 0:
                del slabs[px]
                _write_owned(dst, grid, px, slab[0], writing)
        writing.trim()
    writing.wait()
    assert not slabs, "a slab of a batch was left unwritten"


def _write_owned(dst: TSLayer, grid: _Seams, px: int, slab: Combiner,
                 writing: _InFlight) -> None:
    """Start writing the parts of slab ``px`` that are off the seams (every output
    overlapping them was added). (Not in the runner's write group: a batch runs long, and
    its writes go on while it computes.)"""
    for k in grid.parts_over(slab.target):
        if k[0] != px or grid.seam(k, grid.per_batch):
            continue
        part = grid._part(k)
        writing.add(_start_write(dst, part, slab.result_in(part)))


def _start_write(dst: TSLayer, idx: VolumetricIndex, data: Array) -> Any:
    """Start writing a batch's output: the write in flight (under a bounded write semaphore
    it is done here, and ``None`` is returned)."""
    if not is_bounded("write"):
        return dst.write_async(idx, data)
    with semaphore("write"):
        dst.write_async(idx, data).result()
    return None


class _InFlight:
    """The writes a batch has started, oldest first; :meth:`trim` waits for the oldest
    beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.started: list[Any] = []

    def add(self, write: Any) -> None:
        if write is not None:
            self.started.append(write)

    def trim(self) -> None:
        while len(self.started) > self.limit:
            self.started.pop(0).result()

    def wait(self) -> None:
        for write in self.started:
            write.result()
        self.started.clear()


def _batch_summary(batch: VolumetricIndex, dst: TSLayer | None = None,
                   staging: TSLayer | None = None, **_: Any) -> str:
    return _chunk_summary(batch, dst, staging)


process_batch = TaskableOperation(_process_batch, operation_name="subchunkable.process_batch",
                                  summary=_batch_summary, outputs=("dst",))


# --------------------------------------------------------------------------- driver-side tasks


def _scale_record(info: ScaleInfo) -> dict[str, Any]:
    return {"chunk_size": list(info.chunk_size), "voxel_offset": list(info.voxel_offset),
            "size": list(info.size), "dtype": info.dtype, "num_channels": info.num_channels}


def _prepare_dst(dst: TSLayer, resolution: list[float]) -> dict[str, Any]:
    """Create ``dst`` (or check it) and describe its stored chunks at ``resolution``."""
    return _scale_record(dst.prepare_for_write(resolution))


def _planned_layers() -> dict[str, Any]:
    """The layers this dry run's earlier tasks would have created or changed."""
    planned: dict[str, Any] = dry_state().setdefault("specflow.layers", {})
    return planned


def _prepare_dst_dry(dst: TSLayer, resolution: list[float]) -> dict[str, Any]:
    return _scale_record(dst.plan_write(resolution, _planned_layers()))


prepare_dst = TaskableOperation(_prepare_dst, operation_name="subchunkable.prepare_dst",
                                dry_run=_prepare_dst_dry, outputs=("dst",))


def _create_staging(
    path: str, grid: list[int], top: Level, resolution: list[float], dtype: str,
    num_channels: int, region: VolumetricIndex, gap: list[int] | None = None,
    procs_applied: bool = False,
) -> str:
    """Create the staging array: one slot of (chunk + 2 * blend) voxels per top-level chunk."""
    layer = _staging_layer(path, grid, top, dtype, num_channels, resolution)
    layer.prepare_for_write(resolution)
    record = _staging_record(top, region, gap, procs_applied)
    kv_write(kvstore_url(path), "staging.json", json.dumps(record).encode())
    return layer.path


def _staging_layer(path: str, grid: list[int], top: Level, dtype: str, num_channels: int,
                   resolution: list[float]) -> TSLayer:
    slot = top.output
    return TSLayer(
        path, format="zarr3", info_dtype=dtype, info_num_channels=num_channels,
        info_resolution=resolution, info_voxel_offset=[0, 0, 0],
        info_size=[g * p for g, p in zip(grid, slot, strict=True)],
        info_chunk_size=list(slot), info_overwrite=True, strict=True,
    )


def _staging_record(top: Level, region: VolumetricIndex, gap: list[int] | None = None,
                    procs_applied: bool = False) -> dict[str, Any]:
    return {"region": {"resolution": list(region.resolution), "start": list(region.start),
                       "stop": list(region.stop)},
            "chunk": list(top.chunk), "blend": list(top.blend), "crop": list(top.crop),
            "gap": list(gap or [0, 0, 0]), "write_procs_applied": procs_applied,
            # every slot written is stored and a chunk without output is marked, so a slot
            # found missing was lost
            "strict": True}


def _planned_records() -> dict[str, Any]:
    records: dict[str, Any] = dry_state().setdefault("specflow.staging_records", {})
    return records


def _create_staging_dry(
    path: str, grid: list[int], top: Level, resolution: list[float], dtype: str,
    num_channels: int, region: VolumetricIndex, gap: list[int] | None = None,
    procs_applied: bool = False,
) -> str:
    layer = _staging_layer(path, grid, top, dtype, num_channels, resolution)
    layer.plan_write(resolution, _planned_layers())
    _planned_records()[layer.path] = _staging_record(top, region, gap, procs_applied)
    return layer.path


create_staging = TaskableOperation(
    _create_staging, operation_name="subchunkable.create_staging", dry_run=_create_staging_dry
)


def _delete_staging(path: str) -> None:
    """Remove the staging array (after the reduction wrote dst)."""
    url = kvstore_url(path)
    kv = ts.KvStore.open(url).result()
    kv.delete_range(ts.KvStore.KeyRange()).result()
    if url.startswith("file://"):  # a local store also leaves its empty directories
        shutil.rmtree(url[len("file://"):], ignore_errors=True)
    forget_layer(path)


def _delete_staging_dry(path: str) -> None:
    url = kvstore_url(path)
    _planned_layers()[url] = (None, [])
    _planned_records()[url] = None


delete_staging = TaskableOperation(_delete_staging, operation_name="subchunkable.delete_staging",
                                   dry_run=_delete_staging_dry)


def _part_grid(
    region: VolumetricIndex, storage_chunk: Sequence[int], voxel_offset: Sequence[int],
    max_size: Sequence[int] | None, top_chunk: Sequence[int],
) -> tuple[list[int], list[int]]:
    """The size of the reduction parts and where their grid starts (see
    :func:`reduction_parts`)."""
    want = max_size or top_chunk
    size = [max(c, (w // c) * c) for w, c in zip(want, storage_chunk, strict=True)]
    origin = [o + ((r - o) // c) * c
              for o, r, c in zip(voxel_offset, region.start, storage_chunk, strict=True)]
    return size, origin


def reduction_parts(
    region: VolumetricIndex, storage_chunk: Sequence[int], voxel_offset: Sequence[int],
    max_size: Sequence[int] | None, top_chunk: Sequence[int],
) -> list[VolumetricIndex]:
    """Pieces of ``region`` for reduction tasks: each a block of whole stored chunks of dst
    (on dst's chunk grid), at most ``max_size`` (default: the top chunk) rounded down to
    stored chunks, clipped to the region."""
    size, grid_origin = _part_grid(region, storage_chunk, voxel_offset, max_size, top_chunk)
    outer = VolumetricIndex.from_voxels(grid_origin, region.stop, region.resolution)
    parts = (p.intersection(region) for p in outer.iter_chunks(size))
    return [p for p in parts if not p.is_empty()]


# --------------------------------------------------------------------------- the flow


@dataclass(frozen=True)
class Plan:
    """Everything a subchunkable flow decided at build time (pure data)."""

    geometry: Geometry
    staging_dir: str | None
    skip_intermediaries: bool
    max_reduction_chunk_size: IVec3 | None

    @property
    def region(self) -> VolumetricIndex:
        return self.geometry.region

    @property
    def levels(self) -> tuple[Level, ...]:
        return self.geometry.levels


def _dst_info(dst: Any, resolution: Sequence[float]) -> DstInfo | None:
    """What ``dst`` will look like at ``resolution``, read without writing anything (None
    when that cannot be known before the run creates it)."""
    planned = getattr(dst, "planned_scale", None)
    if dst is None or planned is None:
        return None
    try:
        s = planned(list(resolution))
    except (ValueError, OSError, FileNotFoundError):
        return None
    if s is None:
        return None
    return DstInfo(ivec3(s.chunk_size), ivec3(s.voxel_offset), ivec3(s.size))


def _info_of(record: dict[str, Any]) -> DstInfo:
    return DstInfo(ivec3(record["chunk_size"]), ivec3(record["voxel_offset"]),
                   ivec3(record["size"]))


class SubchunkableApplyFlow:
    """The flow of one subchunkable apply (see the module doc)."""

    def __init__(self, op: Any, op_kwargs: dict[str, Any], dst: Any, plan: Plan | None,
                 subchunk_threads: int, args: dict[str, Any] | None = None,
                 bbox: BBox3D | None = None, planned: DstInfo | None = None) -> None:
        self.planned = planned
        self.op = op
        self.op_kwargs = op_kwargs
        self.dst = dst
        self.plan = plan
        self.subchunk_threads = subchunk_threads
        self.args = args or {}
        self.bbox = bbox

    def __call__(self) -> Flow:
        if self.plan is None:  # decided once dst is known, at run time
            return Flow(self.flow, name="subchunkable_apply_flow")
        per_batch = _per_batch(self.args)
        if per_batch is not None:
            geo = self.plan.geometry
            n = sum(1 for _ in batches(geo.region, geo.levels[0], per_batch))
            return Flow(self.flow, name="subchunkable_apply_flow",
                        expected={process_batch.name: n})
        n = chunk_count(self.plan.geometry)[0]
        return Flow(self.flow, name="subchunkable_apply_flow",
                    expected={process_chunk.name: n})

    def staging_path(self, plan: Plan | None = None) -> str:
        """Where this flow stages its top-level chunks (with ``plan``, or the build's)."""
        plan = plan or self.plan
        if plan is None or plan.staging_dir is None:
            raise SubchunkableConfigError(
                "this flow's staging area is decided when it runs (its dst is not known yet)")
        digest = task_digest_of([self.dst, plan, self.op, self.op_kwargs])
        return plan.staging_dir.rstrip("/") + f"/staging-{digest[:20]}"

    def _final_plan(self, info: DstInfo) -> Plan:
        """The plan again with dst's real stored chunks (the build may have had to guess
        them, or not know them at all)."""
        return _make_plan(self.args, plan(self.args, _bbox_for(self.args, self.bbox, info), info))

    def _describe(self, geo: Geometry) -> None:
        """Tell a dry run's flow graph what this flow writes and its levels of chunks."""
        op = self.op.op if isinstance(self.op, WriteProcs) else self.op
        op = getattr(op, "fn", None) or getattr(op, "op", None) or op
        op = getattr(op, "func", op)  # a partial: its function
        name = getattr(op, "__name__", None) or type(op).__name__
        where = _layer_name(self.dst) if self.dst is not None else "no dst"
        describe_flow(f"{name} → {where}")
        per_batch = _per_batch(self.args)
        notes = level_notes(geo)
        if per_batch is None:
            describe_levels(process_chunk.name, notes)
            return
        first = notes[0]
        notes[0] = InnerLevel(first.name, f"{first.label}, in batches of up to {_x(per_batch)}",
                              math.prod(per_batch))
        describe_levels(process_batch.name, notes)

    def flow(self) -> Generator[Any, Any, None]:
        per_batch = _per_batch(self.args)
        if self.dst is None:
            assert self.plan is not None
            geo = self.plan.geometry
            self._describe(geo)
            if per_batch is not None:
                for batch in batches(geo.region, geo.levels[0], per_batch):
                    yield process_batch.make_task(
                        op=self.op, op_kwargs=self.op_kwargs, levels=geo.levels, batch=batch,
                        region=geo.region, subchunk_threads=self.subchunk_threads)
                yield Dependency()
                return
            for chunk in geo.region.iter_chunks(geo.levels[0].chunk, stride=geo.stride):
                yield process_chunk.make_task(
                    op=self.op, op_kwargs=self.op_kwargs, levels=geo.levels, chunk=chunk,
                    region=geo.region, subchunk_threads=self.subchunk_threads)
            yield Dependency()
            return
        res = list(vec3(self.args["dst_resolution"]))
        prep = prepare_dst.make_task(dst=self.dst, resolution=res)
        yield prep
        record = yield Dependency(prep)
        if record is None:  # a dry run prepared nothing: count with the layout foreseen
            if self.planned is None:
                raise SubchunkableConfigError(
                    "a dry run cannot count this flow's tasks: dst's layout is known only once "
                    "the run creates it", ("dst",))
            p = self.planned
            record = {"chunk_size": list(p.chunk_size), "voxel_offset": list(p.voxel_offset),
                      "size": list(p.size), "dtype": "uint8", "num_channels": 1}
        plan_ = self._final_plan(_info_of(record))
        geo = plan_.geometry
        region = geo.region
        top = geo.levels[0]
        stride = geo.stride
        stored = ivec3(record["chunk_size"])
        offset = ivec3(record["voxel_offset"])
        aligned = region.is_aligned(offset, stored) and all(
            c % s == 0 and q % s == 0 for c, q, s in zip(top.chunk, stride, stored, strict=True))
        direct = top.blend == (0, 0, 0) and top.mode != "defer" and aligned
        if plan_.skip_intermediaries and not direct:
            fit = [max(s, (c // s) * s) for c, s in zip(top.chunk, stored, strict=True)]
            raise SubchunkableConfigError(
                "skip_intermediaries needs top-level chunks aligned with the stored chunks of "
                f"dst ({list(stored)} from voxel offset {list(offset)}): the region starts at "
                f"{list(region.start)} with processing_chunk_sizes[0] = {list(top.chunk)}; use "
                f"a multiple of the stored chunk such as {fit} and a region starting on that "
                "grid, or give level_intermediaries_dirs instead",
                ("skip_intermediaries", "processing_chunk_sizes"))
        self._describe(geo)
        common = {"op": self.op, "op_kwargs": self.op_kwargs, "levels": geo.levels,
                  "region": region, "subchunk_threads": self.subchunk_threads}
        if any(geo.gap):
            common["stride"] = list(stride)
        # spatially local order (lazy) where chunks tile the region; with gaps, raster order
        chunks = (local_order(region, top.chunk) if tuple(stride) == tuple(top.chunk)
                  else region.iter_chunks(top.chunk, stride=stride))
        op_type = self.args.get("op_worker_type")
        if per_batch is not None:
            common.pop("stride", None)  # batches tile the region (no gaps)
        if direct and per_batch is not None:
            batcher = process_batch.task_maker(dst=self.dst, **common)
            for batch in batches(region, top, per_batch):
                yield _typed(batcher.make_task(batch=batch), op_type)
            yield Dependency()
            return
        if direct:
            maker = process_chunk.task_maker(dst=self.dst, **common)
            for chunk in chunks:
                yield _typed(maker.make_task(chunk=chunk), op_type)
            yield Dependency()
            return
        assert plan_.staging_dir is not None
        path = self.staging_path(plan_)
        create = create_staging.make_task(
            path=path, grid=list(geo.grid()), top=top, resolution=res, dtype=record["dtype"],
            num_channels=int(record["num_channels"]), region=region, gap=list(geo.gap),
            procs_applied=isinstance(self.op, WriteProcs))
        yield create
        staged = yield Dependency(create)
        staging = TSLayer(staged or path, strict=True)
        maker = process_chunk.task_maker(staging=staging, **common)
        if top.mode == "defer":
            for chunk in chunks:
                yield _typed(maker.make_task(chunk=chunk), op_type)
            yield Dependency()
            return
        # each slab of reduction parts is reduced as soon as the chunks it combines are
        # staged, while later chunks are still being computed (no barrier between the passes)
        restage = Restage(self.op, self.op_kwargs, geo.levels, self.subchunk_threads)
        extra: dict[str, Any] = {"restage": restage}
        if any(geo.gap):
            extra["stride"] = list(stride)
        max_size = plan_.max_reduction_chunk_size
        seams = [list(stored), list(offset), None if max_size is None else list(max_size),
                 None if per_batch is None else list(per_batch)]
        if per_batch is not None:
            extra["seams"] = seams
        reducer = reduce_chunk.task_maker(staging=staging, dst=self.dst, region=region,
                                          top=top, mode=top.mode, **extra)
        red_type = self.args.get("reduction_worker_type")
        slabs = _ReadySlabs(region, top, stride, stored, offset, plan_.max_reduction_chunk_size,
                            per_batch)
        def handed() -> Generator[tuple[Task, list[VolumetricIndex]], None, None]:
            """Each task with the chunks it computes."""
            if per_batch is None:
                for chunk in chunks:
                    yield _typed(maker.make_task(chunk=chunk), op_type), [chunk]
                return
            batcher = process_batch.task_maker(staging=staging, dst=self.dst, seams=seams,
                                               **common)
            for batch in batches(region, top, per_batch):
                yield (_typed(batcher.make_task(batch=batch), op_type),
                       _batch_chunks(region, top, batch))

        for part in slabs.uncovered():  # in processing gaps: no chunk to wait for
            yield _typed(reducer.make_task(part=part), red_type)
        for task, computed in handed():
            yield task
            for chunk in computed:
                for px, staged in slabs.handed_out(chunk, task):
                    yield Flow(_reduce_when_staged, (staged, reducer, slabs, px, red_type),
                               name="subchunkable.reduce_slab")
        yield Dependency()
        yield delete_staging.make_task(path=path)
        yield Dependency()


def _reduce_when_staged(
    staged: list[Task], reducer: Any, parts: _ReadySlabs, px: int, worker_type: str | None,
) -> Generator[Any, Any, None]:
    """Reduce slab ``px`` of the parts once the chunk tasks whose outputs it combines are
    done."""
    yield Dependency(staged)
    for part in parts.covered(px):
        yield _typed(reducer.make_task(part=part), worker_type)


class _ReadySlabs(_PartGrid):
    """The reduction parts of a staged flow in slabs along x, and when a slab has been
    handed all the top-level chunks whose staged outputs overlap it. Chunks are reported as
    they are handed out, in any order (the flow's order goes along x brick by brick, so
    slabs complete one after another); a slab is given back once, with those chunks' tasks,
    when its last one is. Only slabs begun and not yet complete are held. (Slabs rather than
    single parts: a chunk is waited on by 2 or 3 slabs, where it would be by up to 27
    parts.) With ``per_batch`` (chunks run in batches of that many), a slab's parts are
    those on the seams between batches: a batch writes the others itself."""

    def __init__(self, region: VolumetricIndex, top: Level, stride: Sequence[int],
                 stored: Sequence[int], offset: Sequence[int],
                 max_size: Sequence[int] | None, per_batch: Sequence[int] | None = None) -> None:
        super().__init__(region, top, stride, stored, offset, max_size)
        self.per_batch = None if per_batch is None else tuple(per_batch)
        self.along = [[self._chunks_along(a, k) for k in range(n)]
                      for a, n in enumerate(self.nparts)]
        self.left: dict[int, int] = {}
        self.tasks: dict[int, list[Task]] = {}

    def _parts(self, px: int, covered: bool) -> Generator[VolumetricIndex, None, None]:
        ax, ay, az = self.along
        for py, pz in itertools.product(range(self.nparts[1]), range(self.nparts[2])):
            if (ax[px] * ay[py] * az[pz] > 0) != covered:
                continue
            if covered and self.per_batch is not None and not self.seam((px, py, pz), self.per_batch):
                continue
            yield self._part((px, py, pz))

    def covered(self, px: int) -> Generator[VolumetricIndex, None, None]:
        """The parts of slab ``px`` that some chunk output overlaps (with batches: those on
        their seams)."""
        return self._parts(px, True)

    def uncovered(self) -> Generator[VolumetricIndex, None, None]:
        """The parts no chunk output overlaps (only where chunks are spaced by gaps)."""
        if self.stride == self.chunk:
            return
        for px in range(self.nparts[0]):
            yield from self._parts(px, False)

    def handed_out(self, chunk: VolumetricIndex, task: Task) -> list[tuple[int, list[Task]]]:
        """Record ``chunk`` (by ``task``) as handed out; the slabs now complete."""
        x0, x1 = chunk.start[0] - self.blend[0], chunk.stop[0] + self.blend[0]
        o, z = self.origin[0], self.size[0]
        first = (max(x0, self.start[0]) - o) // z
        last = (min(x1, self.stop[0]) - 1 - o) // z
        ready = []
        for px in range(first, last + 1):
            left = self.left.get(px)
            if left is None:
                left = self.along[0][px] * self.grid[1] * self.grid[2]
                self.tasks[px] = []
            if not self.tasks[px] or self.tasks[px][-1] is not task:
                self.tasks[px].append(task)
            if left == 1:
                self.left.pop(px, None)
                ready.append((px, self.tasks.pop(px)))
            else:
                self.left[px] = left - 1
        return ready


def _per_batch(args: dict[str, Any]) -> IVec3 | None:
    given = args.get("processing_batch")
    return None if given is None else ivec3(given, "processing_batch")


def _typed(task: Task, worker_type: str | None) -> Task:
    """``task`` run by workers of ``worker_type`` (zetta's op_worker_type), when given."""
    return task if worker_type is None else with_requirements(task, None, worker_type)


def _x(v: Sequence[int]) -> str:
    return "×".join(str(int(c)) for c in v)


def level_notes(geo: Geometry) -> list[InnerLevel]:
    """The levels of chunks inside each top-level task, for a dry run's flow graph: level 0
    is the task's own chunk; each level below splits the grown chunk of the level above."""
    out = []
    for i, lvl in enumerate(geo.levels):
        label = f"chunks of {_x(lvl.chunk)}"
        pads = [f"{k} {_x(v)}" for k, v in (("crop", lvl.crop), ("blend", lvl.blend)) if any(v)]
        if any(lvl.blend):
            pads[-1] += f" {lvl.mode}"
        if pads:
            label += " (" + ", ".join(pads) + ")"
        per = 1 if i == 0 else math.prod(
            p // c for p, c in zip(geo.levels[i - 1].grown, lvl.chunk, strict=True))
        out.append(InnerLevel(f"level {i}", label, per))
    return out


def _reduce(
    staging: TSLayer, dst: Any, region: VolumetricIndex, top: Level, mode: str,
    stored: IVec3, offset: IVec3, max_size: IVec3 | None, stride: Sequence[int] | None = None,
    worker_type: str | None = None,
) -> Generator[Any, Any, None]:
    extra = {} if stride is None or tuple(stride) == top.chunk else {"stride": list(stride)}
    maker = reduce_chunk.task_maker(staging=staging, dst=dst, region=region, top=top, mode=mode,
                                    **extra)
    for part in reduction_parts(region, stored, offset, max_size, top.chunk):
        yield _typed(maker.make_task(part=part), worker_type)
    yield Dependency()


def _check_dst(dst: Any) -> Any:
    if dst is None:
        return None
    if not (hasattr(dst, "write") and hasattr(dst, "prepare_for_write")):
        raise SubchunkableConfigError(
            f"dst must be a layer (build_cv_layer, build_ts_layer) or null, got "
            f"{type(dst).__name__}", ("dst",))
    if getattr(dst, "readonly", False):
        raise SubchunkableConfigError(f"dst {getattr(dst, 'path', dst)} is read-only; give a "
                                      "writable layer", ("dst",))
    return dst


# --------------------------------------------------------------------------- building


#: every parameter of build_subchunkable_apply_flow with its default (zetta's)
DEFAULTS: dict[str, Any] = {
    "processing_gap": (0, 0, 0),
    "processing_crop_pads": (0, 0, 0),
    "processing_blend_pads": (0, 0, 0),
    "processing_blend_modes": "quadratic",
    "level_intermediaries_dirs": None,
    "skip_intermediaries": False,
    "max_reduction_chunk_size": None,
    "expand_bbox_resolution": False,
    "expand_bbox_backend": False,
    "expand_bbox_processing": True,
    "shrink_processing_chunk": False,
    "auto_divisibility": False,
    "allow_cache_up_to_level": None,
    "op_worker_type": None,
    "reduction_worker_type": None,
    "task_stack_size": None,
    "verbose": True,
    "generate_ng_link": False,
    "fn": None,
    "fn_semaphores": None,
    "op": None,
    "op_args": (),
    "op_kwargs": None,
    "bbox": None,
    "start_coord": None,
    "end_coord": None,
    "coord_resolution": None,
    "auto_bbox": False,
    "dst_tighten_bounds": False,
    "max_reduction_chunk_sizes": None,
    "subchunk_threads": 1,
    "processing_batch": None,
}
PARAMETERS = ("dst", "dst_resolution", "processing_chunk_sizes", *DEFAULTS)


def normalize_arguments(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` with defaults filled in, the older spellings mapped (op arguments passed
    next to the parameters go to ``op_kwargs``; ``max_reduction_chunk_sizes`` is
    ``max_reduction_chunk_size``), and refusals for arguments that look like misspelt
    parameters."""
    args = dict(DEFAULTS)
    extra: dict[str, Any] = {}
    for k, v in given.items():
        if k in PARAMETERS:
            args[k] = v
        else:
            extra[k] = v
    for k in extra:
        close = difflib.get_close_matches(k, PARAMETERS, n=1, cutoff=0.85)
        if close:
            raise SubchunkableConfigError(
                f"unexpected argument {k!r}: did you mean {close[0]!r}? (arguments that are not "
                "parameters of the flow are passed to the operation, as in op_kwargs)", (k,))
    if args["max_reduction_chunk_sizes"] is not None:
        if args["max_reduction_chunk_size"] is not None:
            raise SubchunkableConfigError(
                "give max_reduction_chunk_size or its older spelling max_reduction_chunk_sizes, "
                "not both", ("max_reduction_chunk_size", "max_reduction_chunk_sizes"))
        args["max_reduction_chunk_size"] = args["max_reduction_chunk_sizes"]
    args["max_reduction_chunk_sizes"] = None
    if extra:
        kwargs = args["op_kwargs"]
        if isinstance(kwargs, dict):
            both = sorted(set(kwargs) & set(extra))
            if both:
                raise SubchunkableConfigError(
                    f"{', '.join(both)} given both in op_kwargs and next to it; give each "
                    "operation argument once (in op_kwargs)", tuple(both))
            args["op_kwargs"] = {**kwargs, **extra}
        elif kwargs is None:
            args["op_kwargs"] = extra
    return args


def _replans(args: dict[str, Any]) -> bool:
    """Whether the region depends on dst's stored layout."""
    return args.get("auto_bbox") is True or args.get("expand_bbox_backend") is True


def _bbox_for(args: dict[str, Any], bbox: BBox3D | None, info: DstInfo | None) -> BBox3D:
    if args.get("auto_bbox") is True:
        if info is None:
            raise SubchunkableConfigError("auto_bbox needs dst's bounds", ("auto_bbox",))
        res = vec3(args["dst_resolution"])
        stop = _add(info.voxel_offset, info.size)
        return VolumetricIndex.from_voxels(info.voxel_offset, stop, res).bbox
    assert bbox is not None
    return bbox


def _make_plan(args: dict[str, Any], geometry: Geometry) -> Plan:
    dirs = args.get("level_intermediaries_dirs")
    top_dir = None
    if dirs:
        top_dir = dirs if isinstance(dirs, str) else dirs[0]
    red = args.get("max_reduction_chunk_size")
    return Plan(geometry, str(top_dir) if top_dir else None,
                args.get("skip_intermediaries") is True,
                ivec3(red, "max_reduction_chunk_size") if red is not None else None)


def _operation(args: dict[str, Any], crop: IVec3, sink_name: str) -> Any:
    fn, op = args.get("fn"), args.get("op")
    if op is not None and is_protocol_op(op):
        return ProtocolOperation(op, crop, sink_name)
    try:
        operation = as_operation(fn, op)
    except ValueError as exc:
        raise SubchunkableConfigError(str(exc), ("fn", "op")) from None
    sems = args.get("fn_semaphores")
    if sems is not None and isinstance(operation, FnOperation):
        operation = FnOperation(operation.fn, [str(s) for s in sems])
    return operation


def _layer_name(layer: Any) -> str:
    return str(getattr(layer, "path", None) or getattr(layer, "name", None) or layer)


def ng_link(layers: dict[str, Any], region: VolumetricIndex) -> str:
    """A neuroglancer link showing ``layers`` (name -> layer) at the start of ``region`` (as
    zetta places it), built offline: the state is in the URL."""
    from specflow.volumes.nglink import make_ng_link

    position = [float(v) for v in region.start]
    return make_ng_link([[name, "image", _layer_name(layer).rstrip("/")]
                         for name, layer in layers.items()], position, title="subchunkable",
                        print_to_logger=False)


def _summary(args: dict[str, Any], geometry: Geometry, dst: Any, op: Any) -> str:
    g = geometry
    lines = ["subchunkable apply flow",
             f"  dst: {_layer_name(dst) if dst is not None else 'null'} at "
             f"{list(g.region.resolution)}",
             f"  region: voxels {list(g.region.start)} to {list(g.region.stop)} "
             f"(shape {list(g.region.shape)})",
             f"  operation: {getattr(op, '__name__', type(op).__name__)}"]
    if any(g.gap):
        lines.append(f"  processing gap: {list(g.gap)}")
    counts = chunk_count(g)
    for i, (lvl, n) in enumerate(zip(g.levels, counts, strict=True)):
        lines.append(f"  level {i}: {n} chunk(s) of {list(lvl.chunk)}, crop {list(lvl.crop)}, "
                     f"blend {list(lvl.blend)} ({lvl.mode})")
    for k in ("op_worker_type", "reduction_worker_type"):
        if args.get(k) is not None:
            lines.append(f"  {k}: {args[k]}")
    for k in ("allow_cache_up_to_level", "task_stack_size"):
        if args.get(k) is not None:
            lines.append(f"  {k}: {args[k]} (recorded; specflow schedules without it)")
    return "\n".join(lines)


@register("build_subchunkable_apply_flow")
def build_subchunkable_apply_flow(
    dst: Any,
    dst_resolution: list[float],
    processing_chunk_sizes: list[list[int]],
    processing_gap: list[int] | None = None,
    processing_crop_pads: Any = None,
    processing_blend_pads: Any = None,
    processing_blend_modes: Any = "quadratic",
    level_intermediaries_dirs: Any = None,
    skip_intermediaries: bool = False,
    max_reduction_chunk_size: list[int] | None = None,
    expand_bbox_resolution: bool = False,
    expand_bbox_backend: bool = False,
    expand_bbox_processing: bool = True,
    shrink_processing_chunk: bool = False,
    auto_divisibility: bool = False,
    allow_cache_up_to_level: int | None = None,
    op_worker_type: str | None = None,
    reduction_worker_type: str | None = None,
    task_stack_size: int | None = None,
    verbose: bool = True,
    generate_ng_link: bool = False,
    fn: Any = None,
    fn_semaphores: list[str] | None = None,
    op: Any = None,
    op_args: list[Any] | None = None,
    op_kwargs: dict[str, Any] | None = None,
    bbox: BBox3D | None = None,
    start_coord: list[float] | None = None,
    end_coord: list[float] | None = None,
    coord_resolution: list[float] | None = None,
    auto_bbox: bool = False,
    dst_tighten_bounds: bool = False,
    max_reduction_chunk_sizes: list[int] | None = None,
    subchunk_threads: int = 1,
    processing_batch: list[int] | None = None,
    **more_op_kwargs: Any,
) -> Flow:
    """Apply ``fn`` (a function of arrays) or ``op`` (a volumetric operation) with
    ``op_kwargs`` over a region, writing ``dst`` (a layer, or null) at ``dst_resolution``.

    The parameters are zetta_utils' and mean the same (see
    :mod:`specflow.processing.subchunkable_rules` for the rules between them):
    ``processing_chunk_sizes``, ``processing_crop_pads``, ``processing_blend_pads`` and
    ``processing_blend_modes`` (linear, quadratic, bump, max, defer) give one entry per level,
    top level first (one vector or one mode applies to every level); ``processing_gap``
    leaves unprocessed voxels between top-level chunks. ``level_intermediaries_dirs`` (one per
    level; required unless ``skip_intermediaries``) names where staging data goes; lower
    levels blend in memory. ``max_reduction_chunk_size`` bounds the pieces reduction tasks
    write. The region is ``bbox``, ``start_coord``/``end_coord``/``coord_resolution`` or
    dst's bounds (``auto_bbox``); ``expand_bbox_resolution`` snaps it to whole voxels,
    ``expand_bbox_backend`` to dst's stored chunks, ``expand_bbox_processing`` grows it to
    whole top chunks; ``shrink_processing_chunk`` shrinks chunks larger than the region;
    ``auto_divisibility`` keeps the bottom chunk size and shrinks the levels above until they
    divide. ``fn_semaphores`` are held while ``fn`` runs. ``verbose`` prints a summary
    (``generate_ng_link`` adds a neuroglancer link to it). ``op_worker_type``,
    ``reduction_worker_type``, ``allow_cache_up_to_level`` and ``task_stack_size`` are
    accepted and recorded. Arguments that are not parameters go to the operation, as in
    ``op_kwargs`` (an older spelling). ``subchunk_threads`` runs the sub-chunks of a task on
    a thread pool. ``processing_batch`` runs top-level chunks in batches of that many along
    x, y, z, one task each: a batch computes its chunks one after another, and with a
    top-level blend combines them in memory and stages only the seams between batches (the
    same output, with a fraction of the staging).
    """
    given = {k: v for k, v in locals().items() if k not in ("more_op_kwargs",)}
    for k, default in (("processing_gap", None), ("processing_crop_pads", None),
                       ("processing_blend_pads", None), ("op_args", None)):
        if given[k] is default:
            given.pop(k)
    given.update(more_op_kwargs)
    args = normalize_arguments(given)
    layer = _check_dst(args["dst"])
    res = vec3(args["dst_resolution"], "dst_resolution")
    info = _dst_info(layer, res)
    raise_problems(parameter_problems(args, info))
    if int(args["subchunk_threads"]) < 1:
        raise SubchunkableConfigError(
            f"subchunk_threads must be >= 1, got {args['subchunk_threads']}",
            ("subchunk_threads",))
    bbox_ = None if args["auto_bbox"] is True else region_bbox(
        args["bbox"], args["start_coord"], args["end_coord"], args["coord_resolution"])
    plan_: Plan | None = None
    if not (_replans(args) and info is None):
        plan_ = _make_plan(args, plan(args, _bbox_for(args, bbox_, info), info))
    n = len(args["processing_chunk_sizes"])
    crops = [ivec3(c) for c in per_level(args["processing_crop_pads"], n)]
    skip = args["skip_intermediaries"] is True
    dirs = args["level_intermediaries_dirs"]
    sink_name = _layer_name(layer) if skip else (
        f"{str(dirs[-1] if isinstance(dirs, list) else dirs).rstrip('/')}/"
        f"subchunkable_{type(args['op'] or args['fn']).__name__}_temp_")
    operation = _operation(args, crops[-1], sink_name)
    procs = tuple(getattr(layer, "write_procs", None) or ())
    if procs:
        operation = WriteProcs(operation, procs)
        layer = layer.with_procs(write_procs=())
    kwargs = dict(args["op_kwargs"] or {})
    if args["verbose"] is True and plan_ is not None:
        text = _summary(args, plan_.geometry, layer, args["op"] or args["fn"])
        if args["generate_ng_link"] is True and layer is not None:
            layers = {"dst": layer, **{k: v for k, v in kwargs.items() if isinstance(v, TSLayer)}}
            text += "\n  neuroglancer: " + ng_link(layers, plan_.region)
        print(text, file=sys.stderr)
    schema = SubchunkableApplyFlow(operation, kwargs, layer, plan_, int(args["subchunk_threads"]),
                                   args={k: v for k, v in args.items()
                                         if k not in ("dst", "op", "fn", "op_kwargs")},
                                   bbox=bbox_, planned=info)
    return schema()


def check_arguments(given: dict[str, Any], version: str = "0") -> list[SubchunkableConfigError]:
    """The problems ``specflow validate`` can see in the arguments of a
    build_subchunkable_apply_flow node before anything is built (typed nodes other than
    boxes stand for values it cannot see)."""
    try:
        args = normalize_arguments({k: _seen(v) for k, v in given.items()})
    except SubchunkableConfigError as exc:
        return [exc]
    problems = parameter_problems(args, _seen_dst_info(given.get("dst"),
                                                       args.get("dst_resolution"), version))
    if problems or _replans(args):
        return problems
    try:
        bbox = region_bbox(args["bbox"], args["start_coord"], args["end_coord"],
                           args["coord_resolution"])
        if _plain(args):
            plan(args, bbox, None)
    except SubchunkableConfigError as exc:
        return [exc]
    except (TypeError, ValueError):
        return []
    return []


#: layer types whose construction reads at most an info file and writes nothing
_LAYER_TYPES = {"build_cv_layer", "build_ts_layer"}


def _seen_dst_info(node: Any, resolution: Any, version: str) -> DstInfo | None:
    """dst's stored chunks as validation can know them: a layer node built (constructing a
    layer writes nothing) and asked what it will hold; None when that is not known."""
    if not (isinstance(node, dict) and node.get("@type") in _LAYER_TYPES
            and _is_vector3(resolution)):
        return None
    from specflow.builder.build import build
    from specflow.spec import SpecError

    try:
        layer = build(node if "@version" in node or version == "0" else
                      {**node, "@version": version})
    except (SpecError, ValueError, OSError):
        return None
    return _dst_info(layer, resolution)


def _is_vector3(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 3 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _plain(args: dict[str, Any]) -> bool:
    keys = ("dst_resolution", "processing_chunk_sizes", "processing_gap", "processing_crop_pads",
            "processing_blend_pads", "processing_blend_modes", "max_reduction_chunk_size")
    return not any(_has_unknown(args.get(k)) for k in keys)


def _has_unknown(v: Any) -> bool:
    if isinstance(v, Unknown):
        return True
    if isinstance(v, (list, tuple)):
        return any(_has_unknown(x) for x in v)
    return False


_BOX_TYPES = {"BBox3D.from_coords", "BBox3D"}


def _seen(v: Any) -> Any:
    """A spec value as validation sees it: boxes built (they are pure), other typed nodes
    unknown."""
    if isinstance(v, dict) and "@type" in v:
        if v.get("@type") in _BOX_TYPES and not any(_has_type(x) for x in v.values()):
            try:
                fields = {k: x for k, x in v.items() if not k.startswith("@")}
                if v["@type"] == "BBox3D":
                    return BBox3D(vec3(fields["start"]), vec3(fields["end"]))
                return BBox3D.from_coords(**fields)
            except (TypeError, ValueError, KeyError):
                return UNKNOWN
        return UNKNOWN
    if isinstance(v, list):
        return [_seen(x) for x in v]
    return v


def _has_type(v: Any) -> bool:
    if isinstance(v, dict):
        return "@type" in v or any(_has_type(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_type(x) for x in v)
    return False


build_subchunkable_apply_flow.__specflow_check__ = check_arguments  # type: ignore[attr-defined]


@register("build_postpad_subchunkable_apply_flow")
def build_postpad_subchunkable_apply_flow(
    dst: Any,
    dst_resolution: list[float],
    processing_input_sizes: list[list[int]],
    processing_crop: list[int] | None = None,
    processing_blend: list[int] | None = None,
    processing_blend_mode: str = "quadratic",
    level_intermediaries_dirs: Any = None,
    max_reduction_chunk_size: list[int] | None = None,
    expand_bbox_processing: bool = True,
    expand_bbox_resolution: bool = False,
    allow_cache_up_to_level: int | None = None,
    verbose: bool = True,
    generate_ng_link: bool = False,
    op_worker_type: str | None = None,
    reduction_worker_type: str | None = None,
    task_stack_size: int | None = None,
    fn: Any = None,
    fn_semaphores: list[str] | None = None,
    op: Any = None,
    op_args: list[Any] | None = None,
    op_kwargs: dict[str, Any] | None = None,
    bbox: BBox3D | None = None,
    start_coord: list[float] | None = None,
    end_coord: list[float] | None = None,
    coord_resolution: list[float] | None = None,
    auto_bbox: bool = False,
    dst_tighten_bounds: bool = False,
    **more_op_kwargs: Any,
) -> Flow:
    """zetta's post-padding form: each level is given by the size of the box its chunks read
    (``processing_input_sizes``, top first); ``processing_blend`` is blended at every level,
    ``processing_crop`` cropped at the bottom one. The bottom chunk is kept, the levels above
    are upper bounds (auto_divisibility); no gap, backend expansion or shrinking, and
    intermediaries are always staged."""
    if not processing_input_sizes or not isinstance(processing_input_sizes[0], (list, tuple)):
        raise SubchunkableConfigError(
            "processing_input_sizes is a list of levels, each [x, y, z] (top level first)",
            ("processing_input_sizes",))
    crop = ivec3(processing_crop or (0, 0, 0), "processing_crop")
    blend = ivec3(processing_blend or (0, 0, 0), "processing_blend")
    n = len(processing_input_sizes)
    chunks = [[s - 2 * b for s, b in zip(ivec3(size, f"processing_input_sizes[{i}]"), blend,
                                          strict=True)]
              for i, size in enumerate(processing_input_sizes)]
    chunks[-1] = [c - 2 * p for c, p in zip(chunks[-1], crop, strict=True)]
    for i, c in enumerate(chunks):
        if any(x <= 0 for x in c):
            raise SubchunkableConfigError(
                f"processing_input_sizes[{i}] = {list(processing_input_sizes[i])} leaves no "
                f"chunk after the blend {list(blend)}"
                + (f" and crop {list(crop)}" if i == n - 1 else "") + " on each side; make it "
                "larger", ("processing_input_sizes",))
    crops = [[0, 0, 0] for _ in range(n)]
    crops[-1] = list(crop)
    return build_subchunkable_apply_flow(
        dst, dst_resolution, chunks, processing_gap=[0, 0, 0], processing_crop_pads=crops,
        processing_blend_pads=[list(blend) for _ in range(n)],
        processing_blend_modes=processing_blend_mode,
        level_intermediaries_dirs=level_intermediaries_dirs, skip_intermediaries=False,
        max_reduction_chunk_size=max_reduction_chunk_size,
        expand_bbox_resolution=expand_bbox_resolution, expand_bbox_backend=False,
        expand_bbox_processing=expand_bbox_processing, shrink_processing_chunk=False,
        auto_divisibility=True, allow_cache_up_to_level=allow_cache_up_to_level,
        op_worker_type=op_worker_type, reduction_worker_type=reduction_worker_type,
        task_stack_size=task_stack_size, verbose=verbose, generate_ng_link=generate_ng_link,
        fn=fn, fn_semaphores=fn_semaphores, op=op, op_args=op_args, op_kwargs=op_kwargs,
        bbox=bbox, start_coord=start_coord, end_coord=end_coord,
        coord_resolution=coord_resolution, auto_bbox=auto_bbox,
        dst_tighten_bounds=dst_tighten_bounds, **more_op_kwargs,
    )


@register("build_reduce_staged_flow")
def build_reduce_staged_flow(
    staging_path: str, dst: Any, mode: str = "quadratic",
    max_reduction_chunk_size: list[int] | None = None,
) -> Flow:
    """Reduce the staging array a ``defer`` flow left at ``staging_path`` into ``dst``
    (``mode``: linear, quadratic, bump or max)."""
    layer = _check_dst(dst)
    if layer is None:
        raise SubchunkableConfigError("build_reduce_staged_flow needs a dst layer", ("dst",))
    if mode not in ("linear", "quadratic", "bump", "max"):
        raise SubchunkableConfigError(
            f"mode must be linear, quadratic, bump or max, got {mode!r}", ("mode",))
    max_red = (ivec3(max_reduction_chunk_size, "max_reduction_chunk_size")
               if max_reduction_chunk_size is not None else None)
    return Flow(_reduce_staged, (staging_path, layer, mode, max_red), name="reduce_staged_flow")


def _read_staging_record(path: str) -> dict[str, Any]:
    raw = kv_read(kvstore_url(path), "staging.json")
    if raw is None:
        raise FileNotFoundError(f"no staging array at {path} (staging.json is missing)")
    out: dict[str, Any] = json.loads(raw)
    return out


def _read_staging_record_dry(path: str) -> dict[str, Any]:
    records = _planned_records()
    url = kvstore_url(path)
    if url in records:
        if records[url] is None:
            raise FileNotFoundError(f"no staging array at {path} (an earlier task deletes it)")
        out: dict[str, Any] = records[url]
        return out
    return _read_staging_record(path)  # reads only


read_staging_record = TaskableOperation(
    _read_staging_record, operation_name="subchunkable.read_staging_record",
    dry_run=_read_staging_record_dry,
)


def _reduce_staged(
    path: str, dst: Any, mode: str, max_red: IVec3 | None
) -> Generator[Any, Any, None]:
    read = read_staging_record.make_task(path=path)
    yield read
    record = yield Dependency(read)
    r = record["region"]
    region = VolumetricIndex.from_voxels(r["start"], r["stop"], r["resolution"])
    if record.get("write_procs_applied") and getattr(dst, "write_procs", None):
        dst = dst.with_procs(write_procs=())  # the staged outputs have them already
    top = Level(ivec3(record["chunk"]), ivec3(record["crop"]), ivec3(record["blend"]), mode)
    prep = prepare_dst.make_task(dst=dst, resolution=r["resolution"])
    yield prep
    info = yield Dependency(prep)
    stride = _add(top.chunk, ivec3(record.get("gap", [0, 0, 0])))
    staging = TSLayer(path, strict=bool(record.get("strict")))
    yield from _reduce(staging, dst, region, top, mode, ivec3(info["chunk_size"]),
                       ivec3(info["voxel_offset"]), max_red, stride)




__all__ = [
    "ChunkSink",
    "Level",
    "Plan",
    "ProtocolOperation",
    "SubchunkableApplyFlow",
    "SubchunkableConfigError",
    "build_postpad_subchunkable_apply_flow",
    "build_reduce_staged_flow",
    "build_subchunkable_apply_flow",
    "check_arguments",
    "compute_chunk",
    "ng_link",
    "normalize_arguments",
    "reduction_parts",
]


@register("synthetic_volume")
@register("build_synthetic_volume_flow")
def build_synthetic_volume_flow(
    path: str,
    size: list[int],
    resolution: list[float] | None = None,
    voxel_offset: list[int] | None = None,
    chunk_size: list[int] | None = None,
    dtype: str = "float32",
    seed: int = 0,
    period: Any = 24.0,
    noise: float = 0.1,
    scale: float = 1.0,
    format: str = "zarr",
    compression: str = "raw",
    processing_chunk_size: list[int] | None = None,
) -> Flow:
    """Write a small deterministic test volume (see ``SyntheticVolumeOp``) to ``path``:
    ``size`` voxels from ``voxel_offset`` at ``resolution``, stored in chunks of
    ``chunk_size`` (defaults: resolution 1, offset 0, chunks of 32). An existing layer with
    the same metadata is rewritten in place."""
    from specflow.processing.operations import SyntheticVolumeOp

    resolution = resolution or [1.0, 1.0, 1.0]
    voxel_offset = voxel_offset or [0, 0, 0]
    chunk_size = chunk_size or [32, 32, 32]
    dst = TSLayer(path, format=format,  # type: ignore[arg-type]
                  info_dtype=dtype, info_resolution=resolution,
                  info_voxel_offset=voxel_offset, info_size=size, info_chunk_size=chunk_size,
                  info_compression=compression)
    start = ivec3(voxel_offset, "voxel_offset")
    stop = _add(start, ivec3(size, "size"))
    return build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(resolution),
        processing_chunk_sizes=[list(processing_chunk_size or chunk_size)],
        op=SyntheticVolumeOp(seed=seed, period=period, noise=noise, scale=scale, dtype=dtype),
        bbox=VolumetricIndex.from_voxels(start, stop, resolution).bbox,
        skip_intermediaries=True, shrink_processing_chunk=True, expand_bbox_processing=False,
        verbose=False,
    )
