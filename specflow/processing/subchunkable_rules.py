"""The parameters of the subchunkable apply flow: what each means, which combinations are
refused, and the plan of levels they give.

The rules are those of zetta_utils' ``build_subchunkable_apply_flow`` (so a spec written for
it means the same here), checked in the same order. :func:`parameter_problems` needs only the
values a spec gives (it runs in ``specflow validate``, before anything is built);
:func:`plan` also needs the region and, for a few rules, the stored chunks of ``dst``.

Levels are given top first. A chunk of level ``i`` computes its chunk grown by its crop and
blend pads; its output (chunk plus blend pad) is blended with its neighbours'. Below the top,
the grown box of a level-``i`` chunk must be tiled exactly by the chunks of level ``i + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from specflow.volumes.geometry import BBox3D, IVec3, Vec3, VolumetricIndex, ivec3, vec3

BLEND_MODES = ("linear", "quadratic", "bump", "max", "defer")


class SubchunkableConfigError(ValueError):
    """The parameters of a subchunkable flow do not fit together. ``params`` names the
    offending parameters."""

    def __init__(self, message: str, params: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.params = tuple(params)


class Unknown:
    """A value a check cannot see (a node that is not built during validation)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = Unknown()


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


def _sub(a: Sequence[int], b: Sequence[int]) -> IVec3:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _scale(a: Sequence[int], k: int) -> IVec3:
    return (a[0] * k, a[1] * k, a[2] * k)


def _known(v: Any) -> bool:
    return not isinstance(v, Unknown)


def _is_vector(v: Any) -> TypeGuard[Sequence[Any]]:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _nonzero(v: Any) -> TypeGuard[Sequence[Any]]:
    return _is_vector(v) and any(x != 0 for x in v)


def _is_nested(v: Any) -> TypeGuard[Sequence[Any]]:
    return (not isinstance(v, str) and isinstance(v, (list, tuple)) and len(v) > 0
            and isinstance(v[0], (list, tuple)))


def per_level(value: Any, n: int) -> list[Any]:
    """``value`` as one entry per level: a nested list as it is, one vector or one mode for
    every level."""
    if _is_nested(value):
        return list(value)
    return [value] * n


def _levels_of(args: Mapping[str, Any]) -> int | None:
    sizes = args.get("processing_chunk_sizes")
    if _is_nested(sizes):
        return len(sizes)
    return None


# --------------------------------------------------------------------------- parameter rules


