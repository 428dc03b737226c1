"""Chunked processing of volumes: the subchunkable apply flow, blending, built-in operations."""

from specflow.processing.operations import (
    DownsampleOp,
    FnOperation,
    SyntheticVolumeOp,
    VolumetricOperation,
    affine_intensity,
    copy,
    gaussian_filter,
    invert,
    mean_filter,
    threshold,
)
from specflow.processing.preview import build_volume_summary, png_bytes, to_uint8, write_png
from specflow.processing.repeat import repeat
from specflow.processing.subchunkable import (
    Level,
    SubchunkableConfigError,
    build_postpad_subchunkable_apply_flow,
    build_reduce_staged_flow,
    build_subchunkable_apply_flow,
    build_synthetic_volume_flow,
)
from specflow.processing.zetta_ops import VolumetricCallableOperation, make_interpolate_operation

__all__ = [
    "DownsampleOp",
    "FnOperation",
    "Level",
    "SubchunkableConfigError",
    "SyntheticVolumeOp",
    "VolumetricCallableOperation",
    "VolumetricOperation",
    "affine_intensity",
    "build_postpad_subchunkable_apply_flow",
    "build_reduce_staged_flow",
    "build_subchunkable_apply_flow",
    "build_synthetic_volume_flow",
    "build_volume_summary",
    "copy",
    "gaussian_filter",
    "invert",
    "make_interpolate_operation",
    "mean_filter",
    "png_bytes",
    "repeat",
    "threshold",
    "to_uint8",
    "write_png",
]
