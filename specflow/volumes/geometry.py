"""Bounding boxes in physical units and voxel indices at a resolution.

A :class:`BBox3D` is a box in physical space (nanometres, say): it knows no voxels. A
:class:`VolumetricIndex` is a box *and* a resolution: the voxels of a volume at that
resolution that the box covers. Processing code works in indices; specs usually give boxes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from specflow.builder.registry import register

Vec3 = tuple[float, float, float]
IVec3 = tuple[int, int, int]

#: coordinates closer than this to an integer count as that integer when converting
#: physical positions to voxels (guards against float noise like 7.999999999)
_EPS = 1e-6


def vec3(value: Sequence[float] | float, name: str = "value") -> Vec3:
    """A 3-vector of floats from a sequence of three numbers (or one number for all)."""
    if isinstance(value, (int, float)):
        return (float(value), float(value), float(value))
    vals = list(value)
    if len(vals) != 3:
        raise ValueError(f"{name} needs 3 numbers (x, y, z), got {len(vals)}: {vals!r}")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{name} needs numbers, got {v!r} in {vals!r}")
    return (float(vals[0]), float(vals[1]), float(vals[2]))


def ivec3(value: Sequence[float] | float, name: str = "value") -> IVec3:
    """A 3-vector of ints; refuses values that are not whole numbers."""
    f = vec3(value, name)
    out = []
    for v in f:
        r = round(v)
        if abs(v - r) > _EPS:
            raise ValueError(f"{name} needs whole numbers of voxels, got {list(f)!r}")
        out.append(int(r))
    return (out[0], out[1], out[2])


def _positive(v: Vec3, name: str) -> Vec3:
    if any(x <= 0 for x in v):
        raise ValueError(f"{name} must be positive in every axis, got {list(v)!r}")
    return v


def _to_voxel(coord: float, res: float, name: str) -> int:
    v = coord / res
    r = round(v)
    if abs(v - r) > _EPS:
        raise ValueError(
            f"{name} {coord:g} is not on the voxel grid of resolution {res:g} "
            f"(it falls at voxel {v:g}); snap the box first"
        )
    return int(r)


@dataclass(frozen=True)
class BBox3D:
    """An axis-aligned box ``[start, end)`` in physical units."""

    start: Vec3
    end: Vec3

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", vec3(self.start, "start"))
        object.__setattr__(self, "end", vec3(self.end, "end"))
        if any(e < s for s, e in zip(self.start, self.end, strict=True)):
            raise ValueError(
                f"a box needs end >= start in every axis, got start={list(self.start)} "
                f"end={list(self.end)}"
            )

    @staticmethod
    def from_coords(
        start_coord: Sequence[float],
        end_coord: Sequence[float],
        resolution: Sequence[float] | float = (1, 1, 1),
    ) -> BBox3D:
        """The box from voxel coordinates ``start_coord``/``end_coord`` at ``resolution``."""
        res = _positive(vec3(resolution, "resolution"), "resolution")
        s = vec3(start_coord, "start_coord")
        e = vec3(end_coord, "end_coord")
        return BBox3D(
            (s[0] * res[0], s[1] * res[1], s[2] * res[2]),
            (e[0] * res[0], e[1] * res[1], e[2] * res[2]),
        )

    @property
    def size(self) -> Vec3:
        return (
            self.end[0] - self.start[0],
            self.end[1] - self.start[1],
            self.end[2] - self.start[2],
        )

    def is_empty(self) -> bool:
        return any(s <= 0 for s in self.size)

    def intersection(self, other: BBox3D) -> BBox3D:
        start = tuple(max(a, b) for a, b in zip(self.start, other.start, strict=True))
        end = tuple(min(a, b) for a, b in zip(self.end, other.end, strict=True))
        end = tuple(max(s, e) for s, e in zip(start, end, strict=True))
        return BBox3D(start, end)  # type: ignore[arg-type]

    def intersects(self, other: BBox3D) -> bool:
        return not self.intersection(other).is_empty()

    def contains(self, other: BBox3D) -> bool:
        return all(
            a <= b + _EPS and c + _EPS >= d
            for a, b, c, d in zip(self.start, other.start, self.end, other.end, strict=True)
        )

    def padded(self, pad: Sequence[float] | float, resolution: Sequence[float] | float = 1) -> BBox3D:
        """Grown by ``pad`` voxels of ``resolution`` on each side (shrunk when negative)."""
        p = vec3(pad, "pad")
        r = vec3(resolution, "resolution")
        return BBox3D(
            tuple(s - q * x for s, q, x in zip(self.start, p, r, strict=True)),  # type: ignore[arg-type]
            tuple(e + q * x for e, q, x in zip(self.end, p, r, strict=True)),  # type: ignore[arg-type]
        )

    def snapped(
        self,
        grid_offset: Sequence[float],
        grid_size: Sequence[float],
        mode: Literal["expand", "shrink", "round"] = "expand",
    ) -> BBox3D:
        """Snapped to the grid ``grid_offset + k * grid_size`` (physical units)."""
        off = vec3(grid_offset, "grid_offset")
        size = _positive(vec3(grid_size, "grid_size"), "grid_size")
        start: list[float] = []
        end: list[float] = []
        for s, e, o, g in zip(self.start, self.end, off, size, strict=True):
            a, b = (s - o) / g, (e - o) / g
            if mode == "expand":
                a, b = math.floor(a + _EPS), math.ceil(b - _EPS)
            elif mode == "shrink":
                a, b = math.ceil(a - _EPS), math.floor(b + _EPS)
            elif mode == "round":
                a, b = round(a), round(b)
            else:
                raise ValueError(f"snap mode must be expand, shrink or round, got {mode!r}")
            start.append(o + a * g)
            end.append(max(o + a * g, o + b * g))
        return BBox3D((start[0], start[1], start[2]), (end[0], end[1], end[2]))

    def translated(self, offset: Sequence[float], resolution: Sequence[float] | float = 1) -> BBox3D:
        o = vec3(offset, "offset")
        r = vec3(resolution, "resolution")
        d = tuple(a * b for a, b in zip(o, r, strict=True))
        return BBox3D(
            tuple(s + x for s, x in zip(self.start, d, strict=True)),  # type: ignore[arg-type]
            tuple(e + x for e, x in zip(self.end, d, strict=True)),  # type: ignore[arg-type]
        )

    def __specflow_id__(self) -> Any:
        return {"start": list(self.start), "end": list(self.end)}

    def __repr__(self) -> str:
        return f"BBox3D(start={list(self.start)}, end={list(self.end)})"


register("BBox3D.from_coords")(BBox3D.from_coords)


@register("BBox3D")
def build_bbox3d(start: list[float], end: list[float]) -> BBox3D:
    """A box from physical coordinates ``start``/``end``."""
    return BBox3D(vec3(start, "start"), vec3(end, "end"))


@dataclass(frozen=True)
class VolumetricIndex:
    """The voxels at ``resolution`` that ``bbox`` covers. The box must lie on the voxel grid
    of the resolution (build with :meth:`from_voxels`, or snap a box first)."""

    resolution: Vec3
    bbox: BBox3D

    def __post_init__(self) -> None:
        res = _positive(vec3(self.resolution, "resolution"), "resolution")
        object.__setattr__(self, "resolution", res)
        for s, e, r in zip(self.bbox.start, self.bbox.end, res, strict=True):
            _to_voxel(s, r, "box start")
            _to_voxel(e, r, "box end")

    @staticmethod
    def from_voxels(
        start: Sequence[int], stop: Sequence[int], resolution: Sequence[float]
    ) -> VolumetricIndex:
        return VolumetricIndex(vec3(resolution), BBox3D.from_coords(start, stop, resolution))

    @staticmethod
    def from_bbox(
        bbox: BBox3D,
        resolution: Sequence[float],
        mode: Literal["expand", "shrink", "round", "exact"] = "exact",
    ) -> VolumetricIndex:
        """The index of ``bbox`` at ``resolution``; ``mode`` other than ``exact`` snaps the box to
        the voxel grid first."""
        res = vec3(resolution, "resolution")
        if mode != "exact":
            bbox = bbox.snapped((0, 0, 0), res, mode)
        return VolumetricIndex(res, bbox)

    @property
    def start(self) -> IVec3:
        vox = self.__dict__.get("_voxels")
        if vox is not None:
            return vox[0]  # type: ignore[no-any-return]
        s = self.bbox.start
        r = self.resolution
        return (
            _to_voxel(s[0], r[0], "start"),
            _to_voxel(s[1], r[1], "start"),
            _to_voxel(s[2], r[2], "start"),
        )

    @property
    def stop(self) -> IVec3:
        vox = self.__dict__.get("_voxels")
        if vox is not None:
            return vox[1]  # type: ignore[no-any-return]
        e = self.bbox.end
        r = self.resolution
        return (
            _to_voxel(e[0], r[0], "end"),
            _to_voxel(e[1], r[1], "end"),
            _to_voxel(e[2], r[2], "end"),
        )

    @property
    def shape(self) -> IVec3:
        a, b = self.start, self.stop
        return (b[0] - a[0], b[1] - a[1], b[2] - a[2])

    @property
    def num_voxels(self) -> int:
        s = self.shape
        return s[0] * s[1] * s[2]

    def is_empty(self) -> bool:
        return any(s <= 0 for s in self.shape)

    def slices(self) -> tuple[slice, slice, slice]:
        a, b = self.start, self.stop
        return (slice(a[0], b[0]), slice(a[1], b[1]), slice(a[2], b[2]))

    def slices_in(self, outer: VolumetricIndex) -> tuple[slice, slice, slice]:
        """The slices of this index within an array covering ``outer``."""
        a, b, o = self.start, self.stop, outer.start
        return (slice(a[0] - o[0], b[0] - o[0]), slice(a[1] - o[1], b[1] - o[1]),
                slice(a[2] - o[2], b[2] - o[2]))

    def _new(self, start: Sequence[int], stop: Sequence[int]) -> VolumetricIndex:
        # whole voxels at this (checked) resolution: the same floats from_voxels computes,
        # without validating them again (chunk loops make millions of these)
        r = self.resolution
        s0, s1, s2 = start
        e0, e1, e2 = stop
        if not (type(s0) is type(s1) is type(s2) is type(e0) is type(e1) is type(e2) is int
                and e0 >= s0 and e1 >= s1 and e2 >= s2):
            return VolumetricIndex.from_voxels(start, stop, r)
        box = object.__new__(BBox3D)
        object.__setattr__(box, "start", (float(s0) * r[0], float(s1) * r[1], float(s2) * r[2]))
        object.__setattr__(box, "end", (float(e0) * r[0], float(e1) * r[1], float(e2) * r[2]))
        out = object.__new__(VolumetricIndex)
        object.__setattr__(out, "resolution", r)
        object.__setattr__(out, "bbox", box)
        object.__setattr__(out, "_voxels", ((s0, s1, s2), (e0, e1, e2)))
        return out

    def padded(self, pad: Sequence[int] | int) -> VolumetricIndex:
        """Grown by ``pad`` voxels on each side (negative shrinks)."""
        if type(pad) is tuple and len(pad) == 3 and type(pad[0]) is type(pad[1]) \
                is type(pad[2]) is int:
            p: IVec3 = pad  # already whole voxels (levels hold their pads so)
        else:
            p = ivec3(pad, "pad")
        a, b = self.start, self.stop
        return self._new(
            [x - q for x, q in zip(a, p, strict=True)], [x + q for x, q in zip(b, p, strict=True)]
        )

    def cropped(self, crop: Sequence[int] | int) -> VolumetricIndex:
        c = ivec3(crop, "crop")
        return self.padded((-c[0], -c[1], -c[2]))

    def translated(self, offset: Sequence[int]) -> VolumetricIndex:
        o = ivec3(offset, "offset")
        a, b = self.start, self.stop
        return self._new(
            [x + q for x, q in zip(a, o, strict=True)], [x + q for x, q in zip(b, o, strict=True)]
        )

    def intersection(self, other: VolumetricIndex) -> VolumetricIndex:
        other = other.at_resolution(self.resolution)
        a = [max(x, y) for x, y in zip(self.start, other.start, strict=True)]
        b = [min(x, y) for x, y in zip(self.stop, other.stop, strict=True)]
        b = [max(x, y) for x, y in zip(a, b, strict=True)]
        return self._new(a, b)

    def intersects(self, other: VolumetricIndex) -> bool:
        return not self.intersection(other).is_empty()

    def contains(self, other: VolumetricIndex) -> bool:
        return self.bbox.contains(other.bbox)

    def snapped(
        self,
        grid_offset: Sequence[int],
        grid_size: Sequence[int],
        mode: Literal["expand", "shrink"] = "expand",
    ) -> VolumetricIndex:
        """Snapped to the voxel grid ``grid_offset + k * grid_size``."""
        off = ivec3(grid_offset, "grid_offset")
        size = ivec3(grid_size, "grid_size")
        if any(g <= 0 for g in size):
            raise ValueError(f"grid_size must be positive, got {list(size)}")
        a, b = self.start, self.stop
        start: list[int] = []
        stop: list[int] = []
        for s, e, o, g in zip(a, b, off, size, strict=True):
            if mode == "expand":
                s2, e2 = o + ((s - o) // g) * g, o + -((o - e) // g) * g
            elif mode == "shrink":
                s2, e2 = o + -((o - s) // g) * g, o + ((e - o) // g) * g
            else:
                raise ValueError(f"snap mode must be expand or shrink, got {mode!r}")
            start.append(s2)
            stop.append(max(s2, e2))
        return self._new(start, stop)

    def is_aligned(self, grid_offset: Sequence[int], grid_size: Sequence[int]) -> bool:
        """Whether start lies on the grid (the stop may end mid-cell)."""
        off = ivec3(grid_offset)
        size = ivec3(grid_size)
        return all((s - o) % g == 0 for s, o, g in zip(self.start, off, size, strict=True))

    def at_resolution(self, resolution: Sequence[float]) -> VolumetricIndex:
        """The same box at another resolution (it must lie on that resolution's grid)."""
        if resolution is self.resolution:
            return self
        res = vec3(resolution, "resolution")
        if res == self.resolution:
            return self
        return VolumetricIndex(res, self.bbox)

    def split(
        self,
        chunk_size: Sequence[int],
        stride: Sequence[int] | None = None,
        offset: Sequence[int] | None = None,
        mode: Literal["exact", "clip"] = "clip",
    ) -> list[VolumetricIndex]:
        """Chunks of ``chunk_size`` laid every ``stride`` voxels (default: the chunk size),
        starting at ``start + offset``. With ``mode='clip'`` chunks reaching past the stop are
        clipped to it; with ``'exact'`` the index must be covered exactly."""
        return list(self.iter_chunks(chunk_size, stride, offset, mode))

    def iter_chunks(
        self,
        chunk_size: Sequence[int],
        stride: Sequence[int] | None = None,
        offset: Sequence[int] | None = None,
        mode: Literal["exact", "clip"] = "clip",
    ) -> Iterator[VolumetricIndex]:
        size = ivec3(chunk_size, "chunk_size")
        step = ivec3(stride, "stride") if stride is not None else size
        off = ivec3(offset, "offset") if offset is not None else (0, 0, 0)
        if any(x <= 0 for x in size) or any(x <= 0 for x in step):
            raise ValueError(
                f"chunk_size and stride must be positive, got {list(size)} and {list(step)}"
            )
        a, b = self.start, self.stop
        if mode == "exact":
            for ax in range(3):
                span = b[ax] - a[ax] - off[ax] - size[ax]
                if span < 0 or span % step[ax]:
                    raise ValueError(
                        f"an index of shape {list(self.shape)} is not tiled exactly by chunks of "
                        f"{list(size)} every {list(step)} from offset {list(off)} (axis {'xyz'[ax]})"
                    )
        axes: list[list[tuple[int, int]]] = []
        for ax in range(3):
            cells: list[tuple[int, int]] = []
            s = a[ax] + off[ax]
            while s < b[ax]:
                e = s + size[ax]
                if mode == "clip":
                    e = min(e, b[ax])
                elif e > b[ax]:
                    break
                cells.append((s, e))
                s += step[ax]
            axes.append(cells)
        for (x0, x1), (y0, y1), (z0, z1) in itertools.product(*axes):
            yield self._new((x0, y0, z0), (x1, y1, z1))

    def __specflow_id__(self) -> Any:
        # one string (floats by their shortest repr, the same on every machine): chunk tasks
        # hash an index each, so its canonical form is kept small
        (r0, r1, r2), (a0, a1, a2), (b0, b1, b2) = self.resolution, self.start, self.stop
        return f"{r0!r},{r1!r},{r2!r};{a0},{a1},{a2};{b0},{b1},{b2}"

    def __specflow_summary__(self) -> str:
        """One line for failure messages and reports (read back by ``specflow report``):
        ``x 0:64 y 0:64 z 0:32 @ 8x8x16 nm = [0:512, 0:512, 0:512] nm``."""
        (a0, a1, a2), (b0, b1, b2), (r0, r1, r2) = self.start, self.stop, self.resolution
        return (f"x {a0}:{b0} y {a1}:{b1} z {a2}:{b2} @ {r0:g}x{r1:g}x{r2:g} nm = "
                f"[{a0 * r0:g}:{b0 * r0:g}, {a1 * r1:g}:{b1 * r1:g}, {a2 * r2:g}:{b2 * r2:g}] nm")

    def __repr__(self) -> str:
        return (
            f"VolumetricIndex(res={list(self.resolution)}, start={list(self.start)}, "
            f"stop={list(self.stop)})"
        )


@register("VolumetricIndex")
def build_volumetric_index(
    resolution: list[float],
    bbox: BBox3D | None = None,
    start_coord: list[int] | None = None,
    end_coord: list[int] | None = None,
) -> VolumetricIndex:
    """An index from a box, or from voxel coordinates at ``resolution``."""
    if (bbox is None) == (start_coord is None or end_coord is None):
        raise ValueError("give either bbox, or both start_coord and end_coord")
    if bbox is None:
        assert start_coord is not None and end_coord is not None
        return VolumetricIndex.from_voxels(start_coord, end_coord, resolution)
    return VolumetricIndex.from_bbox(bbox, resolution)