def parameter_problems(args: Mapping[str, Any],
                       dst_info: DstInfo | None = None) -> list[SubchunkableConfigError]:
    """Every refused combination among the parameters ``args`` (with their defaults filled
    in), in zetta's order. Values may be :data:`UNKNOWN`; rules that need them are skipped
    (``dst_info``: dst's stored chunks at dst_resolution, when known)."""
    out: list[SubchunkableConfigError] = []

    def bad(message: str, *params: str) -> None:
        out.append(SubchunkableConfigError(message, params))

    a = dict(args)
    dst = a.get("dst")
    skip = a.get("skip_intermediaries") is True
    if a.get("dst_tighten_bounds") is True:
        bad("dst_tighten_bounds is no longer supported: set the bounds of the dst layer itself "
            "(build_cv_layer's info_bbox: the region of the run) and remove dst_tighten_bounds",
            "dst_tighten_bounds")
    if dst is None:
        if not skip:
            bad("dst is null, so skip_intermediaries must be true (without a dst there is "
                "nothing to stage or reduce into)", "dst", "skip_intermediaries")
        if a.get("expand_bbox_backend") is True:
            bad("expand_bbox_backend aligns the region to dst's stored chunks, and dst is null; "
                "remove expand_bbox_backend or give a dst", "expand_bbox_backend", "dst")
        if a.get("max_reduction_chunk_size") is not None:
            bad("max_reduction_chunk_size is unused when dst is null (nothing is reduced); "
                "remove it", "max_reduction_chunk_size", "dst")
        if a.get("auto_bbox") is True:
            bad("auto_bbox takes the region from dst's bounds, and dst is null; give bbox or "
                "start_coord/end_coord/coord_resolution instead", "auto_bbox", "dst")

    coords = {k: a.get(k) for k in ("start_coord", "end_coord", "coord_resolution")}
    given = [k for k, v in coords.items() if v is not None]
    if a.get("auto_bbox") is True:
        extra = (["bbox"] if a.get("bbox") is not None else []) + given
        if extra:
            bad(f"auto_bbox takes the region from dst, so {', '.join(extra)} must not be given: "
                "remove them, or remove auto_bbox", "auto_bbox", *extra)
    elif a.get("bbox") is None:
        if len(given) < 3:
            missing = [k for k in coords if k not in given]
            bad("no region to process: give bbox, or all of start_coord, end_coord and "
                f"coord_resolution (missing {', '.join(missing)}), or auto_bbox: true",
                "bbox", *missing)
    elif given:
        bad(f"bbox was given, so {', '.join(given)} must not be: give the region one way "
            "(bbox, or start_coord/end_coord/coord_resolution)", "bbox", *given)

    fn, op = a.get("fn"), a.get("op")
    if fn is not None and op is not None:
        bad("give fn or op, not both (fn: a function of arrays; op: a volumetric operation)",
            "fn", "op")
    if a.get("fn_semaphores") is not None and op is not None:
        bad("fn_semaphores applies to fn only: with op, remove fn_semaphores (or give fn with "
            "fn_semaphores instead of op)", "fn_semaphores", "op")
    if fn is None and op is None:
        bad("give one of fn (a function of arrays) or op (a volumetric operation); neither "
            "was given", "fn", "op")

    if a.get("generate_ng_link") is True and a.get("verbose") is False:
        bad("generate_ng_link prints the link in the summary, which verbose: false turns off; "
            "set verbose: true or remove generate_ng_link", "generate_ng_link", "verbose")

    n = _levels_of(a)
    sizes = a.get("processing_chunk_sizes")
    if _known(sizes) and sizes is not None and not _is_nested(sizes):
        bad("processing_chunk_sizes is a list of levels, each [x, y, z] (top level first); "
            f"write [{list(sizes) if isinstance(sizes, (list, tuple)) else sizes}] for one level",
            "processing_chunk_sizes")
    if n is not None:
        for k in ("processing_crop_pads", "processing_blend_pads", "processing_blend_modes"):
            v = a.get(k)
            per = k == "processing_blend_modes" or _is_nested(v)  # modes: a list of str
            if per and isinstance(v, (list, tuple)) and len(v) != n:
                bad(f"{k} has {len(v)} entries but processing_chunk_sizes has {n} levels; give "
                    "one entry per level (top level first), or one value for all levels", k,
                    "processing_chunk_sizes")
    modes = a.get("processing_blend_modes")
    mode_list = list(modes) if isinstance(modes, (list, tuple)) else [modes]
    for m in mode_list:
        if isinstance(m, str) and m not in BLEND_MODES:
            bad(f"processing_blend_modes has {m!r}; expected one of {', '.join(BLEND_MODES)}",
                "processing_blend_modes")
    top_mode = mode_list[0] if mode_list else None
    if top_mode == "defer":
        if dst is None:
            bad('processing_blend_modes "defer" leaves the staged outputs for a later reduction '
                "into dst, and dst is null; give a dst or another blend mode",
                "processing_blend_modes", "dst")
        if skip:
            bad('processing_blend_modes "defer" stages the outputs, which skip_intermediaries '
                "forbids; remove one of them", "processing_blend_modes", "skip_intermediaries")
    for i, m in enumerate(mode_list[1:], start=1):
        if m == "defer":
            bad(f'processing_blend_modes[{i}] is "defer", which only the top level (index 0) '
                "may use; give linear, quadratic, bump or max for the lower levels",
                "processing_blend_modes")

    per_batch = a.get("processing_batch")
    if per_batch is not None and _known(per_batch):
        if not (_is_vector(per_batch) and len(per_batch) == 3 and all(
                isinstance(x, int) and x >= 1 for x in per_batch)):
            bad("processing_batch is how many top-level chunks one task runs along x, y, z: "
                f"three whole numbers of at least 1, got {per_batch!r}", "processing_batch")
        if _nonzero(a.get("processing_gap")):
            bad("processing_batch runs neighbouring top-level chunks together, and "
                "processing_gap spaces them apart; remove one of them", "processing_batch",
                "processing_gap")
        if top_mode == "defer":
            bad('processing_batch combines a batch\'s outputs, which processing_blend_modes '
                '"defer" leaves for a later reduction; remove one of them', "processing_batch",
                "processing_blend_modes")
    top_size = sizes[0] if _is_nested(sizes) else None
    red = a.get("max_reduction_chunk_size")
    if _is_vector(red) and _is_vector(top_size) and len(red) == len(top_size) and any(
            r < t for r, t in zip(red, top_size, strict=True)):
        bad(f"max_reduction_chunk_size {list(red)} must be at least the top-level "
            f"processing_chunk_sizes[0] {list(top_size)} in every axis; raise it",
            "max_reduction_chunk_size", "processing_chunk_sizes")
    elif _is_vector(red) and dst_info is not None and len(red) == 3 and any(
            r < c for r, c in zip(red, dst_info.chunk_size, strict=True)):
        bad(f"max_reduction_chunk_size {list(red)} must be at least the chunk size of dst at "
            f"dst_resolution, {list(dst_info.chunk_size)}, in every axis; raise it",
            "max_reduction_chunk_size")

    dirs = a.get("level_intermediaries_dirs")
    if skip:
        if a.get("reduction_worker_type") is not None:
            bad("reduction_worker_type is for reduction tasks, and skip_intermediaries: true "
                "has none; remove reduction_worker_type", "reduction_worker_type",
                "skip_intermediaries")
        if dirs is not None:
            bad("level_intermediaries_dirs was given with skip_intermediaries: true, which "
                "stages nothing; remove one of them", "level_intermediaries_dirs",
                "skip_intermediaries")
        blends = a.get("processing_blend_pads")
        if n is not None and any(_nonzero(b) for b in per_level(blends, n)):
            bad("processing_blend_pads must be [0, 0, 0] at every level when "
                "skip_intermediaries is true (blending needs staging); remove the blend pads or "
                "skip_intermediaries", "processing_blend_pads", "skip_intermediaries")
        crops = a.get("processing_crop_pads")
        if n is not None and any(_nonzero(c) for c in per_level(crops, n)[:-1]):
            bad("processing_crop_pads must be [0, 0, 0] at every level but the bottom one when "
                "skip_intermediaries is true; move the crop to the bottom level or remove "
                "skip_intermediaries", "processing_crop_pads", "skip_intermediaries")
    elif dirs is None:
        bad("level_intermediaries_dirs is required unless skip_intermediaries is true: give "
            "one directory per level for staging data (e.g. [\"tmp/\", \"tmp/\"])",
            "level_intermediaries_dirs", "skip_intermediaries")
    elif _known(dirs) and n is not None and (isinstance(dirs, str) or len(dirs) != n):
        count = 1 if isinstance(dirs, str) else len(dirs)
        bad(f"level_intermediaries_dirs has {count} entries but processing_chunk_sizes has {n} "
            "levels; give one directory per level", "level_intermediaries_dirs",
            "processing_chunk_sizes")

    auto_div = a.get("auto_divisibility") is True
    shrink = a.get("shrink_processing_chunk") is True
    expand_proc = a.get("expand_bbox_processing", True) is not False
    expand_backend = a.get("expand_bbox_backend") is True
    if auto_div and shrink:
        bad("auto_divisibility and shrink_processing_chunk cannot both be true; choose at most "
            "one", "auto_divisibility", "shrink_processing_chunk")
    if auto_div and not expand_proc:
        bad("auto_divisibility requires expand_bbox_processing: true", "auto_divisibility",
            "expand_bbox_processing")
    if auto_div and expand_backend:
        bad("auto_divisibility requires expand_bbox_backend: false (divisibility takes "
            "precedence over alignment with dst's chunks); choose one",
            "auto_divisibility", "expand_bbox_backend")
    if shrink and expand_proc:
        bad("shrink_processing_chunk and expand_bbox_processing cannot both be true (note "
            "expand_bbox_processing defaults to true): set expand_bbox_processing: false",
            "shrink_processing_chunk", "expand_bbox_processing")

    gap = a.get("processing_gap")
    if _nonzero(gap):
        if any(int(g) % 2 for g in gap):
            bad(f"processing_gap {list(gap)} must be even in every axis", "processing_gap")
        blends = a.get("processing_blend_pads")
        if n is not None and _nonzero(per_level(blends, n)[0]):
            bad("processing_blend_pads[0] (the top level) must be [0, 0, 0] with a nonzero "
                "processing_gap: gapped chunks do not overlap", "processing_blend_pads",
                "processing_gap")
        for name, on in (("auto_divisibility", auto_div), ("shrink_processing_chunk", shrink),
                         ("expand_bbox_backend", expand_backend),
                         ("expand_bbox_resolution", a.get("expand_bbox_resolution") is True)):
            if on:
                bad(f"{name} cannot be used with a nonzero processing_gap; remove one of them",
                    name, "processing_gap")

    op_args = a.get("op_args")
    if op_args and _known(op_args):
        bad("op_args is not supported: pass the operation's arguments by name in op_kwargs",
            "op_args")
    return out


