"""Layer processors with zetta_utils' names and meaning.

Data processors are functions of an array (C, X, Y, Z: channel first) named in a spec with
``"@mode": "partial"`` to bind their settings, e.g. ``{"@type": "divide", "@mode": "partial",
"value": 255.0}``; a layer applies its ``read_procs`` to what it read and its ``write_procs``
to what it is given, in order. Index processors (``VolumetricIndexTranslator``,
``VolumetricIndexPadder``, ``VolumetricIndexScaler``) map the index a layer is asked for to
the index it reads or writes (``index_procs``). Dictionaries of arrays are processed value by
value, as zetta does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from specflow.builder.registry import register
from specflow.volumes.geometry import BBox3D, VolumetricIndex, vec3

Array = npt.NDArray[Any]

#: the data processors this module registers (for the README and the corpus yardstick)
DATA_PROCESSORS = ("add", "multiply", "divide", "int_divide", "power", "abs", "compare",
                   "to_uint8", "to_float32", "to_int32", "squeeze", "unsqueeze", "rearrange",
                   "clamp", "crop")
MASK_PROCESSORS = ("coarsen", "coarsen_mask", "erode", "binary_closing", "filter_cc")
INDEX_PROCESSORS = ("VolumetricIndexTranslator", "VolumetricIndexPadder", "VolumetricIndexScaler")


def _dicts(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Apply ``fn`` to every value of a dict of arrays, like zetta's ``supports_dict``."""

    @functools.wraps(fn)
    def wrapper(data: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: fn(v, *args, **kwargs) for k, v in data.items()}
        return fn(np.asarray(data), *args, **kwargs)

    return wrapper


@register("add")
@_dicts
def add(data: Array, value: Any) -> Array:
    """``value + data``."""
    return np.asarray(value + data)


@register("multiply")
@_dicts
def multiply(data: Array, value: Any) -> Array:
    """``value * data``."""
    return np.asarray(value * data)


@register("divide")
@_dicts
def divide(data: Array, value: Any) -> Array:
    """``data / value`` (true division: integers become floats)."""
    return np.asarray(data / value)


@register("int_divide")
@_dicts
def int_divide(data: Array, value: Any) -> Array:
    """``data // value``."""
    return np.asarray(data // value)


@register("power")
@_dicts
def power(data: Array, value: Any) -> Array:
    """``data ** value``."""
    return np.asarray(data**value)


@register("abs")
@_dicts
def absolute(data: Array) -> Array:
    """``|data|``."""
    return np.abs(data)


CompareMode = Literal["eq", "==", "neq", "!=", "gt", ">", "gte", ">=", "lt", "<", "lte", "<="]
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": np.equal, "==": np.equal, "neq": np.not_equal, "!=": np.not_equal,
    "gt": np.greater, ">": np.greater, "gte": np.greater_equal, ">=": np.greater_equal,
    "lt": np.less, "<": np.less, "lte": np.less_equal, "<=": np.less_equal,
}


@register("compare")
@_dicts
def compare(data: Array, mode: CompareMode, value: float, binarize: bool = True,
            fill: float | None = None) -> Array:
    """``data <mode> value``: the boolean outcome (``binarize``), or ``data`` with the
    voxels that pass replaced by ``fill`` (``binarize: false``)."""
    if mode not in _COMPARE:
        raise ValueError(f"compare: unknown mode {mode!r}; expected one of {', '.join(_COMPARE)}")
    mask = _COMPARE[mode](data, value)
    if binarize:
        if fill is not None:
            raise ValueError("compare: fill must be None when binarize is true")
        return np.asarray(mask)
    if fill is None:
        raise ValueError("compare: give fill when binarize is false")
    out = np.array(data, copy=True)
    out[mask] = fill
    return out


@register("to_uint8")
@_dicts
def to_uint8(data: Array) -> Array:
    """``data`` as uint8 (a plain cast, like zetta's: no rounding or clipping)."""
    return data.astype(np.uint8)


@register("to_float32")
@_dicts
def to_float32(data: Array) -> Array:
    """``data`` as float32."""
    return data.astype(np.float32)


