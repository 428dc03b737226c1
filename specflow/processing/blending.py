"""Blending weights and the in-memory combination of overlapping chunk outputs.

Neighbouring chunks padded by a blend pad ``b`` overlap over ``2 * b`` voxels per axis. In
that band one chunk's weight rises from 0 to 1 while its neighbour's falls from 1 to 0, so
the weights of all contributions to a voxel sum to one (per axis, and so for their product
in 3-D). A side with no neighbour keeps weight 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from specflow.volumes.geometry import VolumetricIndex
from specflow.volumes.layers import cast_for_layer

Array = npt.NDArray[Any]

BLEND_MODES = ("linear", "quadratic", "bump", "max", "defer")
WEIGHTED = ("linear", "quadratic", "bump")


def rising(n: int, mode: str, length: int | None = None) -> npt.NDArray[np.float64]:
    """Weights rising from 0 to 1 over the ``n = 2 * blend`` voxels where two outputs overlap
    (zetta's curves, so blended results match it): ``linear`` is ``k / (n + 1)``;
    ``quadratic`` two parabolas meeting at the middle; ``bump`` the ratio of the bump
    functions of the two overlapping outputs, each ``length`` voxels long."""
    k = np.arange(1, n + 1, dtype=np.float64)
    if mode == "linear":
        out: npt.NDArray[np.float64] = k / (n + 1)
        return out
    if mode == "quadratic":
        half = n / 2 + 0.5
        x = k / half
        out = np.where(k <= n // 2, x * x / 2, 1 - (2 - x) ** 2 / 2)
        return out
    if mode == "bump":
        size = length if length is not None else 2 * n
        t = (np.arange(size, dtype=np.float64) + 1.0) / (size + 1.0) * 2.0 - 1.0
        bump = np.exp(-1.0 / (1.0 - t * t))
        stride = size - n
        here = bump[:n]
        there = np.array([bump[i + stride] if i + stride < size else 0.0 for i in range(n)])
        out = here / (here + there)
        return out
    raise ValueError(f"blend mode {mode!r} has no weights; expected linear, quadratic or bump")


def weights_1d(length: int, blend: int, low: bool, high: bool, mode: str) -> npt.NDArray[np.float64]:
    """Weights along one axis of a chunk output of ``length`` voxels (chunk plus a blend pad on
    each side); ``low``/``high`` say whether a neighbour overlaps that side."""
    w = np.ones(length, dtype=np.float64)
    if blend > 0:
        r = rising(2 * blend, mode, length)
        if low:
            w[: 2 * blend] = r
        if high:
            w[length - 2 * blend:] = 1.0 - r
    return w


_WEIGHTS: dict[tuple[Any, ...], Array] = {}
#: 3-D weight arrays kept (chunk outputs of one flow share a few shapes and neighbourhoods)
WEIGHTS_KEPT = 16


def weights_3d(shape: tuple[int, int, int], blend: tuple[int, int, int], low: tuple[bool, ...],
               high: tuple[bool, ...], mode: str, dtype: np.dtype[Any]) -> Array:
    """The weights of a chunk output of ``shape`` voxels (the product of the per-axis weights,
    taken in float64 and then cast to ``dtype``), kept for the next outputs like it. Read
    only: callers slice it."""
    key = (shape, blend, low, high, mode, np.dtype(dtype).str)
    w = _WEIGHTS.get(key)
    if w is None:
        ws = [weights_1d(n, b, lo, hi, mode)
              for n, b, lo, hi in zip(shape, blend, low, high, strict=True)]
        w = (ws[0][:, None, None] * ws[1][None, :, None] * ws[2][None, None, :]).astype(dtype)
        w.setflags(write=False)
        if len(_WEIGHTS) >= WEIGHTS_KEPT:
            _WEIGHTS.pop(next(iter(_WEIGHTS)))
        _WEIGHTS[key] = w
    return w


def acc_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype a weighted sum of ``dtype`` values is accumulated in."""
    if dtype == np.float64 or (np.issubdtype(dtype, np.integer) and dtype.itemsize > 2):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def lowest(dtype: np.dtype[Any]) -> Any:
    if np.issubdtype(dtype, np.floating):
        return -np.inf
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).min
    return False


class Combiner:
    """Combines chunk outputs into the array of ``target``: each part is placed where it
    falls inside ``target`` (parts outside are dropped), weighted (linear, quadratic),
    maximised (max) or copied (no blend pad)."""

    def __init__(self, target: VolumetricIndex, blend: tuple[int, int, int], mode: str) -> None:
        self.target = target
        self.blend = blend
        self.mode = mode
        self.out: Array | None = None
        self.dtype: np.dtype[Any] | None = None
        self.weighted = any(blend) and mode in WEIGHTED

    def _init(self, channels: int, dtype: np.dtype[Any]) -> Array:
        shape = (channels, *self.target.shape)
        self.dtype = dtype
        if self.weighted:
            return np.zeros(shape, dtype=acc_dtype(dtype))
        if self.mode == "max" and any(self.blend):
            return np.full(shape, lowest(dtype), dtype=dtype)
        return np.zeros(shape, dtype=dtype)

    def add(self, out_idx: VolumetricIndex, data: Array, low: Iterable[bool],
            high: Iterable[bool], data_idx: VolumetricIndex | None = None) -> None:
        """Add the output of one chunk: ``out_idx`` is the chunk grown by the blend pad (the
        box its weights span), ``data`` covers ``data_idx`` (all of ``out_idx`` by default)."""
        if self.out is None:
            self.out = self._init(data.shape[0], data.dtype)
        covered = out_idx if data_idx is None else data_idx
        inter = covered.intersection(self.target)
        if inter.is_empty():
            return
        src = inter.slices_in(covered)
        dst = inter.slices_in(self.target)
        part = data[(slice(None), *src)]
        if self.weighted:
            w = weights_3d(out_idx.shape, self.blend, tuple(low), tuple(high), self.mode,
                           self.out.dtype)
            view = self.out[(slice(None), *dst)]
            view += part * w[inter.slices_in(out_idx)]
        elif self.mode == "max" and any(self.blend):
            view = self.out[(slice(None), *dst)]
            np.maximum(view, part, out=view)
        else:
            self.out[(slice(None), *dst)] = part

    def result(self) -> Array:
        assert self.out is not None and self.dtype is not None, "nothing was combined"
        if self.weighted:
            return cast_for_layer(self.out, str(self.dtype))
        return self.out

    def result_in(self, idx: VolumetricIndex) -> Array:
        """The result over ``idx``, a box inside the target."""
        assert self.out is not None and self.dtype is not None, "nothing was combined"
        part = self.out[(slice(None), *idx.slices_in(self.target))]
        if self.weighted:
            return cast_for_layer(part, str(self.dtype))
        return part


def neighbours(chunk: VolumetricIndex, region: VolumetricIndex) -> tuple[list[bool], list[bool]]:
    """Whether ``chunk`` has a neighbour within ``region`` below / above it, per axis."""
    low = [c > r for c, r in zip(chunk.start, region.start, strict=True)]
    high = [c < r for c, r in zip(chunk.stop, region.stop, strict=True)]
    return low, high
