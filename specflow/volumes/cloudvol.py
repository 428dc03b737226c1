"""``build_cv_layer``: zetta_utils' neuroglancer precomputed layer, on tensorstore.

The layer is a :class:`~specflow.volumes.layers.TSLayer` on the ``neuroglancer_precomputed``
driver (any kvstore: local paths, ``file://``, ``gs://``, ``s3://``; raw, jpeg, png or
compressed_segmentation encodings; sharded or not, as its info says). Its ``info`` is
described by zetta's parameters, both sets:

* ``"@version": "0.4"`` and later: ``info_scales``, ``info_reference_path``,
  ``info_inherit_all_params``, ``info_type``, ``info_data_type``, ``info_num_channels``,
  ``info_chunk_size``, ``info_bbox``, ``info_encoding``, ``info_extra_scale_data``,
  ``info_overwrite``, ``info_keep_existing_scales``;
* earlier versions: ``on_info_exists``, ``info_reference_path``, ``info_field_overrides``,
  ``info_add_scales`` (with ``_ref``, ``_mode``, ``_exclude_fields``), ``info_chunk_size``,
  ``info_dataset_size``, ``info_voxel_offset``, ``info_encoding`` (each with a ``_map`` per
  scale key), ``info_type``, ``info_data_type``, ``info_num_channels``,
  ``info_only_retain_scales``, ``info_extend_if_exists``.

Building touches no storage. The info is written once, when the layer is prepared for writing
(the flow does that in one task before any chunk is written), computed and merged exactly as
zetta does (see :mod:`specflow.volumes.precomputed`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from specflow.builder.not_provided import NotProvidedError
from specflow.builder.registry import register
from specflow.volumes.geometry import BBox3D, VolumetricIndex, ivec3, vec3
from specflow.volumes.layers import (
    DEFAULT_CACHE_BYTES,
    LayerMetadataError,
    ReadResult,
    ScaleInfo,
    TSLayer,
    kvstore_url,
)
from specflow.volumes.precomputed import InfoError, InfoSpec, LegacyInfoSpec

#: zetta's interpolation modes, as the resampling specflow does
ZETTA_INTERPOLATION = {
    "img": "average", "area": "average", "linear": "average", "bilinear": "average",
    "bicubic": "average", "trilinear": "average", "nearest": "nearest",
    "nearest-exact": "nearest", "segmentation": "nearest", "mask": "max",
    "average": "average", "mode": "mode", "max": "max",
}

Proc = Callable[..., Any]


def interpolation(mode: str | None) -> str | None:
    """specflow's resampling mode for a zetta ``interpolation_mode``."""
    if mode is None:
        return None
    if mode == "field":
        raise NotProvidedError.of("interpolation_mode: field",
                                  "resampling displacement fields, used by alignment")
    if mode not in ZETTA_INTERPOLATION:
        raise ValueError(f"unknown interpolation_mode {mode!r}; expected one of "
                         f"{', '.join(sorted(ZETTA_INTERPOLATION))}")
    return ZETTA_INTERPOLATION[mode]