@register("to_int32")
@_dicts
def to_int32(data: Array) -> Array:
    """``data`` as int32."""
    return data.astype(np.int32)


@register("squeeze")
@_dicts
def squeeze(data: Array, dim: int | list[int] | None = None) -> Array:
    """``data`` without its axes of size 1 (only ``dim`` when given)."""
    return np.squeeze(data, axis=tuple(dim) if isinstance(dim, list) else dim)


@register("unsqueeze")
@_dicts
def unsqueeze(data: Array, dim: int | list[int] = 0) -> Array:
    """``data`` with new axes of size 1 at ``dim``."""
    return np.expand_dims(data, tuple(dim) if isinstance(dim, list) else dim)


@register("clamp")
@_dicts
def clamp(data: Array, low: float | None = None, high: float | None = None) -> Array:
    """``data`` limited to ``[low, high]``."""
    return np.clip(data, low, high)


@register("crop")
@_dicts
def crop(data: Array, crop: list[int]) -> Array:  # noqa: A002 - zetta's name
    """``data`` without ``crop`` voxels on both sides of its last ``len(crop)`` axes."""
    sl = [slice(None)] * (data.ndim - len(crop))
    sl += [slice(c, data.shape[data.ndim - len(crop) + i] - c) for i, c in enumerate(crop)]
    return data[tuple(sl)]


# --------------------------------------------------------------------------- rearrange

_TOKEN = re.compile(r"\(|\)|\.\.\.|[A-Za-z_][A-Za-z0-9_]*|\d+")


def _parse_side(text: str) -> list[list[str]]:
    groups: list[list[str]] = []
    current: list[str] | None = None
    pos = 0
    for m in _TOKEN.finditer(text):
        if text[pos:m.start()].strip():
            raise ValueError(f"rearrange: cannot read {text[pos:m.start()].strip()!r}")
        pos = m.end()
        tok = m.group()
        if tok == "(":
            if current is not None:
                raise ValueError("rearrange: nested parentheses")
            current = []
        elif tok == ")":
            if current is None:
                raise ValueError("rearrange: unbalanced ')'")
            groups.append(current)
            current = None
        elif current is not None:
            current.append(tok)
        else:
            groups.append([tok])
    if text[pos:].strip() or current is not None:
        raise ValueError(f"rearrange: cannot read the pattern side {text!r}")
    return groups


def _is_unit(name: str) -> bool:
    return name.isdigit()


@register("rearrange")
@_dicts
def rearrange(data: Array, pattern: str, **axes_lengths: int) -> Array:
    """einops' ``rearrange``: ``"c x y 1 -> c x y"``, ``"c x y z -> z c x y"``,
    ``"(b c) x -> b c x"`` with ``b`` given, ``...`` for the remaining axes."""
    if "->" not in pattern:
        raise ValueError(f"rearrange: pattern {pattern!r} has no '->'")
    left_text, right_text = pattern.split("->", 1)
    left, right = _parse_side(left_text), _parse_side(right_text)
    ell = sum(g == ["..."] for g in left)
    if ell > 1 or any("..." in g and g != ["..."] for g in left):
        raise ValueError("rearrange: '...' may stand alone once on the left")
    n_ell = data.ndim - (len(left) - ell)
    if n_ell < 0 or (not ell and n_ell != 0):
        raise ValueError(f"rearrange: pattern {pattern!r} expects {len(left)} axes, the data "
                         f"has {data.ndim} ({list(data.shape)})")
    sizes: dict[str, int] = {}
    elementary: list[str] = []
    shape: list[int] = []
    dim = 0
    for group in left:
        if group == ["..."]:
            for i in range(n_ell):
                name = f"...{i}"
                sizes[name] = int(data.shape[dim])
                elementary.append(name)
                shape.append(sizes[name])
                dim += 1
            continue
        total = int(data.shape[dim])
        dim += 1
        unknown = [n for n in group if not _is_unit(n) and n not in axes_lengths]
        known = int(np.prod([int(n) if _is_unit(n) else axes_lengths[n] for n in group
                             if n not in unknown]))
        if len(unknown) > 1:
            raise ValueError(f"rearrange: give the lengths of {', '.join(unknown[1:])}")
        if unknown:
            if known == 0 or total % known:
                raise ValueError(f"rearrange: axis of length {total} cannot be split as {group}")
            sizes[unknown[0]] = total // known
        elif known != total:
            raise ValueError(f"rearrange: axis {group} has length {total}, expected {known}")
        for n in group:
            if _is_unit(n):
                continue
            sizes.setdefault(n, axes_lengths.get(n, total))
            if n in elementary:
                raise ValueError(f"rearrange: axis {n!r} appears twice on the left")
            elementary.append(n)
            shape.append(sizes[n])
    arr = data.reshape(shape)
    order: list[str] = []
    out_shape: list[int] = []
    for group in right:
        if group == ["..."]:
            names = [f"...{i}" for i in range(n_ell)]
            order += names
            out_shape += [sizes[n] for n in names]
            continue
        length = 1
        for n in group:
            if _is_unit(n):
                if int(n) != 1:
                    raise ValueError(f"rearrange: only 1 may stand for an axis, not {n}")
                continue
            if n not in sizes:
                raise ValueError(f"rearrange: axis {n!r} is on the right but not the left")
            order.append(n)
            length *= sizes[n]
        out_shape.append(length)
    if sorted(order) != sorted(elementary):
        missing = sorted(set(elementary) - set(order))
        raise ValueError(f"rearrange: axes {missing} are on the left only (rearrange keeps every "
                         "axis; an axis of length 1 may be dropped by writing it as 1)")
    arr = arr.transpose([elementary.index(n) for n in order])
    return arr.reshape(out_shape)


