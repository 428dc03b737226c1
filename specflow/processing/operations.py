"""Volumetric operations: what the subchunkable flow applies to each chunk.

Two kinds are accepted:

* ``fn``: a function of numpy arrays. Every keyword argument of ``op_kwargs`` that is a layer
  is read over the chunk (with its pads) and passed as a (C, X, Y, Z) array; other values pass
  as they are. The function returns an array of the same X, Y, Z shape. Register it with
  :func:`specflow.register` and name it in a spec with ``"@mode": "partial"`` to bind its
  settings, e.g. ``{"@type": "threshold", "@mode": "partial", "value": 0.5}``.
* ``op``: a :class:`VolumetricOperation`, which is given the index and reads what it needs
  itself: it may read more context (its own ``crop_pad``), or read at another resolution
  (:class:`DownsampleOp`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from specflow.builder.registry import register
from specflow.volumes.geometry import IVec3, Vec3, VolumetricIndex, ivec3, vec3
from specflow.volumes.layers import TSLayer
from specflow.volumes.resample import MODES, downsample

Array = npt.NDArray[Any]


def is_layer(value: Any) -> bool:
    return isinstance(value, TSLayer)


def read_inputs(idx: VolumetricIndex, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with every layer (and every list of layers, e.g. zetta's ``masks``)
    replaced by its data over ``idx`` (reads run together)."""
    pending = {k: v.read_async(idx) for k, v in kwargs.items() if is_layer(v)}
    lists = {k: [x.read_async(idx) for x in v] for k, v in kwargs.items()
             if isinstance(v, (list, tuple)) and v and all(is_layer(x) for x in v)}
    out = {k: v for k, v in kwargs.items() if k not in pending and k not in lists}
    out.update({k: r.result() for k, r in pending.items()})
    out.update({k: [r.result() for r in rs] for k, rs in lists.items()})
    return out


def as_cxyz(arr: Any, shape: IVec3, what: str) -> Array:
    """``arr`` as a (C, X, Y, Z) array of spatial ``shape``; refuses anything else."""
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or tuple(a.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{what} returned an array of shape {list(a.shape)}; expected (C, X, Y, Z) with "
            f"X, Y, Z = {list(shape)}"
        )
    return a


def crop_pad(data: Array, pad: IVec3) -> Array:
    """``data`` (C, X, Y, Z) without ``pad`` voxels on each side of every spatial axis."""
    if pad == (0, 0, 0):
        return data
    x, y, z = pad
    return data[:, x:data.shape[1] - x, y:data.shape[2] - y, z:data.shape[3] - z]


class VolumetricOperation:
    """Base of operations that read their own inputs.

    Subclasses implement :meth:`process` (arrays in, array out) and may set ``crop_pad``: the
    context, in voxels of the output resolution, that they need around the index they are
    asked for. Inputs are read over the index grown by ``crop_pad`` at
    :meth:`input_resolution`; the result is cropped back to the index. Override
    :meth:`__call__` instead for full control: it gets the index and ``op_kwargs`` (layers
    unread) and returns a (C, X, Y, Z) array covering exactly that index.
    """

    crop_pad: IVec3 = (0, 0, 0)

    def input_resolution(self, dst_resolution: Vec3) -> Vec3:
        return dst_resolution

    def process(self, **kwargs: Any) -> Array:
        raise NotImplementedError(f"{type(self).__name__} must implement process() or __call__")

    def __call__(self, idx: VolumetricIndex, **kwargs: Any) -> Array:
        pad = ivec3(self.crop_pad, "crop_pad")
        src_idx = idx.padded(pad)
        res = self.input_resolution(idx.resolution)
        if res != idx.resolution:
            src_idx = src_idx.at_resolution(res)
        out = np.asarray(self.process(**read_inputs(src_idx, kwargs)))
        if out.ndim == 3:
            out = out[None]
        grown = tuple(s + 2 * p for s, p in zip(idx.shape, pad, strict=True))
        if tuple(out.shape[1:]) == grown:
            out = crop_pad(out, pad)
        return as_cxyz(out, idx.shape, type(self).__name__)

    def __specflow_id__(self) -> Any:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class FnOperation(VolumetricOperation):
    """Applies a function of arrays; its output keeps the input's X, Y, Z shape (a function
    that returns None writes nothing). ``semaphores`` are held while it runs (the flow holds
    ``cpu`` when there are none)."""

    def __init__(self, fn: Callable[..., Any],
                 semaphores: Sequence[str] | None = None) -> None:
        self.fn = fn
        self.semaphores = tuple(semaphores) if semaphores is not None else None

    def __call__(self, idx: VolumetricIndex, **kwargs: Any) -> Array | None:  # type: ignore[override]
        out = self.fn(**read_inputs(idx, kwargs))
        if out is None:
            return None
        return as_cxyz(out, idx.shape, getattr(self.fn, "__name__", None) or repr(self.fn))

    def __specflow_id__(self) -> Any:
        if self.semaphores is None:
            return {"fn": self.fn}
        return {"fn": self.fn, "semaphores": list(self.semaphores)}