class CVLayer(TSLayer):
    """A neuroglancer precomputed layer whose info follows zetta's info parameters."""

    def __init__(
        self,
        path: str,
        *,
        info: Mapping[str, Any] | None = None,
        readonly: bool = False,
        data_resolution: Sequence[float] | None = None,
        interpolation_mode: str | None = None,
        read_procs: Sequence[Proc] = (),
        write_procs: Sequence[Proc] = (),
        index_procs: Sequence[Proc] = (),
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        frontend: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            path, format="precomputed", readonly=readonly, data_resolution=data_resolution,
            interpolation_mode=interpolation(interpolation_mode), cache_bytes=cache_bytes,
            read_procs=read_procs, write_procs=write_procs, index_procs=index_procs,
        )
        self.settings["zetta_info"] = dict(info) if info else None
        #: settings of zetta's layer front end that specflow's indices make moot, kept as given
        self.settings["frontend"] = dict(frontend or {})
        self._init_runtime()
        self._info_spec()  # refuses what needs no storage to refuse

    def __repr__(self) -> str:
        return f"CVLayer({self.path!r})"

    def _info_spec(self) -> InfoSpec | LegacyInfoSpec | None:
        info = self.settings["zetta_info"]
        if not info:
            return None
        params = dict(info["params"])
        try:
            if info["kind"] == "0.4":
                return InfoSpec(params)
            return LegacyInfoSpec(params)
        except InfoError as exc:
            raise ValueError(str(exc)) from None

    def apply_info(self) -> bool:
        """Write the info the spec describes (merged into the existing one, zetta's way);
        ``True`` when the info file changed. Safe to call again: it then finds the same info."""
        spec = self._info_spec()
        if spec is None:
            return False
        info = self.settings["zetta_info"]
        try:
            if isinstance(spec, InfoSpec):
                changed = spec.update(self.path, overwrite=bool(info["overwrite"]),
                                      keep_existing_scales=bool(info["keep_existing_scales"]))
            else:
                changed = spec.update(self.path, str(info["on_info_exists"]))
        except (InfoError, FileNotFoundError) as exc:
            raise LayerMetadataError(f"layer {self.path}: {exc}") from None
        self._forget()
        self._rt.info_applied = True
        return changed

    def prepare_for_write(self, resolution: Sequence[float]) -> ScaleInfo:
        """Apply the info spec (once, in the process that prepares the run) and return the
        scale at ``resolution``."""
        if self.readonly:
            raise PermissionError(f"layer {self.path} is read-only")
        self.apply_info()
        found = self.scale(resolution)
        if found is None:
            stored = ", ".join(str(list(s.resolution)) for s in self.scales()) or "none"
            raise LayerMetadataError(
                f"layer {self.path} has no scale at {list(vec3(resolution))} (its info holds "
                f"{stored}); add it to info_scales (or info_add_scales)"
            )
        return found

    def planned_scale(self, resolution: Sequence[float]) -> ScaleInfo | None:
        """The scale at ``resolution`` as :meth:`prepare_for_write` would leave it, found
        without writing: the stored one, or the one the info spec describes."""
        found = self.scale(resolution)
        spec = self._info_spec()
        info = self.settings["zetta_info"]
        if spec is None or (found is not None and not info.get("overwrite")):
            return found
        try:
            made = spec.make_info() if isinstance(spec, InfoSpec) else spec.make_info(self.path)
        except (InfoError, FileNotFoundError, ValueError, KeyError):
            return found
        if not made:
            return found
        res = vec3(resolution)
        for s in made.get("scales", []):
            if all(abs(a - b) < 1e-6 for a, b in zip(vec3(s["resolution"]), res, strict=True)):
                return ScaleInfo(
                    resolution=res, voxel_offset=ivec3(s.get("voxel_offset", [0, 0, 0])),
                    size=ivec3(s["size"]), chunk_size=ivec3(s["chunk_sizes"][0]),
                    dtype=str(made["data_type"]), num_channels=int(made["num_channels"]),
                    layer_type=str(made.get("type", "image")),
                    compression=str(s.get("encoding", "raw")))
        return found

    def plan_write(self, resolution: Sequence[float],
                   planned: dict[str, tuple[str | None, list[ScaleInfo]]]) -> ScaleInfo:
        """What :meth:`prepare_for_write` would leave at ``resolution``, writing nothing (for
        dry runs); ``planned`` takes this layer's outcome, as for other layers."""
        if self.readonly:
            raise PermissionError(f"layer {self.path} is read-only")
        found = self.planned_scale(resolution)
        if found is None:
            raise LayerMetadataError(
                f"layer {self.path} would have no scale at {list(vec3(resolution))}; add it "
                "to info_scales (or info_add_scales)"
            )
        before = planned.get(self.path, ("precomputed", list(self.scales())))[1]
        after = [s for s in before if s.resolution != found.resolution] + [found]
        planned[self.path] = ("precomputed", after)
        return found

    def _scale_for_write(self, resolution: Sequence[float]) -> ScaleInfo | None:
        found = self.scale(resolution)
        if found is None and not self._rt.info_applied:
            # written without being prepared: apply the info spec here, once per process
            self.apply_info()
            found = self.scale(resolution)
        return found


def _bbox(value: Any) -> dict[str, list[float]] | None:
    if value is None:
        return None
    if isinstance(value, BBox3D):
        return {"start": list(value.start), "end": list(value.end)}
    if isinstance(value, Mapping) and "start" in value and "end" in value:
        return {"start": list(vec3(value["start"])), "end": list(vec3(value["end"]))}
    raise ValueError(f"info_bbox must be a BBox3D, got {value!r}")


def _ref(path: str | None) -> str | None:
    return kvstore_url(path) if path else None


def _frontend(**kwargs: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in kwargs.items()
            if v is not None and v != {} and v is not False}


