"""The subchunkable apply flow: apply an operation to a region chunk by chunk, with context
(crop) pads, blended overlaps and hierarchical sub-chunks.

Levels are given top first. Each chunk of level ``i`` computes its chunk grown by its blend
and crop pads, drops the crop pad and contributes the rest (the chunk plus its blend pad).
Below the top, the grown box of a level-``i`` chunk is tiled exactly by the chunks of level
``i + 1`` (the divisibility rule), and the lowest level calls the operation.

Only top-level chunks become tasks. Lower levels run inside the task, blended in memory,
optionally on a thread pool (``subchunk_threads``).

Top-level chunks never race on a stored chunk:

* **direct**: without a top-level blend pad, and with chunks aligned to the stored chunks of
  ``dst``, each task writes its own chunk of ``dst``;
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
import itertools
import json
import shutil
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorstore as ts

from specflow.builder.registry import register
from specflow.flow.completion import defer
from specflow.flow.core import Dependency, Flow, TaskableOperation
from specflow.flow.ids import task_digest_of
from specflow.processing.blending import BLEND_MODES, Combiner, neighbours
from specflow.processing.operations import as_operation, crop_pad
from specflow.processing.order import local_order
from specflow.resources import is_bounded, semaphore
from specflow.volumes.geometry import BBox3D, IVec3, Vec3, VolumetricIndex, ivec3, vec3
from specflow.volumes.layers import TSLayer, forget_layer, kv_read, kv_write, kvstore_url

Array = npt.NDArray[Any]


class SubchunkableConfigError(ValueError):
    """The parameters of a subchunkable flow do not fit together."""


@dataclass(frozen=True)
class Level:
    """One level of processing: chunk size, crop pad, blend pad, blend mode (voxels)."""

    chunk: IVec3
    crop: IVec3
    blend: IVec3
    mode: str

    @property
    def grown(self) -> IVec3:
        """The box a chunk of this level computes: chunk + 2 * (crop + blend)."""
        return _add(self.chunk, _scale(_add(self.crop, self.blend), 2))

    @property
    def output(self) -> IVec3:
        """The box a chunk of this level contributes: chunk + 2 * blend."""
        return _add(self.chunk, _scale(self.blend, 2))


def _add(a: Sequence[int], b: Sequence[int]) -> IVec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _scale(a: Sequence[int], k: int) -> IVec3:
    return (a[0] * k, a[1] * k, a[2] * k)


# --------------------------------------------------------------------------- planning


def _per_level(value: Any, n: int, name: str, default: Any) -> list[Any]:
    if value is None:
        return [default] * n
    if isinstance(value, str):
        return [value] * n
    vals = list(value)
    if vals and isinstance(vals[0], (int, float)) and not isinstance(vals[0], bool):
        vals = [vals] * n  # one vector for every level
    if len(vals) != n:
        raise SubchunkableConfigError(
            f"{name} has {len(vals)} entries but processing_chunk_sizes has {n} levels; "
            "give one entry per level (top level first)"
        )
    return vals


def _vec(value: Any, name: str, *, positive: bool = False) -> IVec3:
    try:
        v = ivec3(value, name)
    except ValueError as exc:
        raise SubchunkableConfigError(str(exc)) from None
    if positive and any(x <= 0 for x in v):
        raise SubchunkableConfigError(f"{name} must be positive in every axis, got {list(v)}")
    if not positive and any(x < 0 for x in v):
        raise SubchunkableConfigError(f"{name} must not be negative, got {list(v)}")
    return v


def _largest_divisor_at_most(n: int, limit: int) -> int:
    for d in range(min(n, limit), 0, -1):
        if n % d == 0:
            return d
    return 1


def _region(
    bbox: BBox3D | None,
    start_coord: Sequence[float] | None,
    end_coord: Sequence[float] | None,
    coord_resolution: Sequence[float] | None,
    res: Vec3,
) -> VolumetricIndex:
    coords = (start_coord, end_coord, coord_resolution)
    if bbox is not None and any(c is not None for c in coords):
        raise SubchunkableConfigError(
            "give the region either as bbox or as start_coord/end_coord/coord_resolution, not both"
        )
    if bbox is None:
        if any(c is None for c in coords):
            raise SubchunkableConfigError(
                "give the region as bbox, or as all of start_coord, end_coord and "
                "coord_resolution"
            )
        assert start_coord is not None and end_coord is not None and coord_resolution is not None
        bbox = BBox3D.from_coords(start_coord, end_coord, coord_resolution)
    if not isinstance(bbox, BBox3D):
        raise SubchunkableConfigError(f"bbox must be a BBox3D, got {type(bbox).__name__}")
    try:
        idx = VolumetricIndex(res, bbox)
    except ValueError:
        snapped = bbox.snapped((0, 0, 0), res, "expand")
        raise SubchunkableConfigError(
            f"the region {bbox} is not on the voxel grid of dst_resolution {list(res)}; "
            f"use a box on that grid, e.g. {snapped}"
        ) from None
    if idx.is_empty():
        raise SubchunkableConfigError(f"the region {bbox} is empty")
    return idx


@dataclass(frozen=True)
class Plan:
    """Everything a subchunkable flow decided at build time (pure data)."""

    region: VolumetricIndex
    levels: tuple[Level, ...]
    staging_dir: str | None
    skip_intermediaries: bool
    max_reduction_chunk_size: IVec3 | None


def plan_levels(
    region: VolumetricIndex,
    processing_chunk_sizes: Sequence[Sequence[int]],
    processing_crop_pads: Any = None,
    processing_blend_pads: Any = None,
    processing_blend_modes: Any = "quadratic",
    *,
    expand_bbox_processing: bool = True,
    shrink_processing_chunk: bool = False,
    auto_divisibility: bool = False,
) -> tuple[VolumetricIndex, tuple[Level, ...]]:
    """Check the per-level settings against each other and the region; return the region to
    process (expanded when asked) and the levels. Raises :class:`SubchunkableConfigError`
    saying what to change."""
    sizes = list(processing_chunk_sizes or [])
    if not sizes:
        raise SubchunkableConfigError("processing_chunk_sizes needs at least one level, "
                                      "e.g. [[64, 64, 64]]")
    if isinstance(sizes[0], (int, float)):
        raise SubchunkableConfigError(
            "processing_chunk_sizes is a list of levels, each [x, y, z]; "
            f"write [{list(sizes)}] for one level"
        )
    n = len(sizes)
    chunks = [_vec(s, f"processing_chunk_sizes[{i}]", positive=True) for i, s in enumerate(sizes)]
    crops = [_vec(c, f"processing_crop_pads[{i}]") for i, c in
             enumerate(_per_level(processing_crop_pads, n, "processing_crop_pads", (0, 0, 0)))]
    blends = [_vec(b, f"processing_blend_pads[{i}]") for i, b in
              enumerate(_per_level(processing_blend_pads, n, "processing_blend_pads", (0, 0, 0)))]
    modes = _per_level(processing_blend_modes, n, "processing_blend_modes", "quadratic")
    for i, m in enumerate(modes):
        if m not in BLEND_MODES:
            raise SubchunkableConfigError(
                f"processing_blend_modes[{i}] is {m!r}; expected one of {', '.join(BLEND_MODES)}"
            )
        if m == "defer" and i > 0:
            raise SubchunkableConfigError(
                f"processing_blend_modes[{i}] is 'defer', which only the top level (index 0) "
                "may use: lower levels are blended in memory; use linear, quadratic or max"
            )

    # the top level tiles the region
    top = list(chunks[0])
    shape = list(region.shape)
    if shrink_processing_chunk:
        top = [min(c, s) for c, s in zip(top, shape, strict=True)]
    if expand_bbox_processing:
        stop = [a + -(-s // c) * c for a, s, c in zip(region.start, shape, top, strict=True)]
        region = VolumetricIndex.from_voxels(region.start, stop, region.resolution)
    elif any(s % c for s, c in zip(shape, top, strict=True)):
        fit = [_largest_divisor_at_most(s, c) for s, c in zip(shape, top, strict=True)]
        raise SubchunkableConfigError(
            f"the region's shape {shape} (at dst_resolution) is not a multiple of "
            f"processing_chunk_sizes[0] = {top}; set expand_bbox_processing: true, or use a "
            f"top chunk size that divides it, e.g. {fit}"
            + ("" if shrink_processing_chunk else
               " (shrink_processing_chunk: true shrinks a chunk larger than the region)")
        )
    chunks[0] = ivec3(top)

    levels: list[Level] = []
    for i in range(n):
        chunk = chunks[i]
        if i > 0:
            parent = levels[i - 1].grown
            bad = [p % c != 0 for p, c in zip(parent, chunk, strict=True)]
            if any(bad):
                fitting = ivec3([_largest_divisor_at_most(p, c) for p, c in
                                 zip(parent, chunk, strict=True)])
                if not auto_divisibility:
                    raise SubchunkableConfigError(
                        f"processing_chunk_sizes[{i}] = {list(chunk)} must divide the padded "
                        f"chunk of level {i - 1}, {list(parent)} (its chunk + 2 * (crop + "
                        f"blend pads)); use e.g. {list(fitting)}, or set auto_divisibility: true"
                    )
                chunk = fitting
        for ax in range(3):
            if 2 * blends[i][ax] > chunk[ax]:
                raise SubchunkableConfigError(
                    f"processing_blend_pads[{i}] = {list(blends[i])} is more than half of "
                    f"processing_chunk_sizes[{i}] = {list(chunk)}: neighbouring blend bands "
                    f"would overlap; use a blend pad of at most {[c // 2 for c in chunk]}"
                )
        levels.append(Level(chunk, crops[i], blends[i], str(modes[i])))
    return region, tuple(levels)


# --------------------------------------------------------------------------- work in a task


def _apply(
    op: Any, op_kwargs: dict[str, Any], levels: Sequence[Level], i: int,
    target: VolumetricIndex, threads: int,
) -> Array:
    """The output of levels ``i..`` over ``target`` (tiled by level ``i``'s chunks)."""
    lvl = levels[i]
    chunks = target.split(lvl.chunk, mode="exact")
    combiner = Combiner(target, lvl.blend, lvl.mode)

    def one(chunk: VolumetricIndex) -> Array:
        compute = chunk.padded(_add(lvl.blend, lvl.crop))
        if i == len(levels) - 1:
            with semaphore("cpu"):
                data = np.asarray(op(compute, **op_kwargs))
        else:
            data = _apply(op, op_kwargs, levels, i + 1, compute, 1)
        return crop_pad(data, lvl.crop)

    def add(chunk: VolumetricIndex, data: Array) -> None:
        low, high = neighbours(chunk, target)
        combiner.add(chunk.padded(lvl.blend), data, low, high)

    if threads > 1 and len(chunks) > 1:
        with cf.ThreadPoolExecutor(threads) as pool:
            for chunk, data in zip(chunks, pool.map(one, chunks), strict=True):
                add(chunk, data)
    else:
        for chunk in chunks:
            add(chunk, one(chunk))
    return combiner.result()


def compute_chunk(
    op: Any, op_kwargs: dict[str, Any], levels: Sequence[Level], chunk: VolumetricIndex,
    threads: int = 1,
) -> Array:
    """The output of one top-level chunk: it covers the chunk grown by the top blend pad."""
    top = levels[0]
    compute = chunk.padded(_add(top.blend, top.crop))
    if len(levels) == 1:
        with semaphore("cpu"):
            data = np.asarray(op(compute, **op_kwargs))
    else:
        data = _apply(op, op_kwargs, levels, 1, compute, threads)
    return crop_pad(data, top.crop)


def _slot(chunk: VolumetricIndex, region: VolumetricIndex, top: Level) -> VolumetricIndex:
    """Where the output of top-level ``chunk`` lives in the staging array."""
    size = top.output
    g = [(c - r) // s for c, r, s in zip(chunk.start, region.start, top.chunk, strict=True)]
    start = [k * p for k, p in zip(g, size, strict=True)]
    return VolumetricIndex.from_voxels(start, _add(start, size), chunk.resolution)


def _process_chunk(
    op: Any, op_kwargs: dict[str, Any], levels: tuple[Level, ...], chunk: VolumetricIndex,
    region: VolumetricIndex, dst: TSLayer | None = None, staging: TSLayer | None = None,
    subchunk_threads: int = 1,
) -> None:
    """One top-level chunk: compute it and write it to ``dst`` (direct) or to its staging
    slot."""
    data = compute_chunk(op, op_kwargs, levels, chunk, subchunk_threads)
    with semaphore("write"):
        if staging is not None:
            written = staging.write_async(_slot(chunk, region, levels[0]), data)
        else:
            assert dst is not None
            written = dst.write_async(chunk, data)
        # the worker waits for the write before it reports the task, or we do; a bounded
        # write semaphore bounds writes in flight, so it is held until this one is durable
        if is_bounded("write") or not defer(written, data.nbytes):
            written.result()


process_chunk = TaskableOperation(_process_chunk, operation_name="subchunkable.process_chunk")


def _reduce_chunk(
    staging: TSLayer, dst: TSLayer, region: VolumetricIndex, top: Level, mode: str,
    part: VolumetricIndex,
) -> None:
    """Combine the staged outputs overlapping ``part`` (a piece of the region aligned with
    the stored chunks of ``dst``) and write ``part`` of ``dst``."""
    combiner = Combiner(part, top.blend, mode)
    lo = [max(0, (p - b - r) // c) for p, b, r, c in
          zip(part.start, top.blend, region.start, top.chunk, strict=True)]
    grid = [s // c for s, c in zip(region.shape, top.chunk, strict=True)]
    hi = [min(g, -(-(p + b - r) // c)) for p, b, r, c, g in
          zip(part.stop, top.blend, region.start, top.chunk, grid, strict=True)]
    pending = []
    with semaphore("read"):
        for gx, gy, gz in itertools.product(*(range(a, b) for a, b in zip(lo, hi, strict=True))):
            start = [r + k * c for r, k, c in zip(region.start, (gx, gy, gz), top.chunk,
                                                   strict=True)]
            chunk = VolumetricIndex.from_voxels(start, _add(start, top.chunk), region.resolution)
            out_idx = chunk.padded(top.blend)
            inter = out_idx.intersection(part)
            if inter.is_empty():
                continue
            slot = _slot(chunk, region, top)
            offset = [s - o for s, o in zip(slot.start, out_idx.start, strict=True)]
            pending.append((chunk, out_idx, inter, staging.read_async(inter.translated(offset))))
        for chunk, out_idx, inter, fut in pending:
            low, high = neighbours(chunk, region)
            combiner.add(out_idx, fut.result(), low, high, data_idx=inter)
    with semaphore("write"):
        out = combiner.result()
        written = dst.write_async(part, out)
        if is_bounded("write") or not defer(written, out.nbytes):
            written.result()


reduce_chunk = TaskableOperation(_reduce_chunk, operation_name="subchunkable.reduce_chunk")


# --------------------------------------------------------------------------- driver-side tasks


def _prepare_dst(dst: TSLayer, resolution: list[float]) -> dict[str, Any]:
    """Create ``dst`` (or check it) and describe its stored chunks at ``resolution``."""
    info = dst.prepare_for_write(resolution)
    return {"chunk_size": list(info.chunk_size), "voxel_offset": list(info.voxel_offset),
            "size": list(info.size), "dtype": info.dtype, "num_channels": info.num_channels}


prepare_dst = TaskableOperation(_prepare_dst, operation_name="subchunkable.prepare_dst")


def _create_staging(
    path: str, grid: list[int], top: Level, resolution: list[float], dtype: str,
    num_channels: int, region: VolumetricIndex,
) -> str:
    """Create the staging array: one slot of (chunk + 2 * blend) voxels per top-level chunk,
    stored as one chunk (one file, one durable write per task; reductions read slots whole,
    through the cache)."""
    slot = top.output
    layer = TSLayer(
        path, format="zarr3", info_dtype=dtype, info_num_channels=num_channels,
        info_resolution=resolution, info_voxel_offset=[0, 0, 0],
        info_size=[g * p for g, p in zip(grid, slot, strict=True)],
        info_chunk_size=list(slot), info_overwrite=True,
    )
    layer.prepare_for_write(resolution)
    record = {"region": {"resolution": list(region.resolution), "start": list(region.start),
                         "stop": list(region.stop)},
              "chunk": list(top.chunk), "blend": list(top.blend), "crop": list(top.crop)}
    kv_write(kvstore_url(path), "staging.json", json.dumps(record).encode())
    return layer.path


create_staging = TaskableOperation(
    _create_staging, operation_name="subchunkable.create_staging"
)


def _delete_staging(path: str) -> None:
    """Remove the staging array (after the reduction wrote dst)."""
    url = kvstore_url(path)
    kv = ts.KvStore.open(url).result()
    kv.delete_range(ts.KvStore.KeyRange()).result()
    if url.startswith("file://"):  # a local store also leaves its empty directories
        shutil.rmtree(url[len("file://"):], ignore_errors=True)
    forget_layer(path)


delete_staging = TaskableOperation(_delete_staging, operation_name="subchunkable.delete_staging")


def reduction_parts(
    region: VolumetricIndex, storage_chunk: Sequence[int], voxel_offset: Sequence[int],
    max_size: Sequence[int] | None, top_chunk: Sequence[int],
) -> list[VolumetricIndex]:
    """Pieces of ``region`` for reduction tasks: each a block of whole stored chunks of dst
    (on dst's chunk grid), at most ``max_size`` (default: the top chunk) rounded down to
    stored chunks, clipped to the region."""
    want = max_size or top_chunk
    size = [max(c, (w // c) * c) for w, c in zip(want, storage_chunk, strict=True)]
    grid_origin = [o + ((r - o) // c) * c for o, r, c in
                   zip(voxel_offset, region.start, storage_chunk, strict=True)]
    outer = VolumetricIndex.from_voxels(grid_origin, region.stop, region.resolution)
    parts = (p.intersection(region) for p in outer.iter_chunks(size))
    return [p for p in parts if not p.is_empty()]


# --------------------------------------------------------------------------- the flow


class SubchunkableApplyFlow:
    """The flow of one subchunkable apply (see the module doc)."""

    def __init__(self, op: Any, op_kwargs: dict[str, Any], dst: TSLayer, plan: Plan,
                 subchunk_threads: int) -> None:
        self.op = op
        self.op_kwargs = op_kwargs
        self.dst = dst
        self.plan = plan
        self.subchunk_threads = subchunk_threads

    def __call__(self) -> Flow:
        return Flow(self.flow, name="subchunkable_apply_flow")

    def staging_path(self) -> str:
        assert self.plan.staging_dir is not None
        digest = task_digest_of([self.dst, self.plan, self.op, self.op_kwargs])
        return self.plan.staging_dir.rstrip("/") + f"/staging-{digest[:20]}"

    def flow(self) -> Generator[Any, Any, None]:
        plan = self.plan
        region = plan.region
        top = plan.levels[0]
        res = list(region.resolution)
        prep = prepare_dst.make_task(dst=self.dst, resolution=res)
        yield prep
        info = yield Dependency(prep)
        stored = ivec3(info["chunk_size"])
        offset = ivec3(info["voxel_offset"])
        aligned = region.is_aligned(offset, stored) and all(
            c % s == 0 for c, s in zip(top.chunk, stored, strict=True))
        direct = top.blend == (0, 0, 0) and top.mode != "defer" and aligned
        if plan.skip_intermediaries and not direct:
            fit = [max(s, (c // s) * s) for c, s in zip(top.chunk, stored, strict=True)]
            raise SubchunkableConfigError(
                "skip_intermediaries needs top-level chunks aligned with the stored chunks of "
                f"dst ({list(stored)} from voxel offset {list(offset)}): the region starts at "
                f"{list(region.start)} with processing_chunk_sizes[0] = {list(top.chunk)}; use "
                f"a multiple of the stored chunk such as {fit} and a region starting on that "
                "grid, or give level_intermediaries_dirs instead"
            )
        if not direct and plan.staging_dir is None:
            raise SubchunkableConfigError(
                "this flow needs level_intermediaries_dirs (a place for staging data): its top "
                "level has blend pads, or its chunks are not aligned with the stored chunks "
                f"of dst ({list(stored)} from voxel offset {list(offset)})"
            )
        common = {"op": self.op, "op_kwargs": self.op_kwargs, "levels": plan.levels,
                  "region": region, "subchunk_threads": self.subchunk_threads}
        if direct:
            maker = process_chunk.task_maker(dst=self.dst, **common)
            for chunk in local_order(region, top.chunk):
                yield maker.make_task(chunk=chunk)
            yield Dependency()
            return
        path = self.staging_path()
        grid = [s // c for s, c in zip(region.shape, top.chunk, strict=True)]
        create = create_staging.make_task(
            path=path, grid=grid, top=top, resolution=res, dtype=info["dtype"],
            num_channels=int(info["num_channels"]), region=region)
        yield create
        staged = yield Dependency(create)
        staging = TSLayer(staged)
        maker = process_chunk.task_maker(staging=staging, **common)
        for chunk in local_order(region, top.chunk):
            yield maker.make_task(chunk=chunk)
        yield Dependency()
        if top.mode == "defer":
            return
        yield from _reduce(staging, self.dst, region, top, top.mode, stored, offset,
                           plan.max_reduction_chunk_size)
        yield delete_staging.make_task(path=path)
        yield Dependency()


def _reduce(
    staging: TSLayer, dst: TSLayer, region: VolumetricIndex, top: Level, mode: str,
    stored: IVec3, offset: IVec3, max_size: IVec3 | None,
) -> Generator[Any, Any, None]:
    maker = reduce_chunk.task_maker(staging=staging, dst=dst, region=region, top=top,
                                    mode=mode)
    for part in reduction_parts(region, stored, offset, max_size, top.chunk):
        yield maker.make_task(part=part)
    yield Dependency()


def _check_dst(dst: Any) -> TSLayer:
    if not isinstance(dst, TSLayer):
        raise SubchunkableConfigError(
            f"dst must be a layer (build_ts_layer), got {type(dst).__name__}"
        )
    if dst.readonly:
        raise SubchunkableConfigError(f"dst {dst.path} is read-only")
    return dst


@register("build_subchunkable_apply_flow")
def build_subchunkable_apply_flow(
    dst: Any,
    dst_resolution: list[float],
    processing_chunk_sizes: list[list[int]],
    processing_crop_pads: Any = None,
    processing_blend_pads: Any = None,
    processing_blend_modes: Any = "quadratic",
    level_intermediaries_dirs: Any = None,
    skip_intermediaries: bool = False,
    max_reduction_chunk_size: list[int] | None = None,
    expand_bbox_processing: bool = True,
    shrink_processing_chunk: bool = False,
    auto_divisibility: bool = False,
    fn: Any = None,
    op: Any = None,
    op_kwargs: dict[str, Any] | None = None,
    bbox: BBox3D | None = None,
    start_coord: list[float] | None = None,
    end_coord: list[float] | None = None,
    coord_resolution: list[float] | None = None,
    subchunk_threads: int = 1,
) -> Flow:
    """Apply ``fn`` (a function of arrays) or ``op`` (a volumetric operation) with
    ``op_kwargs`` over a region, writing ``dst`` at ``dst_resolution``.

    ``processing_chunk_sizes``, ``processing_crop_pads``, ``processing_blend_pads`` and
    ``processing_blend_modes`` (linear, quadratic, max, defer) give one entry per level, top
    level first (one vector or one mode applies to every level). ``level_intermediaries_dirs``
    names where staging data goes (only its top entry is used: lower levels blend in memory);
    ``skip_intermediaries`` insists on direct writes. ``max_reduction_chunk_size`` bounds the
    pieces reduction tasks write. ``expand_bbox_processing`` grows the region to whole top
    chunks; ``shrink_processing_chunk`` shrinks a top chunk larger than the region;
    ``auto_divisibility`` picks lower chunk sizes that satisfy the divisibility rule.
    """
    layer = _check_dst(dst)
    res = vec3(dst_resolution, "dst_resolution")
    if any(r <= 0 for r in res):
        raise SubchunkableConfigError(f"dst_resolution must be positive, got {list(res)}")
    try:
        operation = as_operation(fn, op)
    except ValueError as exc:
        raise SubchunkableConfigError(str(exc)) from None
    kwargs = dict(op_kwargs or {})
    region = _region(bbox, start_coord, end_coord, coord_resolution, res)
    region, levels = plan_levels(
        region, processing_chunk_sizes, processing_crop_pads, processing_blend_pads,
        processing_blend_modes, expand_bbox_processing=expand_bbox_processing,
        shrink_processing_chunk=shrink_processing_chunk, auto_divisibility=auto_divisibility,
    )
    dirs: list[Any]
    if level_intermediaries_dirs is None:
        dirs = []
    elif isinstance(level_intermediaries_dirs, str):
        dirs = [level_intermediaries_dirs]
    else:
        dirs = list(level_intermediaries_dirs)
        if len(dirs) not in (1, len(levels)):
            raise SubchunkableConfigError(
                f"level_intermediaries_dirs has {len(dirs)} entries for {len(levels)} levels; "
                "give one per level (or a single directory)"
            )
    top = levels[0]
    if skip_intermediaries:
        if dirs:
            raise SubchunkableConfigError(
                "give either skip_intermediaries: true or level_intermediaries_dirs, not both"
            )
        if top.blend != (0, 0, 0) or top.mode == "defer":
            raise SubchunkableConfigError(
                "skip_intermediaries writes each top-level chunk straight to dst, so "
                f"processing_blend_pads[0] must be [0, 0, 0] (it is {list(top.blend)}) and its "
                "blend mode must not be defer; give level_intermediaries_dirs to blend"
            )
        if max_reduction_chunk_size is not None:
            raise SubchunkableConfigError(
                "max_reduction_chunk_size has no effect with skip_intermediaries (nothing is "
                "reduced); remove it"
            )
    elif (top.blend != (0, 0, 0) or top.mode == "defer") and not (dirs and dirs[0]):
        raise SubchunkableConfigError(
            f"processing_blend_pads[0] = {list(top.blend)} (mode {top.mode}) needs "
            "level_intermediaries_dirs: top-level chunks overlap, so their outputs are staged "
            "there and reduced"
        )
    max_red = (_vec(max_reduction_chunk_size, "max_reduction_chunk_size", positive=True)
               if max_reduction_chunk_size is not None else None)
    if subchunk_threads < 1:
        raise SubchunkableConfigError(f"subchunk_threads must be >= 1, got {subchunk_threads}")
    staging_dir = str(dirs[0]) if dirs and dirs[0] else None
    plan = Plan(region, levels, staging_dir, skip_intermediaries, max_red)
    schema = SubchunkableApplyFlow(operation, kwargs, layer, plan, subchunk_threads)
    return schema()


@register("build_postpad_subchunkable_apply_flow")
def build_postpad_subchunkable_apply_flow(
    dst: Any,
    dst_resolution: list[float],
    processing_input_sizes: list[list[int]],
    processing_crop_pads: Any = None,
    processing_blend_pads: Any = None,
    **kwargs: Any,
) -> Flow:
    """Like :func:`build_subchunkable_apply_flow`, but each level is given by the size of the
    box its chunks compute (``processing_input_sizes``: chunk + 2 * (crop + blend pads)); the
    chunk sizes follow."""
    if not processing_input_sizes or isinstance(processing_input_sizes[0], (int, float)):
        raise SubchunkableConfigError(
            "processing_input_sizes is a list of levels, each [x, y, z] (top level first)"
        )
    n = len(processing_input_sizes)
    crops = _per_level(processing_crop_pads, n, "processing_crop_pads", (0, 0, 0))
    blends = _per_level(processing_blend_pads, n, "processing_blend_pads", (0, 0, 0))
    chunks: list[list[int]] = []
    for i, size in enumerate(processing_input_sizes):
        s = _vec(size, f"processing_input_sizes[{i}]", positive=True)
        c = _vec(crops[i], f"processing_crop_pads[{i}]")
        b = _vec(blends[i], f"processing_blend_pads[{i}]")
        chunk = [x - 2 * (p + q) for x, p, q in zip(s, c, b, strict=True)]
        if any(x <= 0 for x in chunk):
            raise SubchunkableConfigError(
                f"processing_input_sizes[{i}] = {list(s)} leaves no chunk after its pads "
                f"(crop {list(c)}, blend {list(b)} on each side); make it larger than "
                f"{[2 * (p + q) for p, q in zip(c, b, strict=True)]}"
            )
        chunks.append(chunk)
    return build_subchunkable_apply_flow(
        dst, dst_resolution, chunks, processing_crop_pads=crops, processing_blend_pads=blends,
        **kwargs,
    )


@register("build_reduce_staged_flow")
def build_reduce_staged_flow(
    staging_path: str, dst: Any, mode: str = "quadratic",
    max_reduction_chunk_size: list[int] | None = None,
) -> Flow:
    """Reduce the staging array a ``defer`` flow left at ``staging_path`` into ``dst``
    (``mode``: linear, quadratic or max)."""
    layer = _check_dst(dst)
    if mode not in ("linear", "quadratic", "max"):
        raise SubchunkableConfigError(f"mode must be linear, quadratic or max, got {mode!r}")
    max_red = (_vec(max_reduction_chunk_size, "max_reduction_chunk_size", positive=True)
               if max_reduction_chunk_size is not None else None)
    return Flow(_reduce_staged, (staging_path, layer, mode, max_red), name="reduce_staged_flow")


def _read_staging_record(path: str) -> dict[str, Any]:
    raw = kv_read(kvstore_url(path), "staging.json")
    if raw is None:
        raise FileNotFoundError(f"no staging array at {path} (staging.json is missing)")
    out: dict[str, Any] = json.loads(raw)
    return out


read_staging_record = TaskableOperation(
    _read_staging_record, operation_name="subchunkable.read_staging_record"
)


def _reduce_staged(
    path: str, dst: TSLayer, mode: str, max_red: IVec3 | None
) -> Generator[Any, Any, None]:
    read = read_staging_record.make_task(path=path)
    yield read
    record = yield Dependency(read)
    r = record["region"]
    region = VolumetricIndex.from_voxels(r["start"], r["stop"], r["resolution"])
    top = Level(ivec3(record["chunk"]), ivec3(record["crop"]), ivec3(record["blend"]), mode)
    prep = prepare_dst.make_task(dst=dst, resolution=r["resolution"])
    yield prep
    info = yield Dependency(prep)
    yield from _reduce(TSLayer(path), dst, region, top, mode, ivec3(info["chunk_size"]),
                       ivec3(info["voxel_offset"]), max_red)


__all__ = [
    "Level",
    "Plan",
    "SubchunkableApplyFlow",
    "SubchunkableConfigError",
    "build_postpad_subchunkable_apply_flow",
    "build_reduce_staged_flow",
    "build_subchunkable_apply_flow",
    "compute_chunk",
    "plan_levels",
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
        skip_intermediaries=True, shrink_processing_chunk=True,
    )