# --------------------------------------------------------------------------- index processors


@register("VolumetricIndexTranslator")
@dataclass(frozen=True)
class VolumetricIndexTranslator:
    """Moves the index by ``offset`` voxels of ``resolution``."""

    offset: Sequence[float]
    resolution: Sequence[float]
    allow_slice_rounding: bool = False

    def __call__(self, idx: VolumetricIndex) -> VolumetricIndex:
        box = idx.bbox.translated(vec3(self.offset, "offset"), vec3(self.resolution, "resolution"))
        return VolumetricIndex(idx.resolution, box)

    def __specflow_id__(self) -> Any:
        return {"offset": list(self.offset), "resolution": list(self.resolution)}


@register("VolumetricIndexPadder")
@dataclass(frozen=True)
class VolumetricIndexPadder:
    """Grows the index by ``pad`` voxels (of its own resolution) on every side."""

    pad: Sequence[int]

    def __call__(self, idx: VolumetricIndex) -> VolumetricIndex:
        return idx.padded([int(p) for p in self.pad])

    def __specflow_id__(self) -> Any:
        return {"pad": list(self.pad)}


@register("VolumetricIndexScaler")
@dataclass(frozen=True)
class VolumetricIndexScaler:
    """The same box at the resolution multiplied by ``res_change_mult``."""

    res_change_mult: Sequence[float]
    allow_slice_rounding: bool = False

    def __call__(self, idx: VolumetricIndex) -> VolumetricIndex:
        res = [r * m for r, m in zip(idx.resolution, self.res_change_mult, strict=True)]
        return VolumetricIndex(vec3(res), BBox3D(idx.bbox.start, idx.bbox.end))

    def __specflow_id__(self) -> Any:
        return {"res_change_mult": list(self.res_change_mult)}


# --------------------------------------------------------------------------- masks