# --------------------------------------------------------------------------- array functions


@register("copy")
def copy(src: Array) -> Array:
    """The input as it is."""
    return src


@register("threshold")
@register("binarize")
def threshold(
    src: Array, value: float = 0.5, above: float = 1, below: float = 0, dtype: str = "uint8"
) -> Array:
    """``above`` where ``src > value``, ``below`` elsewhere, as ``dtype``."""
    return np.where(src > value, above, below).astype(dtype)


@register("invert")
def invert(src: Array, max_value: float | None = None) -> Array:
    """``max_value - src``; ``max_value`` defaults to the dtype's maximum for integers and
    1.0 for floats."""
    if max_value is None:
        if np.issubdtype(src.dtype, np.integer):
            return (np.iinfo(src.dtype).max - src).astype(src.dtype)
        max_value = 1.0
    return (max_value - src).astype(src.dtype)


@register("affine_intensity")
def affine_intensity(src: Array, a: float = 1.0, b: float = 0.0, dtype: str | None = None) -> Array:
    """``a * src + b`` (in float32, or as ``dtype``)."""
    out = src.astype(np.float32) * np.float32(a) + np.float32(b)
    return out.astype(dtype) if dtype else out


def _radius3(radius: Sequence[int] | int) -> IVec3:
    return ivec3(radius, "radius")


# The working set of one slab of a separable filter: what a core's cache holds. A block is
# filtered in slabs of X planes (each with its context of ``r`` planes either side), so that a
# block of 144^3 or 272^3 runs about as fast per voxel as one of 64^3 instead of streaming
# each of its passes (a copy and two adds per distance, per axis) through main memory.
SLAB_BYTES = 1 << 20
MIN_SLAB_PLANES = 4


def _axis_pass(a: Array, lo: int, hi: int, axis: int, r: int,
               kernel: npt.NDArray[np.float64] | None) -> Array:
    """One axis of a separable filter, for the output range ``[lo, hi)`` of ``a`` along
    ``axis``: the centre term, then for each distance ``k`` the neighbour below and the one
    above (terms outside ``a`` are zero, so they are skipped). ``kernel`` is None for a box sum.

    Each voxel's terms are added in this order wherever the voxel sits, so a voxel whose
    neighbours are all in ``a`` gets the same float32 result in a slab, a chunk or the whole
    volume.
    """
    n, m = a.shape[axis], hi - lo

    def along(start: int, stop: int) -> tuple[slice, ...]:
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, stop)
        return tuple(index)

    if kernel is None:
        res = np.array(a[along(lo, hi)], copy=True)
        scratch = None
    else:
        res = a[along(lo, hi)] * np.float32(kernel[r])
        scratch = np.empty_like(res)
    for k in range(1, min(r, n - 1) + 1):
        for j0, j1, shift in ((max(0, k - lo), m, -k), (0, min(m, n - lo - k), k)):
            if j1 <= j0:
                continue
            terms = a[along(lo + j0 + shift, lo + j1 + shift)]
            target = res[along(j0, j1)]
            if kernel is None:
                np.add(target, terms, out=target)
            else:
                assert scratch is not None
                buf = scratch[along(j0, j1)]
                np.multiply(terms, np.float32(kernel[r + k]), out=buf)
                np.add(target, buf, out=target)
    return res


