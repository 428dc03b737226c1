"""Integer-factor resampling of CXYZ arrays: average, mode, max and nearest down, nearest up."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

InterpolationMode = Literal["nearest", "average", "mode", "max"]
MODES: tuple[str, ...] = ("nearest", "average", "mode", "max")


def _blocks(arr: npt.NDArray[np.generic], factor: tuple[int, int, int]) -> npt.NDArray[np.generic]:
    """A view of ``arr`` (C, X, Y, Z) as (C, X', Y', Z', fx*fy*fz) blocks."""
    c, x, y, z = arr.shape
    fx, fy, fz = factor
    if x % fx or y % fy or z % fz:
        raise ValueError(
            f"cannot downsample shape {[x, y, z]} by {list(factor)}: "
            "every axis must be a multiple of its factor"
        )
    v = arr.reshape(c, x // fx, fx, y // fy, fy, z // fz, fz)
    v = v.transpose(0, 1, 3, 5, 2, 4, 6)
    return v.reshape(c, x // fx, y // fy, z // fz, fx * fy * fz)


def downsample(
    arr: npt.NDArray[np.generic], factor: tuple[int, int, int], mode: str
) -> npt.NDArray[np.generic]:
    """Shrink ``arr`` (C, X, Y, Z) by integer ``factor`` per axis.

    ``average`` keeps the dtype (rounding to nearest for integers), ``mode`` picks the most
    frequent value of each block (ties: the smallest), ``max`` the largest, ``nearest`` the
    first voxel of each block.
    """
    if factor == (1, 1, 1):
        return arr
    if mode == "nearest":
        return arr[:, :: factor[0], :: factor[1], :: factor[2]]
    if mode == "max":
        mx: npt.NDArray[np.generic] = _blocks(arr, factor).max(axis=-1)
        return mx
    if mode == "average":
        mean: npt.NDArray[np.float64] = _blocks(arr, factor).mean(axis=-1, dtype=np.float64)
        if np.issubdtype(arr.dtype, np.integer):
            mean = np.rint(mean)
        return mean.astype(arr.dtype)
    if mode == "mode":
        return _block_mode(_blocks(arr, factor))
    raise ValueError(f"unknown interpolation mode {mode!r}; expected one of {', '.join(MODES)}")


def _block_mode(blocks: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """The most frequent value along the last axis (ties broken towards the smallest)."""
    s = np.sort(blocks, axis=-1)
    n = s.shape[-1]
    flat = s.reshape(-1, n)
    # run lengths: position of each element minus the start of its run
    new_run = np.ones(flat.shape, dtype=bool)
    new_run[:, 1:] = flat[:, 1:] != flat[:, :-1]
    idx = np.arange(n)[None, :].repeat(flat.shape[0], axis=0)
    run_start = np.maximum.accumulate(np.where(new_run, idx, 0), axis=1)
    run_len = idx - run_start + 1
    # the first element reaching the longest run length ends the winning run
    best = np.argmax(run_len, axis=1)
    out: npt.NDArray[np.generic] = flat[np.arange(flat.shape[0]), best]
    return out.reshape(s.shape[:-1])


def upsample(arr: npt.NDArray[np.generic], factor: tuple[int, int, int]) -> npt.NDArray[np.generic]:
    """Grow ``arr`` (C, X, Y, Z) by repeating each voxel ``factor`` times per axis."""
    out = arr
    for ax, f in enumerate(factor, start=1):
        if f != 1:
            out = np.repeat(out, f, axis=ax)
    return out