@register("build_cv_layer", versions=">=0.4")
def build_cv_layer(
    path: str,
    cv_kwargs: dict[str, Any] | None = None,
    default_desired_resolution: list[float] | None = None,
    index_resolution: list[float] | None = None,
    data_resolution: list[float] | None = None,
    interpolation_mode: str | None = None,
    mask_value_thr: float = 0,
    readonly: bool = False,
    info_reference_path: str | None = None,
    info_inherit_all_params: bool = False,
    info_type: str | None = None,
    info_data_type: str | None = None,
    info_num_channels: int | None = None,
    info_chunk_size: list[int] | None = None,
    info_bbox: Any = None,
    info_encoding: str | None = None,
    info_scales: list[list[float]] | None = None,
    info_extra_scale_data: dict[str, Any] | None = None,
    info_overwrite: bool = False,
    info_keep_existing_scales: bool = True,
    allow_slice_rounding: bool = False,
    index_procs: list[Any] | None = None,
    read_procs: list[Any] | None = None,
    write_procs: list[Any] | None = None,
    cache_bytes_limit: int | None = None,
) -> CVLayer:
    """A neuroglancer precomputed layer with zetta's info parameters (``@version`` 0.4).

    Without ``info_scales`` the info at ``path`` is used as it is (and no other ``info_*``
    parameter may be given); with it, the listed scales are ensured, their fields given or
    taken from ``info_reference_path``. ``cv_kwargs`` is accepted (CloudVolume options have no
    meaning on tensorstore).
    """
    if info_scales is None:
        given = [n for n, v in (
            ("info_reference_path", info_reference_path), ("info_type", info_type),
            ("info_data_type", info_data_type), ("info_num_channels", info_num_channels),
            ("info_chunk_size", info_chunk_size), ("info_bbox", info_bbox),
            ("info_encoding", info_encoding), ("info_extra_scale_data", info_extra_scale_data),
        ) if v is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} given without info_scales: without info_scales the info "
                "at path is used unchanged, so no other info_* parameter may be given; list the "
                "scales to create in info_scales"
            )
        info = None
    else:
        info = {"kind": "0.4", "overwrite": info_overwrite,
                "keep_existing_scales": info_keep_existing_scales,
                "params": {
                    "scales": [list(s) for s in info_scales],
                    "reference_path": _ref(info_reference_path),
                    "inherit_all_params": info_inherit_all_params, "type": info_type,
                    "data_type": info_data_type, "num_channels": info_num_channels,
                    "chunk_size": list(info_chunk_size) if info_chunk_size else None,
                    "bbox": _bbox(info_bbox), "encoding": info_encoding,
                    "extra_scale_data": info_extra_scale_data}}
    return CVLayer(
        path, info=info, readonly=readonly, data_resolution=data_resolution,
        interpolation_mode=interpolation_mode, read_procs=read_procs or (),
        write_procs=write_procs or (), index_procs=index_procs or (),
        cache_bytes=cache_bytes_limit if cache_bytes_limit is not None else DEFAULT_CACHE_BYTES,
        frontend=_frontend(cv_kwargs=cv_kwargs,
                           default_desired_resolution=default_desired_resolution,
                           index_resolution=index_resolution, mask_value_thr=mask_value_thr or None,
                           allow_slice_rounding=allow_slice_rounding),
    )


