"""zetta_utils' volumetric operations: ``VolumetricCallableOperation`` and
``InterpolateOperation``, as specflow operations.

``VolumetricCallableOperation`` applies a function of arrays with a context (``crop_pad``, in
output voxels) and a resolution change (``res_change_mult``: the input is read at the output
resolution divided by it). ``InterpolateOperation`` resamples ``src`` by ``res_change_mult``
with zetta's modes: downsampling by whole factors averages (``img``, rounded for integers),
takes the most frequent label (``segmentation``), or averages and compares with
``mask_value_thr`` (``mask``); upsampling by whole factors repeats voxels (zetta's ``img``
upsampling interpolates linearly instead, and ``field`` is not provided).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from specflow.builder.not_provided import NotProvidedError
from specflow.builder.registry import register
from specflow.processing.operations import Array, VolumetricOperation, as_cxyz, read_inputs
from specflow.resources import semaphore
from specflow.volumes.geometry import Vec3, VolumetricIndex, ivec3, vec3
from specflow.volumes.layers import cast_for_layer
from specflow.volumes.resample import downsample, upsample


def _whole(values: Sequence[float], what: str) -> tuple[int, int, int]:
    out = []
    for v in values:
        if abs(v - round(v)) > 1e-6 or round(v) < 1:
            raise ValueError(f"{what} must be whole numbers >= 1, got {list(values)}")
        out.append(int(round(v)))
    return out[0], out[1], out[2]


@register("VolumetricCallableOperation")
class VolumetricCallableOperation(VolumetricOperation):
    """Applies ``fn`` (a function of arrays) over each chunk, read with ``crop_pad`` voxels of
    context (of the output resolution) at the output resolution divided by
    ``res_change_mult``; ``fn_semaphores`` are held while ``fn`` runs."""

    def __init__(
        self,
        fn: Callable[..., Any],
        fn_semaphores: list[str] | None = None,
        crop_pad: list[int] | None = None,
        res_change_mult: list[float] | None = None,
        operation_name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ValueError(f"fn must be a function, got {type(fn).__name__}")
        self.fn = fn
        self.fn_semaphores = list(fn_semaphores or [])
        self.crop_pad = ivec3(crop_pad if crop_pad is not None else [0, 0, 0], "crop_pad")
        self.res_change_mult = vec3(res_change_mult if res_change_mult is not None else
                                    [1, 1, 1], "res_change_mult")
        raw = [c * m for c, m in zip(self.crop_pad, self.res_change_mult, strict=True)]
        if any(abs(r - round(r)) > 1e-6 for r in raw):
            raise ValueError(
                f"crop_pad {list(self.crop_pad)} with res_change_mult "
                f"{list(self.res_change_mult)} gives a non-integer input crop of {raw}"
            )
        self.input_crop_pad = ivec3([round(r) for r in raw], "input crop")
        self.operation_name = operation_name

    def input_resolution(self, dst_resolution: Vec3) -> Vec3:
        return vec3([d / m for d, m in zip(dst_resolution, self.res_change_mult, strict=True)])

    def __call__(self, idx: VolumetricIndex, **kwargs: Any) -> Array:
        src_idx = idx.at_resolution(self.input_resolution(idx.resolution)) \
            if tuple(self.res_change_mult) != (1, 1, 1) else idx
        src_idx = src_idx.padded(self.input_crop_pad)
        data = read_inputs(src_idx, kwargs)
        with contextlib.ExitStack() as stack:
            for name in self.fn_semaphores:
                stack.enter_context(semaphore(name))
            out = np.asarray(self.fn(**data))
        if out.ndim == 3:
            out = out[None]
        x, y, z = self.crop_pad
        if (x, y, z) != (0, 0, 0):
            out = out[:, x:out.shape[1] - x, y:out.shape[2] - y, z:out.shape[3] - z]
        return as_cxyz(out, idx.shape, self.operation_name or "VolumetricCallableOperation")

    def __specflow_id__(self) -> Any:
        return {"fn": self.fn, "crop_pad": list(self.crop_pad),
                "res_change_mult": list(self.res_change_mult)}


class _Interpolate:
    """``src`` resampled by ``1 / res_change_mult`` (a picklable function of arrays)."""

    def __init__(self, res_change_mult: Sequence[float], mode: str, mask_value_thr: float) -> None:
        self.res_change_mult = list(res_change_mult)
        self.mode = mode
        self.mask_value_thr = mask_value_thr

    def __call__(self, src: Array, **_: Any) -> Array:
        mult = self.res_change_mult
        if all(m >= 1 for m in mult):
            factor = _whole(mult, "res_change_mult")
            if self.mode == "segmentation":
                return downsample(src, factor, "mode")
            if self.mode == "nearest":
                return downsample(src, factor, "nearest")
            averaged: Array = np.asarray(downsample(src.astype(np.float32), factor, "average"))
            if self.mode == "mask":
                masked: Array = (averaged > self.mask_value_thr).astype(src.dtype)
                return masked
            return cast_for_layer(averaged, str(src.dtype))
        if all(m <= 1 for m in mult):
            factor = _whole([1 / m for m in mult], "1 / res_change_mult")
            return upsample(src, factor)
        raise ValueError(f"res_change_mult {mult} mixes up- and downsampling")

    def __specflow_id__(self) -> Any:
        return {"res_change_mult": self.res_change_mult, "mode": self.mode,
                "mask_value_thr": self.mask_value_thr}


INTERPOLATE_MODES = ("img", "mask", "segmentation", "nearest", "area", "bilinear", "trilinear",
                     "linear")


@register("InterpolateOperation")
def make_interpolate_operation(
    res_change_mult: list[float],
    mode: str,
    align_corners: bool | None = None,
    mask_value_thr: float = 0,
) -> VolumetricCallableOperation:
    """zetta's resampling operation: ``src`` read at the output resolution divided by
    ``res_change_mult`` and resampled to it (``img``, ``mask``, ``segmentation``,
    ``nearest``)."""
    if mode == "field":
        raise NotProvidedError.of("InterpolateOperation mode: field",
                                  "resampling displacement fields, used by alignment")
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(INTERPOLATE_MODES)}")
    simple = "img" if mode in ("area", "bilinear", "trilinear", "linear") else mode
    return VolumetricCallableOperation(
        fn=_Interpolate(res_change_mult, simple, mask_value_thr),
        res_change_mult=res_change_mult, operation_name=f"Interpolate<{mode}>",
    )