def _separable(src: Array, kernels: Sequence[npt.NDArray[np.float64]] | None,
               radius: IVec3 | None = None) -> Array:
    """Convolve the X, Y, Z axes of ``src`` with symmetric 1-D kernels (or, with ``radius``,
    box means), zeros outside; in float32, returned as ``src``'s dtype if it is a float.

    The block is filtered in slabs of X planes (:data:`SLAB_BYTES`); every voxel's terms are
    added in the same order (X, then Y, then Z; along each, the centre, then the neighbours at
    distance 1, 2, ...) whatever the slab, the chunk or the block, so a chunk with enough
    context gives bit-identical results to the whole volume.
    """
    out_dtype = src.dtype if np.issubdtype(src.dtype, np.floating) else np.dtype(np.float32)
    if kernels is not None:
        radii = [(len(k) - 1) // 2 for k in kernels]
        per_axis: list[npt.NDArray[np.float64] | None] = list(kernels)
    else:
        assert radius is not None
        radii, per_axis = list(radius), [None, None, None]
    scale = None if kernels is not None else np.float32(
        1.0 / ((2 * radii[0] + 1) * (2 * radii[1] + 1) * (2 * radii[2] + 1)))
    x_size = src.shape[1]

    def slab(x0: int, x1: int) -> Array:
        """Planes [x0, x1) filtered, read with their context."""
        a, b = max(0, x0 - radii[0]), min(x_size, x1 + radii[0])
        acc = src[:, a:b].astype(np.float32, copy=False)
        acc = _axis_pass(acc, x0 - a, x1 - a, 1, radii[0], per_axis[0])
        for axis in (2, 3):
            acc = _axis_pass(acc, 0, acc.shape[axis], axis, radii[axis - 1], per_axis[axis - 1])
        if scale is not None:
            acc *= scale
        return acc

    step = max(MIN_SLAB_PLANES, SLAB_BYTES // max(1, src[:, :1].size * 4))
    if 2 * step > x_size:  # the block in one slab
        return slab(0, x_size).astype(out_dtype, copy=False)
    out = np.empty(src.shape, out_dtype)
    for x0 in range(0, x_size, step):
        out[:, x0:min(x_size, x0 + step)] = slab(x0, min(x_size, x0 + step))
    return out


@register("mean_filter")
def mean_filter(src: Array, radius: list[int] | int = 1) -> Array:
    """The mean over a box of ``2 * radius + 1`` voxels per axis (zeros outside the array):
    process with crop pads of at least ``radius``."""
    return _separable(src, None, _radius3(radius))


def gaussian_kernel(sigma: float, truncate: float = 3.0) -> npt.NDArray[np.float64]:
    if sigma <= 0:
        return np.ones(1)
    r = max(1, int(math.ceil(truncate * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    out: npt.NDArray[np.float64] = k / k.sum()
    return out


@register("gaussian_filter")
def gaussian_filter(src: Array, sigma: list[float] | float = 1.0, truncate: float = 3.0) -> Array:
    """A separable Gaussian blur (zeros outside the array); its radius per axis is
    ``ceil(truncate * sigma)``, which the crop pads should cover."""
    s = vec3(sigma, "sigma")
    return _separable(src, [gaussian_kernel(x, truncate) for x in s])


def gaussian_radius(sigma: Sequence[float] | float, truncate: float = 3.0) -> IVec3:
    """The context a :func:`gaussian_filter` needs, per axis."""
    s = vec3(sigma, "sigma")
    r = [0 if x <= 0 else max(1, int(math.ceil(truncate * x))) for x in s]
    return (r[0], r[1], r[2])


# --------------------------------------------------------------------------- operations


@register("DownsampleOp")
@register("downsample")
class DownsampleOp(VolumetricOperation):
    """Reads ``src`` at ``dst_resolution / factor`` and shrinks it by ``factor``:
    ``average`` for images, ``mode`` for segmentation, ``max`` or ``nearest``."""

    def __init__(self, factor: list[int] | int = 2, mode: str = "average") -> None:
        if mode not in MODES:
            raise ValueError(f"downsample mode must be one of {', '.join(MODES)}, got {mode!r}")
        f = ivec3(factor, "factor")
        if any(x < 1 for x in f):
            raise ValueError(f"downsample factor must be >= 1 per axis, got {list(f)}")
        self.factor = f
        self.mode = mode

    def input_resolution(self, dst_resolution: Vec3) -> Vec3:
        return (
            dst_resolution[0] / self.factor[0],
            dst_resolution[1] / self.factor[1],
            dst_resolution[2] / self.factor[2],
        )

    def __call__(self, idx: VolumetricIndex, **kwargs: Any) -> Array:
        src_idx = idx.at_resolution(self.input_resolution(idx.resolution))
        data = read_inputs(src_idx, kwargs)
        if "src" not in data:
            raise ValueError("DownsampleOp needs a layer named src in op_kwargs")
        return as_cxyz(downsample(data["src"], self.factor, self.mode), idx.shape, "downsample")


def _hash_noise(x: Array, y: Array, z: Array, seed: int) -> Array:
    """Uniform noise in [0, 1) from integer coordinates: the same voxel always gets the same
    value, wherever the chunk that computes it lies."""
    h = (x.astype(np.uint64) * np.uint64(0x9E3779B1)) ^ (y.astype(np.uint64) * np.uint64(0x85EBCA77))
    h ^= z.astype(np.uint64) * np.uint64(0xC2B2AE3D) + np.uint64(seed & 0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    h *= np.uint64(0x2C1B3C6D)
    h ^= h >> np.uint64(12)
    h *= np.uint64(0x297A2D39)
    h ^= h >> np.uint64(15)
    out: Array = (h & np.uint64(0xFFFFFF)).astype(np.float32) / np.float32(0x1000000)
    return out


@register("SyntheticVolumeOp")
@register("synthetic_volume_op")
class SyntheticVolumeOp(VolumetricOperation):
    """A deterministic test volume: smooth blobs (a sum of sines of the voxel coordinates)
    plus a little hashed noise, scaled to ``[0, scale]``. Values depend only on the absolute
    voxel position and the seed, so any chunking writes the same volume."""

    def __init__(
        self, seed: int = 0, period: list[float] | float = 24.0, noise: float = 0.1,
        scale: float = 1.0, dtype: str = "float32",
    ) -> None:
        self.seed = int(seed)
        self.period = vec3(period, "period")
        self.noise = float(noise)
        self.scale = float(scale)
        self.dtype = dtype

    def __call__(self, idx: VolumetricIndex, **kwargs: Any) -> Array:
        a, b = idx.start, idx.stop
        x, y, z = np.meshgrid(np.arange(a[0], b[0]), np.arange(a[1], b[1]),
                              np.arange(a[2], b[2]), indexing="ij")
        rng = np.random.default_rng(self.seed)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        px, py, pz = (2 * np.pi / p for p in self.period)
        smooth = (np.sin(x * px + phase[0]) + np.sin(y * py + phase[1])
                  + np.sin(z * pz + phase[2]) + np.sin((x + y + z) * (px + py + pz) / 5)) / 8 + 0.5
        value = (1 - self.noise) * smooth + self.noise * _hash_noise(x, y, z, self.seed)
        value = np.clip(value, 0.0, 1.0) * self.scale
        target = np.dtype(self.dtype)
        if np.issubdtype(target, np.integer):
            value = np.rint(value)
        out: Array = value.astype(target)[None]
        return out


def as_operation(fn: Any = None, op: Any = None) -> VolumetricOperation | Callable[..., Array]:
    """The operation a flow applies: ``op`` as it is, or ``fn`` wrapped."""
    if (fn is None) == (op is None):
        raise ValueError("give exactly one of fn (a function of arrays) or op (an operation)")
    if op is not None:
        if not callable(op):
            raise ValueError(f"op must be a VolumetricOperation (callable), got {type(op).__name__}")
        return op  # type: ignore[no-any-return]
    if not callable(fn):
        raise ValueError(f"fn must be a function, got {type(fn).__name__}")
    if isinstance(fn, VolumetricOperation):
        raise ValueError(f"{type(fn).__name__} is an operation: pass it as op, not fn")
    return FnOperation(fn)
