"""Bounding boxes, volumetric indices and tensorstore layers."""

from specflow.volumes import nglink as nglink
from specflow.volumes import processors as processors
from specflow.volumes.cloudvol import CVLayer, build_cv_layer
from specflow.volumes.geometry import BBox3D, IVec3, Vec3, VolumetricIndex, ivec3, vec3
from specflow.volumes.layers import (
    LayerMetadataError,
    ScaleInfo,
    TSLayer,
    build_ts_layer,
    cast_for_layer,
    shared_context,
)
from specflow.volumes.resample import downsample, upsample

__all__ = [
    "BBox3D",
    "CVLayer",
    "IVec3",
    "LayerMetadataError",
    "ScaleInfo",
    "TSLayer",
    "Vec3",
    "VolumetricIndex",
    "build_cv_layer",
    "build_ts_layer",
    "cast_for_layer",
    "downsample",
    "ivec3",
    "shared_context",
    "upsample",
    "vec3",
]