def raise_problems(problems: Sequence[SubchunkableConfigError]) -> None:
    """Raise one error naming every problem (the first alone when there is one)."""
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    text = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, start=1))
    params = tuple(dict.fromkeys(x for p in problems for x in p.params))
    raise SubchunkableConfigError(f"{len(problems)} problems: {text}", params)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class DstInfo:
    """What planning needs of ``dst`` at the processing resolution."""

    chunk_size: IVec3
    voxel_offset: IVec3
    size: IVec3


@dataclass(frozen=True)
class Geometry:
    """The region to process, its levels and the gap between top-level chunks."""

    region: VolumetricIndex
    levels: tuple[Level, ...]
    gap: IVec3

    @property
    def stride(self) -> IVec3:
        return _add(self.levels[0].chunk, self.gap)

    def grid(self) -> IVec3:
        """The number of top-level chunks per axis."""
        s = self.stride
        g = [(n + p) // q for n, p, q in zip(self.region.shape, self.gap, s, strict=True)]
        return (g[0], g[1], g[2])


def _vec(value: Any, name: str, *, positive: bool = False) -> IVec3:
    try:
        v = ivec3(value, name)
    except ValueError as exc:
        raise SubchunkableConfigError(str(exc), (name.split("[")[0],)) from None
    if positive and any(x <= 0 for x in v):
        raise SubchunkableConfigError(f"{name} must be positive in every axis, got {list(v)}",
                                      (name.split("[")[0],))
    if not positive and any(x < 0 for x in v):
        raise SubchunkableConfigError(f"{name} must not be negative, got {list(v)}",
                                      (name.split("[")[0],))
    return v


def region_bbox(bbox: Any, start_coord: Any, end_coord: Any, coord_resolution: Any) -> BBox3D:
    """The region as a box (auto_bbox is resolved by the caller)."""
    if bbox is None:
        return BBox3D.from_coords(start_coord, end_coord, coord_resolution)
    if not isinstance(bbox, BBox3D):
        raise SubchunkableConfigError(f"bbox must be a BBox3D, got {type(bbox).__name__}",
                                      ("bbox",))
    return bbox


def _on_grid(bbox: BBox3D, res: Vec3) -> bool:
    try:
        VolumetricIndex(res, bbox)
    except ValueError:
        return False
    return True


def _pformat(v: Sequence[float]) -> str:
    return "[" + ", ".join(f"{x:g}" for x in v) + "]"


def auto_divisible(chunks: Sequence[IVec3], crops: Sequence[IVec3],
                   blends: Sequence[IVec3]) -> list[IVec3]:
    """zetta's auto_divisibility: keep the bottom chunk size and shrink every level above to
    the largest size whose padded box the level below tiles."""
    new = list(chunks)
    for i in range(len(chunks) - 1, 0, -1):
        pad = _scale(_add(crops[i - 1], blends[i - 1]), 2)
        region = _add(chunks[i - 1], pad)
        fit = [(r // c) * c for r, c in zip(region, new[i], strict=True)]
        new[i - 1] = _sub(fit, pad)
        if any(x <= 0 for x in new[i - 1]):
            raise SubchunkableConfigError(
                f"auto_divisibility found no size for level {i - 1}: processing_chunk_sizes[{i}] "
                f"= {list(new[i])} does not fit in processing_chunk_sizes[{i - 1}] plus its pads "
                f"({list(region)}); use a smaller chunk for level {i}",
                ("auto_divisibility", "processing_chunk_sizes"))
    return new


def plan(
    args: Mapping[str, Any], bbox: BBox3D, dst_info: DstInfo | None,
) -> Geometry:
    """The region and levels the parameters give over ``bbox`` (dst_info: dst's stored chunks
    at dst_resolution, when there is a dst). Raises :class:`SubchunkableConfigError`."""
    res = vec3(args["dst_resolution"], "dst_resolution")
    if any(r <= 0 for r in res):
        raise SubchunkableConfigError(f"dst_resolution must be positive, got {list(res)}",
                                      ("dst_resolution",))
    sizes = list(args["processing_chunk_sizes"])
    n = len(sizes)
    chunks = [_vec(s, f"processing_chunk_sizes[{i}]", positive=True) for i, s in enumerate(sizes)]
    crops = [_vec(c, f"processing_crop_pads[{i}]")
             for i, c in enumerate(per_level(args.get("processing_crop_pads", (0, 0, 0)), n))]
    blends = [_vec(b, f"processing_blend_pads[{i}]")
              for i, b in enumerate(per_level(args.get("processing_blend_pads", (0, 0, 0)), n))]
    given_modes = args.get("processing_blend_modes", "quadratic")
    modes = [str(m) for m in (list(given_modes) if isinstance(given_modes, (list, tuple))
                              else [given_modes] * n)]
    if len(modes) != n:
        raise SubchunkableConfigError(
            f"processing_blend_modes has {len(modes)} entries but processing_chunk_sizes has "
            f"{n} levels; give one mode per level (top level first), or one mode for all",
            ("processing_blend_modes", "processing_chunk_sizes"))
    gap = _vec(args.get("processing_gap") or (0, 0, 0), "processing_gap")

    if args.get("auto_divisibility") is True:
        chunks = auto_divisible(chunks, crops, blends)
    if args.get("expand_bbox_resolution") is True:
        bbox = bbox.snapped((0, 0, 0), res, "expand")
    if args.get("expand_bbox_backend") is True and dst_info is not None:
        off = [o * r for o, r in zip(dst_info.voxel_offset, res, strict=True)]
        size = [c * r for c, r in zip(dst_info.chunk_size, res, strict=True)]
        bbox = bbox.snapped(off, size, "expand")
    shrink = args.get("shrink_processing_chunk") is True
    expand = args.get("expand_bbox_processing", True) is not False
    if not _on_grid(bbox, res):
        which = ("shrink_processing_chunk" if shrink else
                 "expand_bbox_processing" if expand else None)
        needs = f"{which} needs the region to be integral in dst_resolution; " if which else ""
        raise SubchunkableConfigError(
            f"the region {bbox} is not on the voxel grid of dst_resolution {_pformat(res)} "
            f"(it spans {_pformat([s / r for s, r in zip(bbox.start, res, strict=True)])} to "
            f"{_pformat([e / r for e, r in zip(bbox.end, res, strict=True)])} voxels); "
            f"{needs}set expand_bbox_resolution: true to expand it to whole voxels",
            ("bbox", "expand_bbox_resolution") + ((which,) if which else ()))
    region = VolumetricIndex(res, bbox)
    if region.is_empty():
        raise SubchunkableConfigError(f"the region {bbox} is empty", ("bbox",))
    if shrink:
        chunks[0] = ivec3([min(s, c) for s, c in zip(region.shape, chunks[0], strict=True)])
        for i in range(1, n):
            chunks[i] = ivec3([min(p, c) for p, c in zip(chunks[i - 1], chunks[i], strict=True)])
    elif expand:
        top = chunks[0]
        grow = [(c - s) % (c + g) for c, s, g in zip(top, region.shape, gap, strict=True)]
        region = VolumetricIndex.from_voxels(region.start, _add(region.stop, grow), res)

    for i in range(n):
        if i == 0:
            parent, pgap, what = region.shape, gap, "the region's shape (at dst_resolution)"
        else:
            parent = _add(chunks[i - 1], _scale(_add(crops[i - 1], blends[i - 1]), 2))
            pgap = (0, 0, 0)
            what = (f"processing_chunk_sizes[{i - 1}] + 2 * (processing_crop_pads[{i - 1}] + "
                    f"processing_blend_pads[{i - 1}])")
        whole = _add(parent, pgap)
        step = _add(chunks[i], pgap)
        if any(w % s for w, s in zip(whole, step, strict=True)):
            counts = [max(1, round(w / s)) for w, s in zip(whole, step, strict=True)]
            if all(w % k == 0 for w, k in zip(whole, counts, strict=True)):
                rec = [w // k - g for w, k, g in zip(whole, counts, pgap, strict=True)]
                advice = f"use processing_chunk_sizes[{i}] = {rec}"
            else:
                advice = ("no chunk size fits evenly: try more divisible crop or blend pads for "
                          f"level {i - 1}" if i else "choose a chunk size that divides it")
            hint = ""
            if i == 0 and not expand:
                hint = " (or set expand_bbox_processing: true to grow the region)"
            elif i > 0 and args.get("auto_divisibility") is not True:
                hint = " (or set auto_divisibility: true)"
            gap_text = f" plus processing_gap {list(pgap)}" if any(pgap) else ""
            raise SubchunkableConfigError(
                f"{what} = {list(parent)}{gap_text} is not tiled exactly by "
                f"processing_chunk_sizes[{i}] = {list(chunks[i])}{gap_text}; {advice}{hint}",
                ("processing_chunk_sizes",))
        if any(2 * b > c for b, c in zip(blends[i], chunks[i], strict=True)):
            raise SubchunkableConfigError(
                f"processing_blend_pads[{i}] = {list(blends[i])} is more than half of "
                f"processing_chunk_sizes[{i}] = {list(chunks[i])}: use a blend pad of at most "
                f"{[c // 2 for c in chunks[i]]}", ("processing_blend_pads",))

    red = args.get("max_reduction_chunk_size")
    if red is not None and dst_info is not None:
        r = _vec(red, "max_reduction_chunk_size", positive=True)
        if any(x < c for x, c in zip(r, dst_info.chunk_size, strict=True)):
            raise SubchunkableConfigError(
                f"max_reduction_chunk_size {list(r)} must be at least the chunk size of dst at "
                f"dst_resolution, {list(dst_info.chunk_size)}, in every axis; raise it",
                ("max_reduction_chunk_size",))
    levels = tuple(Level(c, p, b, m) for c, p, b, m in zip(chunks, crops, blends, modes,
                                                          strict=True))
    return Geometry(region, levels, gap)


def chunk_count(geometry: Geometry) -> list[int]:
    """Chunks per level in the whole run (top first)."""
    counts = [math.prod(geometry.grid())]
    for i in range(1, len(geometry.levels)):
        parent = geometry.levels[i - 1].grown
        per = math.prod(p // c for p, c in zip(parent, geometry.levels[i].chunk, strict=True))
        counts.append(counts[-1] * per)
    return counts