@register("build_cv_layer", versions="<0.4")
def build_cv_layer_legacy(
    path: str,
    cv_kwargs: dict[str, Any] | None = None,
    default_desired_resolution: list[float] | None = None,
    index_resolution: list[float] | None = None,
    data_resolution: list[float] | None = None,
    interpolation_mode: str | None = None,
    mask_value_thr: float = 0.0,
    readonly: bool = False,
    info_extend_if_exists: bool = True,
    info_reference_path: str | None = None,
    info_type: str | None = None,
    info_data_type: str | None = None,
    info_num_channels: int | None = None,
    info_field_overrides: dict[str, Any] | None = None,
    info_chunk_size: list[int] | None = None,
    info_chunk_size_map: dict[str, list[int]] | None = None,
    info_dataset_size: list[int] | None = None,
    info_dataset_size_map: dict[str, list[int]] | None = None,
    info_voxel_offset: list[int] | None = None,
    info_voxel_offset_map: dict[str, list[int]] | None = None,
    info_encoding: str | None = None,
    info_encoding_map: dict[str, str] | None = None,
    info_add_scales: list[Any] | None = None,
    info_add_scales_ref: Any = None,
    info_add_scales_exclude_fields: list[str] | None = None,
    info_add_scales_mode: str = "merge",
    info_only_retain_scales: list[list[float]] | None = None,
    on_info_exists: str = "extend",
    allow_slice_rounding: bool = False,
    index_procs: list[Any] | None = None,
    read_procs: list[Any] | None = None,
    write_procs: list[Any] | None = None,
    read_postprocs: list[Any] | None = None,
    write_preprocs: list[Any] | None = None,
    cache_bytes_limit: int | None = None,
) -> CVLayer:
    """A neuroglancer precomputed layer with zetta's earlier info parameters.

    The info is the existing one at ``path`` (``info_extend_if_exists``) or the one at
    ``info_reference_path``, updated with ``info_field_overrides``, ``info_add_scales`` and the
    per-scale settings; ``on_info_exists`` says what may change in an existing info:
    ``expect_same`` (nothing), ``extend`` (only new scales) or anything else (overwrite).
    ``read_postprocs``/``write_preprocs`` are the older names of ``read_procs``/``write_procs``.
    """
    params = {
        "extend_if_exists": info_extend_if_exists, "reference_path": _ref(info_reference_path),
        "type": info_type, "data_type": info_data_type, "num_channels": info_num_channels,
        "field_overrides": info_field_overrides, "chunk_size": info_chunk_size,
        "chunk_size_map": info_chunk_size_map, "dataset_size": info_dataset_size,
        "dataset_size_map": info_dataset_size_map, "voxel_offset": info_voxel_offset,
        "voxel_offset_map": info_voxel_offset_map, "encoding": info_encoding,
        "encoding_map": info_encoding_map, "add_scales": info_add_scales,
        "add_scales_ref": info_add_scales_ref,
        "add_scales_exclude_fields": list(info_add_scales_exclude_fields or ()),
        "add_scales_mode": info_add_scales_mode,
        "only_retain_scales": info_only_retain_scales,
    }
    return CVLayer(
        path, info={"kind": "legacy", "on_info_exists": on_info_exists, "params": params},
        readonly=readonly, data_resolution=data_resolution,
        interpolation_mode=interpolation_mode,
        read_procs=[*(read_procs or ()), *(read_postprocs or ())],
        write_procs=[*(write_preprocs or ()), *(write_procs or ())],
        index_procs=index_procs or (),
        cache_bytes=cache_bytes_limit if cache_bytes_limit is not None else DEFAULT_CACHE_BYTES,
        frontend=_frontend(cv_kwargs=cv_kwargs,
                           default_desired_resolution=default_desired_resolution,
                           index_resolution=index_resolution, mask_value_thr=mask_value_thr or None,
                           allow_slice_rounding=allow_slice_rounding),
    )


class ConstantLayer(TSLayer):
    """A read-only layer whose every voxel is ``value`` (float32, ``num_channels``)."""

    def __init__(self, value: float = 0, num_channels: int = 1, *,
                 read_procs: Sequence[Proc] = (), index_procs: Sequence[Proc] = ()) -> None:
        super().__init__(f"constant://{value}/{num_channels}", readonly=True,
                         read_procs=read_procs, index_procs=index_procs)
        self.settings["constant"] = {"value": value, "num_channels": int(num_channels)}
        self._init_runtime()

    def __repr__(self) -> str:
        return f"ConstantLayer({self.settings['constant']['value']!r})"

    def exists(self) -> bool:
        return True

    def scales(self) -> list[ScaleInfo]:
        return []

    def read_async(self, idx: VolumetricIndex) -> ReadResult:
        idx = self._index(idx)
        c = self.settings["constant"]
        full = np.full((c["num_channels"], *idx.shape), c["value"], dtype=np.float32)
        out = ReadResult(value=full)
        if self.read_procs:
            out.post = self._apply_read_procs
        return out


@register("build_constant_volumetric_layer")
def build_constant_volumetric_layer(
    value: float = 0,
    num_channels: int = 1,
    default_desired_resolution: list[float] | None = None,
    index_resolution: list[float] | None = None,
    data_resolution: list[float] | None = None,
    interpolation_mode: str | None = None,
    allow_slice_rounding: bool = False,
    index_procs: list[Any] | None = None,
    read_procs: list[Any] | None = None,
) -> ConstantLayer:
    """A read-only layer that reads as ``value`` everywhere (float32, ``num_channels``); the
    resolution settings are accepted (a constant reads the same at every resolution)."""
    return ConstantLayer(value, num_channels, read_procs=read_procs or (),
                         index_procs=index_procs or ())