def _skip_empty(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Return data that is all zero unchanged, as zetta's mask operations do."""

    @functools.wraps(fn)
    def wrapper(data: Array, *args: Any, **kwargs: Any) -> Any:
        if not np.any(data):
            return data
        return fn(data, *args, **kwargs)

    return wrapper


def _slices_2d(data: Array, what: str) -> Array:
    if data.ndim != 4 or data.shape[0] != 1:
        raise ValueError(f"{what} takes one-channel (C, X, Y, Z) data, got shape "
                         f"{list(data.shape)}")
    return data


def _ndimage() -> Any:
    try:
        from scipy import ndimage
    except ImportError:
        raise RuntimeError(
            "zetta's mask processors (coarsen, erode, binary_closing, filter_cc) need scipy: "
            "pip install 'specflow[zetta]'"
        ) from None
    return ndimage


def _coarsen(data: Array, width: int, thr: float) -> Array:
    ndimage = _ndimage()

    _slices_2d(data, "coarsen")
    out = data.astype(np.float32)
    kernel = np.ones((3, 3), dtype=np.float32)
    for _ in range(width):
        for z in range(out.shape[3]):
            summed = ndimage.correlate(out[0, :, :, z], kernel, mode="constant", cval=0.0)
            out[0, :, :, z] = (summed >= thr).astype(np.float32)
    return (out > 0).astype(data.dtype)


@register("coarsen")
@_dicts
@_skip_empty
def coarsen(data: Array, width: int = 1, thr: int = 3) -> Array:
    """Grow a mask, slice by slice: ``width`` times, a voxel is set when at least ``thr``
    voxels of its 3 x 3 neighbourhood (itself included) are."""
    return _coarsen(data, width, thr)


@register("coarsen_mask")
@_dicts
@_skip_empty
def coarsen_mask(data: Array, width: int = 1, thr: int = 1) -> Array:
    """``coarsen`` with zetta's earlier default threshold of 1 (any neighbour)."""
    return _coarsen(data, width, thr)


@register("erode")
@_dicts
@_skip_empty
def erode(data: Array, width: int = 1, thr: int = 3) -> Array:
    """Shrink a mask: the complement of ``coarsen`` of the complement (a boolean mask)."""
    return np.asarray(_coarsen(data == 0, width, thr) == 0)


@register("binary_closing")
@_dicts
@_skip_empty
def binary_closing(data: Array, width: int | None = None,
                   iterations: int | None = None) -> Array:
    """Binary closing of a one-slice mask (``width`` or ``iterations`` times), without
    eroding the borders; a boolean mask."""
    ndimage = _ndimage()
    n = int(width if width is not None else iterations if iterations is not None else 1)
    if data.ndim == 4:
        if data.shape[0] != 1 or data.shape[3] != 1:
            raise ValueError(f"binary_closing takes (1, X, Y, 1) data, got {list(data.shape)}")
        plane = data[0, :, :, 0]
    else:
        plane = data
    mask = plane.astype(bool)
    closed: Array = np.asarray(ndimage.binary_closing(mask, iterations=n))
    closed[..., :n, :] |= mask[..., :n, :]
    closed[..., -n:, :] |= mask[..., -n:, :]
    closed[..., :, :n] |= mask[..., :, :n]
    closed[..., :, -n:] |= mask[..., :, -n:]
    out: Array = closed[None, :, :, None] if data.ndim == 4 else closed
    return out


@register("filter_cc")
@_dicts
@_skip_empty
def filter_cc(data: Array, mode: Literal["keep_large", "keep_small"] = "keep_small",
              thr: int = 100) -> Array:
    """Keep, slice by slice, the connected components (8-connected, of non-zero voxels) of
    more than ``thr`` voxels (``keep_large``) or of at most ``thr`` (``keep_small``)."""
    ndimage = _ndimage()
    if mode not in ("keep_large", "keep_small"):
        raise ValueError(f"filter_cc: mode must be keep_large or keep_small, not {mode!r}")
    _slices_2d(data, "filter_cc")
    out = np.zeros_like(data)
    structure = np.ones((3, 3), dtype=bool)
    for z in range(data.shape[3]):
        plane = data[0, :, :, z]
        if not np.any(plane):
            continue
        labels, _ = ndimage.label(plane != 0, structure=structure)
        counts = np.bincount(labels.ravel())
        keep = counts > thr if mode == "keep_large" else counts <= thr
        keep[0] = False
        kept = keep[labels]
        out[0, :, :, z] = np.where(kept, plane, 0)
    return out


@register("apply_mask_fn")
@register("apply_mask")
def apply_mask_fn(src: Array, masks: Sequence[Array], fill_value: float = 0) -> Array:
    """``src`` with ``fill_value`` wherever any of ``masks`` is positive."""
    out = np.array(src, copy=True)
    for mask in masks:
        out[np.asarray(mask) > 0] = fill_value
    return out.astype(np.asarray(src).dtype)
