"""Volumetric layers stored with tensorstore: zarr (v2 and v3), N5 and neuroglancer precomputed.

A layer is addressed by :class:`~specflow.volumes.geometry.VolumetricIndex` and hands out
numpy arrays in C, X, Y, Z order. It pickles as its settings (never as open handles): each
process opens the store lazily on first use, through one shared tensorstore context per
process, so cache and concurrency limits are tensorstore's own.

Where the layout is ours to choose (zarr, N5) arrays are stored as ``(c, x, y, z)``; the
resolution, voxel offset and layer type live in the array's attributes under ``"specflow"``.
Neuroglancer precomputed keeps them in its ``info`` file as usual, one scale per resolution.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from specflow.builder.registry import register
from specflow.volumes.geometry import IVec3, Vec3, VolumetricIndex, ivec3, vec3
from specflow.volumes.resample import MODES, downsample, upsample

if TYPE_CHECKING:
    import tensorstore as ts
else:
    from specflow.volumes.lazy import tensorstore as ts

Format = Literal["auto", "zarr", "zarr3", "n5", "precomputed"]
FORMATS = ("zarr", "zarr3", "n5", "precomputed")
COMPRESSIONS = ("raw", "gzip", "zstd", "blosc", "jpeg", "png", "compressed_segmentation")

#: the attribute key that holds our geometry in zarr and N5 metadata
ATTR_KEY = "specflow"


#: the default size of each process's tensorstore cache pool (shared by its layers): blocks
#: read with context overlap their neighbours' stored chunks, which it serves again
DEFAULT_CACHE_BYTES = 128 * 1024 * 1024


#: reads started ahead (:meth:`TSLayer.prefetch`) kept per layer at most
PREFETCH_KEPT = 64


class LayerMetadataError(ValueError):
    """An existing layer's metadata differs from what the spec asks for."""


# --------------------------------------------------------------------------- contexts

_CONTEXTS: dict[tuple[int, int], ts.Context] = {}
_CONTEXT_LOCK = threading.Lock()


def shared_context(cache_bytes: int = 0, concurrency: int = 0) -> ts.Context:
    """One tensorstore context per process and setting: layers that agree share its cache
    pool and its I/O and copy concurrency limits (0 means tensorstore's default)."""
    key = (cache_bytes, concurrency)
    with _CONTEXT_LOCK:
        ctx = _CONTEXTS.get(key)
        if ctx is None:
            spec: dict[str, Any] = {"cache_pool": {"total_bytes_limit": int(cache_bytes)}}
            if concurrency:
                spec["data_copy_concurrency"] = {"limit": int(concurrency)}
                spec["file_io_concurrency"] = {"limit": int(concurrency)}
            ctx = ts.Context(spec)
            _CONTEXTS[key] = ctx
        return ctx


def _reset_contexts_after_fork() -> None:
    _CONTEXTS.clear()
    _RUNTIMES.clear()
    _KVSTORES.clear()


os.register_at_fork(after_in_child=_reset_contexts_after_fork)


# --------------------------------------------------------------------------- kvstores


def kvstore_url(path: str) -> str:
    """A kvstore URL for ``path``: URLs pass through, local paths become absolute file URLs.
    Always ends in ``/`` (the layer is a directory). CloudVolume's format prefix
    (``precomputed://gs://...``) is dropped."""
    if path.startswith("precomputed://"):
        path = path[len("precomputed://"):]
    if path.startswith("file://") and not path[len("file://"):].startswith("/"):
        url = "file://" + os.path.abspath(os.path.expanduser(path[len("file://"):]))
    elif "://" in path:
        url = path
    else:
        url = "file://" + os.path.abspath(os.path.expanduser(path))
    return url if url.endswith("/") else url + "/"


_KVSTORES: dict[str, Any] = {}


def open_kvstore(url: str) -> Any:
    """The kvstore at ``url``, opened once per process (in the shared context)."""
    kv = _KVSTORES.get(url)
    if kv is None:
        kv = _KVSTORES[url] = ts.KvStore.open(url, context=shared_context()).result()
    return kv


def kv_read(url: str, key: str, byte_range: tuple[int, int] | None = None) -> bytes | None:
    """The value stored under ``key`` of the kvstore at ``url`` (``None`` when missing);
    with ``byte_range`` (start, stop), only those bytes of it (fewer where it ends
    sooner)."""
    if url.startswith("file://"):  # read as tensorstore's file kvstore would, without it
        try:
            with open(os.path.join(url[len("file://"):], key), "rb") as f:
                if byte_range is None:
                    return f.read()
                f.seek(byte_range[0])
                return f.read(byte_range[1] - byte_range[0])
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
    kv = open_kvstore(url)
    res = kv.read(key, byte_range=None if byte_range is None else slice(*byte_range)).result()
    if res.state != "value":
        return None
    return bytes(res.value)


def kv_write_async(url: str, key: str, data: bytes) -> Any:
    """Start storing ``data`` under ``key`` of the kvstore at ``url``; ``.result()`` waits
    until it is durable."""
    return open_kvstore(url).write(key, data)


def kv_write(url: str, key: str, data: bytes) -> None:
    """Store ``data`` under ``key`` of the kvstore at ``url``."""
    kv_write_async(url, key, data).result()


def detect_format(url: str) -> str | None:
    """The format of the layer stored at ``url``, or ``None`` when nothing is there."""
    for key, fmt in ((".zarray", "zarr"), ("zarr.json", "zarr3"), ("info", "precomputed"),
                     ("attributes.json", "n5")):
        if kv_read(url, key) is not None:
            return fmt
    return None


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class ScaleInfo:
    """The geometry of a layer at one stored resolution."""

    resolution: Vec3
    voxel_offset: IVec3
    size: IVec3
    chunk_size: IVec3
    dtype: str
    num_channels: int
    layer_type: str
    compression: str

    @functools.cached_property
    def index(self) -> VolumetricIndex:
        """The whole stored region."""
        stop = [o + s for o, s in zip(self.voxel_offset, self.size, strict=True)]
        return VolumetricIndex.from_voxels(self.voxel_offset, stop, self.resolution)


def _np_dtype(name: str) -> np.dtype[Any]:
    try:
        return np.dtype(name)
    except TypeError as exc:
        raise ValueError(f"unknown dtype {name!r}") from exc


def _zarr2_compressor(c: str) -> Any:
    if c == "raw":
        return None
    if c == "gzip":
        return {"id": "zlib", "level": 5}
    if c == "zstd":
        return {"id": "zstd", "level": 3}
    if c == "blosc":
        return {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}
    raise ValueError(f"zarr layers support compression raw, gzip, zstd or blosc, not {c!r}")


def _zarr3_codecs(c: str) -> list[Any]:
    codecs: list[Any] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if c == "raw":
        return codecs
    if c == "gzip":
        return codecs + [{"name": "gzip", "configuration": {"level": 5}}]
    if c == "zstd":
        return codecs + [{"name": "zstd", "configuration": {"level": 3}}]
    if c == "blosc":
        return codecs + [{"name": "blosc", "configuration": {
            "cname": "lz4", "clevel": 5, "shuffle": "shuffle", "typesize": 1, "blocksize": 0}}]
    raise ValueError(f"zarr3 layers support compression raw, gzip, zstd or blosc, not {c!r}")


def _n5_compression(c: str) -> Any:
    if c in ("raw", "gzip"):
        return {"type": c}
    if c == "zstd":
        return {"type": "zstd", "level": 3}
    if c == "blosc":
        return {"type": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}
    raise ValueError(f"N5 layers support compression raw, gzip, zstd or blosc, not {c!r}")


def _precomputed_encoding(c: str) -> str:
    if c in ("raw", "jpeg", "png", "compressed_segmentation"):
        return c
    raise ValueError(
        "neuroglancer precomputed layers support compression raw, jpeg, png or "
        f"compressed_segmentation, not {c!r}"
    )


def _geometry_attrs(info: ScaleInfo) -> dict[str, Any]:
    return {
        "resolution": list(info.resolution),
        "voxel_offset": list(info.voxel_offset),
        "layer_type": info.layer_type,
        "axes": ["c", "x", "y", "z"],
    }


def _create_spec(fmt: str, url: str, info: ScaleInfo) -> dict[str, Any]:
    dtype = _np_dtype(info.dtype)
    shape = [info.num_channels, *info.size]
    chunks = [info.num_channels, *info.chunk_size]
    if fmt == "zarr":
        return {"driver": "zarr", "kvstore": url, "metadata": {
            "shape": shape, "chunks": chunks, "dtype": dtype.newbyteorder("<").str,
            "compressor": _zarr2_compressor(info.compression), "fill_value": 0, "order": "C"}}
    if fmt == "zarr3":
        return {"driver": "zarr3", "kvstore": url, "metadata": {
            "shape": shape,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
            "data_type": dtype.name, "codecs": _zarr3_codecs(info.compression),
            "fill_value": 0, "dimension_names": ["c", "x", "y", "z"],
            "attributes": {ATTR_KEY: _geometry_attrs(info)}}}
    if fmt == "n5":
        return {"driver": "n5", "kvstore": url, "metadata": {
            "dimensions": shape, "blockSize": chunks, "dataType": dtype.name,
            "compression": _n5_compression(info.compression),
            ATTR_KEY: _geometry_attrs(info)}}
    if fmt == "precomputed":
        return {"driver": "neuroglancer_precomputed", "kvstore": url,
                "multiscale_metadata": {"type": info.layer_type, "data_type": dtype.name,
                                        "num_channels": info.num_channels},
                "scale_metadata": {"size": list(info.size), "resolution": list(info.resolution),
                                   "voxel_offset": list(info.voxel_offset),
                                   "chunk_size": list(info.chunk_size),
                                   "encoding": _precomputed_encoding(info.compression)}}
    raise ValueError(f"unknown layer format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _compression_of(fmt: str, meta: dict[str, Any]) -> str:
    if fmt == "zarr":
        comp = meta.get("compressor")
        if not comp:
            return "raw"
        cid = str(comp.get("id", "raw"))
        return "gzip" if cid == "zlib" else cid
    if fmt == "zarr3":
        names = [c.get("name") for c in meta.get("codecs", []) if c.get("name") != "bytes"]
        return str(names[0]) if names else "raw"
    if fmt == "n5":
        return str(meta.get("compression", {}).get("type", "raw"))
    return "raw"


def _read_scales(fmt: str, url: str) -> list[ScaleInfo]:
    """The stored scales of the layer at ``url`` (one for zarr and N5)."""
    if fmt == "precomputed":
        raw = kv_read(url, "info")
        assert raw is not None
        info = json.loads(raw)
        return [
            ScaleInfo(
                resolution=vec3(s["resolution"]), voxel_offset=ivec3(s.get("voxel_offset", [0] * 3)),
                size=ivec3(s["size"]), chunk_size=ivec3(s["chunk_sizes"][0]),
                dtype=info["data_type"], num_channels=int(info["num_channels"]),
                layer_type=info.get("type", "image"), compression=s.get("encoding", "raw"),
            )
            for s in info["scales"]
        ]
    key = {"zarr": ".zarray", "zarr3": "zarr.json", "n5": "attributes.json"}[fmt]
    raw = kv_read(url, key)
    assert raw is not None
    meta = json.loads(raw)
    if fmt == "zarr":
        shape, chunks, dtype = meta["shape"], meta["chunks"], np.dtype(meta["dtype"]).name
        attrs_raw = kv_read(url, ".zattrs")
        attrs = json.loads(attrs_raw) if attrs_raw else {}
    elif fmt == "zarr3":
        shape = meta["shape"]
        chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
        dtype = meta["data_type"]
        attrs = meta.get("attributes", {})
    else:
        shape, chunks, dtype = meta["dimensions"], meta["blockSize"], meta["dataType"]
        attrs = meta
    geo = attrs.get(ATTR_KEY, {}) if isinstance(attrs, dict) else {}
    if len(shape) == 3:  # a plain x, y, z array written by another tool
        shape, chunks = [1, *shape], [1, *chunks]
    if len(shape) != 4:
        raise ValueError(f"layer at {url} has {len(shape)} dimensions; expected c, x, y, z")
    return [ScaleInfo(
        resolution=vec3(geo.get("resolution", [1, 1, 1])),
        voxel_offset=ivec3(geo.get("voxel_offset", [0, 0, 0])),
        size=ivec3(shape[1:]), chunk_size=ivec3(chunks[1:]), dtype=str(dtype),
        num_channels=int(shape[0]), layer_type=str(geo.get("layer_type", "image")),
        compression=_compression_of(fmt, meta),
    )]


# --------------------------------------------------------------------------- the layer


class _Runtime:
    """What a process knows about one layer: its opened stores and its metadata."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stores: dict[Vec3, Any] = {}
        self.scales: list[ScaleInfo] | None = None
        self.format: str | None = None
        #: whether this process applied the layer's info spec (see CVLayer)
        self.info_applied = False
        #: reads started ahead of the task that needs them (:meth:`TSLayer.prefetch`)
        self.ahead: dict[tuple[Any, ...], ReadResult] = {}


_RUNTIMES: dict[str, _Runtime] = {}
_RUNTIME_LOCK = threading.Lock()


def forget_layer(path: str) -> None:
    """Drop what this process cached about the layer at ``path`` (after it was recreated)."""
    url = kvstore_url(path)
    with _RUNTIME_LOCK:
        for key, rt in list(_RUNTIMES.items()):
            if json.loads(key).get("path") == url:
                with rt.lock:
                    rt.stores.clear()
                    rt.scales = None
                    rt.format = None


class TSLayer:
    """A volume on any kvstore tensorstore reaches, read and written by index.

    ``strict`` (for specflow's own intermediate arrays): every chunk written is stored, even
    one equal to the fill value, and reading a chunk that is not stored is an error instead
    of the fill value, so a lost chunk cannot pass for an empty one."""

    def __init__(
        self,
        path: str,
        *,
        format: Format = "auto",
        readonly: bool = False,
        info_dtype: str | None = None,
        info_num_channels: int | None = None,
        info_resolution: Sequence[float] | None = None,
        info_voxel_offset: Sequence[int] | None = None,
        info_size: Sequence[int] | None = None,
        info_chunk_size: Sequence[int] | None = None,
        info_compression: str | None = None,
        info_layer_type: str | None = None,
        info_reference_path: str | None = None,
        info_overwrite: bool = False,
        data_resolution: Sequence[float] | None = None,
        interpolation_mode: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        concurrency: int = 0,
        read_procs: Sequence[Callable[..., Any]] = (),
        write_procs: Sequence[Callable[..., Any]] = (),
        index_procs: Sequence[Callable[..., Any]] = (),
        strict: bool = False,
    ) -> None:
        self.read_procs = tuple(read_procs)
        self.write_procs = tuple(write_procs)
        self.index_procs = tuple(index_procs)
        for what, procs in (("read_procs", self.read_procs), ("write_procs", self.write_procs),
                            ("index_procs", self.index_procs)):
            for proc in procs:
                if not callable(proc):
                    raise ValueError(f"{what}: {proc!r} is not a processor (not callable)")
        if format != "auto" and format not in FORMATS:
            raise ValueError(f"unknown layer format {format!r}; expected auto or one of "
                             f"{', '.join(FORMATS)}")
        if interpolation_mode is not None and interpolation_mode not in MODES:
            raise ValueError(f"unknown interpolation_mode {interpolation_mode!r}; expected one "
                             f"of {', '.join(MODES)}")
        if info_compression is not None and info_compression not in COMPRESSIONS:
            raise ValueError(f"unknown info_compression {info_compression!r}; expected one of "
                             f"{', '.join(COMPRESSIONS)}")
        if info_layer_type is not None and info_layer_type not in ("image", "segmentation"):
            raise ValueError(f"info_layer_type must be image or segmentation, "
                             f"got {info_layer_type!r}")
        if info_dtype is not None:
            _np_dtype(info_dtype)
        self.settings: dict[str, Any] = {
            "path": kvstore_url(path),
            "format": format,
            "readonly": readonly,
            "info_dtype": info_dtype,
            "info_num_channels": info_num_channels,
            "info_resolution": list(vec3(info_resolution, "info_resolution"))
            if info_resolution is not None else None,
            "info_voxel_offset": list(ivec3(info_voxel_offset, "info_voxel_offset"))
            if info_voxel_offset is not None else None,
            "info_size": list(ivec3(info_size, "info_size")) if info_size is not None else None,
            "info_chunk_size": list(ivec3(info_chunk_size, "info_chunk_size"))
            if info_chunk_size is not None else None,
            "info_compression": info_compression,
            "info_layer_type": info_layer_type,
            "info_reference_path": kvstore_url(info_reference_path)
            if info_reference_path else None,
            "info_overwrite": info_overwrite,
            "data_resolution": list(vec3(data_resolution, "data_resolution"))
            if data_resolution is not None else None,
            "interpolation_mode": interpolation_mode,
            "cache_bytes": int(cache_bytes),
            "concurrency": int(concurrency),
        }
        if strict:  # only when set, so that other layers keep their settings (and ids)
            self.settings["strict"] = True
        self._init_runtime()

    def _init_runtime(self) -> None:
        # opened stores and metadata are shared by every layer object of this process that
        # has the same settings, so unpickling a layer per task does not reopen its store
        key = json.dumps(self.settings, sort_keys=True)
        with _RUNTIME_LOCK:
            rt = _RUNTIMES.get(key)
            if rt is None:
                rt = _RUNTIMES[key] = _Runtime()
        self._rt = rt
        self._lock = rt.lock
        self._stores = rt.stores

    @property
    def _scales(self) -> list[ScaleInfo] | None:
        return self._rt.scales

    @_scales.setter
    def _scales(self, value: list[ScaleInfo] | None) -> None:
        self._rt.scales = value

    @property
    def _format(self) -> str | None:
        return self._rt.format

    @_format.setter
    def _format(self, value: str | None) -> None:
        self._rt.format = value

    # pickled and hashed as settings (and processors) only
    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "procs": self._procs()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.settings = state["settings"]
        procs = state.get("procs") or {}
        self.read_procs = tuple(procs.get("read", ()))
        self.write_procs = tuple(procs.get("write", ()))
        self.index_procs = tuple(procs.get("index", ()))
        self._init_runtime()

    def _procs(self) -> dict[str, tuple[Callable[..., Any], ...]]:
        return {"read": self.read_procs, "write": self.write_procs, "index": self.index_procs}

    def __specflow_id__(self) -> Any:
        if not (self.read_procs or self.write_procs or self.index_procs):
            return self.settings
        return {"settings": self.settings,
                "procs": {k: list(v) for k, v in self._procs().items()}}

    def with_procs(
        self,
        read_procs: Sequence[Callable[..., Any]] | None = None,
        write_procs: Sequence[Callable[..., Any]] | None = None,
        index_procs: Sequence[Callable[..., Any]] | None = None,
    ) -> TSLayer:
        """A copy of this layer with other processors (``None`` keeps the current ones)."""
        out = copy.copy(self)
        out.read_procs = self.read_procs if read_procs is None else tuple(read_procs)
        out.write_procs = self.write_procs if write_procs is None else tuple(write_procs)
        out.index_procs = self.index_procs if index_procs is None else tuple(index_procs)
        return out

    def _index(self, idx: VolumetricIndex) -> VolumetricIndex:
        for proc in self.index_procs:
            idx = proc(idx)
            if not isinstance(idx, VolumetricIndex):
                raise TypeError(f"index processor {proc!r} returned {type(idx).__name__}, "
                                "not a VolumetricIndex")
        return idx

    def __repr__(self) -> str:
        return f"TSLayer({self.settings['path']!r})"

    def __specflow_summary__(self) -> str:
        return self.path

    @property
    def path(self) -> str:
        return str(self.settings["path"])

    @property
    def readonly(self) -> bool:
        return bool(self.settings["readonly"])

    @property
    def name(self) -> str:
        """The layer's path (zetta code reads it as ``layer.backend.name``)."""
        return self.path

    @property
    def backend(self) -> TSLayer:
        """The layer itself: zetta code reaches storage details through ``layer.backend``."""
        return self

    # ------------------------------------------------------------------ metadata

    def _context(self) -> ts.Context:
        return shared_context(self.settings["cache_bytes"], self.settings["concurrency"])

    def format(self) -> str | None:
        """The stored format (``None`` while nothing is stored and none was named)."""
        if self._format is None:
            found = detect_format(self.path)
            fmt = self.settings["format"]
            if found is not None and fmt != "auto" and found != fmt:
                raise LayerMetadataError(
                    f"{self.path} holds a {found} layer, but the spec says format {fmt!r}"
                )
            self._format = found or (None if fmt == "auto" else fmt)
        return self._format

    def exists(self) -> bool:
        return detect_format(self.path) is not None

    def scales(self) -> list[ScaleInfo]:
        """The stored scales (empty when the layer does not exist yet)."""
        with self._lock:
            if self._scales is None:
                fmt = self.format()
                if fmt is None or not self.exists():
                    return []
                self._scales = _read_scales(fmt, self.path)
            return list(self._scales)

    def scale(self, resolution: Sequence[float]) -> ScaleInfo | None:
        scales = self.scales()
        for s in scales:
            if s.resolution == resolution:  # the common case: the very resolution stored
                return s
        res = vec3(resolution)
        for s in self.scales():
            if _close(s.resolution, res):
                return s
        return None

    def _requested_info(self, resolution: Sequence[float] | None,
                        stored: StoredLookup | None = None) -> dict[str, Any]:
        """The info_* settings, completed from the reference layer when one is named."""
        st = self.settings
        base: dict[str, Any] = {}
        if st["info_reference_path"]:
            lookup = stored or _stored_on_disk
            scales = lookup(TSLayer(st["info_reference_path"], readonly=True))[1]
            if not scales:
                raise ValueError(f"info_reference_path {st['info_reference_path']} holds no layer")
            ref_scale = (_at(scales, resolution) if resolution is not None else None) or scales[0]
            offset, size = list(ref_scale.voxel_offset), list(ref_scale.size)
            if resolution is not None and not _close(ref_scale.resolution, resolution):
                # the same physical region at the resolution written
                f = [r / q for r, q in zip(ref_scale.resolution, resolution, strict=True)]
                lo = [int(np.floor(o * k + 1e-9)) for o, k in zip(offset, f, strict=True)]
                hi = [int(np.ceil((o + n) * k - 1e-9)) for o, n, k in
                      zip(offset, size, f, strict=True)]
                offset, size = lo, [b - a for a, b in zip(lo, hi, strict=True)]
            base = {
                "dtype": ref_scale.dtype, "num_channels": ref_scale.num_channels,
                "voxel_offset": offset, "size": size,
                "chunk_size": list(ref_scale.chunk_size), "compression": ref_scale.compression,
                "layer_type": ref_scale.layer_type,
            }
        for k in ("dtype", "num_channels", "resolution", "voxel_offset", "size", "chunk_size",
                  "compression", "layer_type"):
            if st[f"info_{k}"] is not None:
                base[k] = st[f"info_{k}"]
        return base

    def planned_scale(self, resolution: Sequence[float]) -> ScaleInfo | None:
        """The scale at ``resolution`` as :meth:`prepare_for_write` would leave it, found
        without writing anything; None when the settings do not say yet."""
        res = vec3(resolution, "resolution")
        at_res = self.scale(res)
        if at_res is not None and not self.settings["info_overwrite"]:
            return at_res
        try:
            return self._complete_info(self._requested_info(res), res)
        except (ValueError, OSError):
            return at_res

    def _write_plan(self, res: Vec3, stored: StoredLookup) -> tuple[str, ScaleInfo, str, bool]:
        """What :meth:`prepare_for_write` does at ``res``, decided without writing: the
        action (``keep``, ``add_scale`` or ``create``), the scale written, the format, and
        whether existing data is deleted. ``stored`` tells what a layer holds."""
        if self.readonly:
            raise PermissionError(f"layer {self.path} is read-only")
        want = self._requested_info(res, stored)
        found, existing = stored(self)
        fmt = found or "zarr"
        at_res = _at(existing, res)
        if existing:
            target = at_res or existing[0]
            diffs = _differences(target, want, check_resolution=at_res is not None)
            if not diffs and at_res is not None:
                return "keep", at_res, fmt, False
            if diffs and not self.settings["info_overwrite"]:
                raise LayerMetadataError(
                    f"layer {self.path} exists with different metadata: {'; '.join(diffs)}. "
                    "Set info_overwrite: true to replace the layer (its data is deleted), or "
                    "change the info_* settings to match"
                )
            if at_res is None and not diffs and fmt == "precomputed":
                return "add_scale", self._scale_to_add(existing[0], res, want), fmt, False
            if at_res is None and not self.settings["info_overwrite"]:
                shown = ", ".join(str(list(s.resolution)) for s in existing)
                raise LayerMetadataError(
                    f"layer {self.path} ({fmt}) is stored at resolution {shown}, not "
                    f"{list(res)}; a {fmt} layer holds one resolution: write to another path, "
                    "or use a precomputed layer (it adds scales)"
                )
        return "create", self._complete_info(want, res), fmt, bool(existing)

    def prepare_for_write(self, resolution: Sequence[float]) -> ScaleInfo:
        """Make sure the layer can take writes at ``resolution``: create it (or the scale) from
        the info settings when missing, and refuse metadata that differs from the settings
        unless ``info_overwrite`` is set. Call it once, in the driving process, before workers
        write."""
        res = vec3(resolution, "resolution")
        action, info, fmt, delete = self._write_plan(res, _stored_on_disk)
        if action == "keep":
            return info
        spec = _create_spec(fmt, self.path, info)
        if action == "add_scale":
            spec.update({"create": True, "open": True})
            ts.open(spec, context=self._context()).result()
            self._forget()
            return info
        spec.update({"create": True, "delete_existing": delete})
        attrs = json.dumps({ATTR_KEY: _geometry_attrs(info)}).encode()
        if fmt == "zarr" and not delete:
            # the geometry first: a process killed before the array exists leaves no layer
            # (a later prepare creates it), never an array without its geometry
            kv_write(self.path, ".zattrs", attrs)
        ts.open(spec, context=self._context()).result()
        if fmt == "zarr" and delete:
            # replacing a layer deletes its keys: the geometry follows (killed in between,
            # the layer differs from its settings, and info_overwrite replaces it again)
            kv_write(self.path, ".zattrs", attrs)
        self._forget()
        return info

    def plan_write(self, resolution: Sequence[float],
                   planned: dict[str, tuple[str | None, list[ScaleInfo]]]) -> ScaleInfo:
        """What :meth:`prepare_for_write` would make of the layer, writing nothing: ``planned``
        holds the layers earlier planned writes made or changed (by path: format and scales)
        and takes this one's outcome."""
        res = vec3(resolution, "resolution")

        def stored(layer: TSLayer) -> tuple[str | None, list[ScaleInfo]]:
            if layer.path in planned:
                return planned[layer.path]
            return _stored_on_disk(layer)

        action, info, fmt, _ = self._write_plan(res, stored)
        before = stored(self)[1]
        after = before if action == "keep" else [*before, info] if action == "add_scale" \
            else [info]
        planned[self.path] = (fmt, after)
        return info

    def _scale_to_add(self, base: ScaleInfo, res: Vec3, want: dict[str, Any]) -> ScaleInfo:
        factor = [r / b for r, b in zip(res, base.resolution, strict=True)]
        lo = [int(np.floor(o / f)) for o, f in zip(base.voxel_offset, factor, strict=True)]
        hi = [int(np.ceil((o + s) / f)) for o, s, f in
              zip(base.voxel_offset, base.size, factor, strict=True)]
        return ScaleInfo(
            resolution=res, voxel_offset=ivec3(want.get("voxel_offset", lo)),
            size=ivec3(want.get("size", [b - a for a, b in zip(lo, hi, strict=True)])),
            chunk_size=ivec3(want.get("chunk_size", base.chunk_size)), dtype=base.dtype,
            num_channels=base.num_channels, layer_type=base.layer_type,
            compression=str(want.get("compression", base.compression)),
        )

    def _complete_info(self, want: dict[str, Any], res: Vec3) -> ScaleInfo:
        missing = [k for k in ("dtype", "size") if k not in want]
        if missing:
            raise ValueError(
                f"layer {self.path} does not exist and cannot be created: give "
                f"{' and '.join('info_' + m for m in missing)} (or info_reference_path)"
            )
        if "resolution" in want and not _close(vec3(want["resolution"]), res):
            raise ValueError(
                f"layer {self.path}: info_resolution {want['resolution']} differs from the "
                f"resolution written, {list(res)}"
            )
        size = ivec3(want["size"])
        chunk = ivec3(want.get("chunk_size", [min(64, s) for s in size]))
        return ScaleInfo(
            resolution=res, voxel_offset=ivec3(want.get("voxel_offset", [0, 0, 0])), size=size,
            chunk_size=chunk, dtype=str(want["dtype"]),
            num_channels=int(want.get("num_channels", 1)),
            layer_type=str(want.get("layer_type", "image")),
            compression=str(want.get("compression", "raw")),
        )

    def _forget(self) -> None:
        forget_layer(self.path)

    # ------------------------------------------------------------------ stores

    def _store(self, scale: ScaleInfo) -> Any:
        """The tensorstore of ``scale``, indexed (c, x, y, z) in world voxel coordinates."""
        store = self._stores.get(scale.resolution)
        if store is not None:
            return store
        fmt = self.format()
        spec: dict[str, Any]
        if fmt == "precomputed":
            spec = {"driver": "neuroglancer_precomputed", "kvstore": self.path,
                    "scale_metadata": {"resolution": list(scale.resolution)}}
        else:
            spec = {"driver": {"zarr": "zarr", "zarr3": "zarr3", "n5": "n5"}[str(fmt)],
                    "kvstore": self.path}
        if self.settings.get("strict"):
            spec["fill_missing_data_reads"] = False
            spec["store_data_equal_to_fill_value"] = True
        opened = ts.open(spec, context=self._context(), read=True,
                         write=not self.readonly).result()
        if fmt == "precomputed":
            view = opened[ts.d[3].transpose[0]]  # (x, y, z, c) -> (c, x, y, z)
            view = view[ts.d[0].translate_to[0]]
        else:
            if opened.rank == 3:
                opened = opened[ts.newaxis, ...]
            view = opened[ts.d[:].translate_to[(0, *scale.voxel_offset)]]
        with self._lock:
            self._stores[scale.resolution] = view
        return view

    def _scale_for_read(self, res: Vec3) -> tuple[ScaleInfo, tuple[int, int, int], bool]:
        """The stored scale to read ``res`` from, the integer factor between them and whether
        the stored scale is finer (downsample) or coarser (upsample)."""
        scales = self.scales()
        if not scales:
            raise FileNotFoundError(f"no layer at {self.path}")
        data_res = self.settings["data_resolution"]
        if data_res is None:
            exact = self.scale(res)
            if exact is not None:
                return exact, (1, 1, 1), True
        mode = self.settings["interpolation_mode"]
        stored = ", ".join(str(list(s.resolution)) for s in scales)
        if mode is None:
            raise ValueError(
                f"layer {self.path} is stored at {stored}, not {list(res)}; set its "
                f"interpolation_mode (one of {', '.join(MODES)}) to read it at another resolution"
            )
        candidates = [self.scale(data_res)] if data_res is not None else scales
        best: tuple[ScaleInfo, tuple[int, int, int], bool] | None = None
        for s in candidates:
            if s is None:
                continue
            down = [r / q for r, q in zip(res, s.resolution, strict=True)]
            up = [q / r for r, q in zip(res, s.resolution, strict=True)]
            if all(_is_int(d) for d in down):
                f = ivec3(down)
                if best is None or not best[2] or np.prod(f) < np.prod(best[1]):
                    best = (s, f, True)
            elif all(_is_int(u) for u in up) and (best is None or not best[2]):
                best = (s, ivec3(up), False)
        if best is None:
            raise ValueError(
                f"layer {self.path} stored at {stored} cannot be resampled to {list(res)}: "
                "resolutions must differ by whole factors"
            )
        return best

    # ------------------------------------------------------------------ reading

    def read(self, idx: VolumetricIndex) -> npt.NDArray[Any]:
        """The voxels of ``idx`` as a (C, X, Y, Z) array; voxels outside the stored region
        read as zero."""
        return self.read_async(idx).result()

    def prefetch(self, idx: VolumetricIndex) -> None:
        """Start reading ``idx`` now for a read of it that follows soon in this process (by
        any layer object with these settings): that read then takes this one's data, so a
        runner can read the next task's input while the current task computes. At most
        :data:`PREFETCH_KEPT` reads wait; a write to the layer drops them. Layers with
        processors are not read ahead."""
        if self.read_procs or self.index_procs or self.write_procs:
            return
        key = (idx.resolution, idx.start, idx.stop)
        ahead = self._rt.ahead
        if key in ahead:
            return
        started = self.read_async(idx)
        with self._lock:
            ahead[key] = started
            while len(ahead) > PREFETCH_KEPT:
                ahead.pop(next(iter(ahead)))

    def read_async(self, idx: VolumetricIndex) -> ReadResult:
        """Start reading ``idx``; ``.result()`` gives the array (resampled reads are done
        before this returns). Index processors apply to ``idx`` first, read processors to
        the data, in their order."""
        ahead = self._rt.ahead
        if ahead and not (self.read_procs or self.index_procs or self.write_procs):
            with self._lock:
                found = ahead.pop((idx.resolution, idx.start, idx.stop), None)
            if found is not None:
                return found
        idx = self._index(idx)
        scale, factor, finer = self._scale_for_read(idx.resolution)
        if factor == (1, 1, 1):
            started = self._start_read(scale, idx)
        else:
            started = ReadResult(value=self._read_resampled(scale, factor, finer, idx))
        if self.read_procs:
            started.post = self._apply_read_procs
        return started

    def _apply_read_procs(self, data: npt.NDArray[Any]) -> npt.NDArray[Any]:
        for proc in self.read_procs:
            data = np.asarray(proc(data))
        return data

    def _read_resampled(
        self, scale: ScaleInfo, factor: IVec3, finer: bool, idx: VolumetricIndex
    ) -> npt.NDArray[Any]:
        mode = str(self.settings["interpolation_mode"])
        if finer:
            src = self._read_stored(scale, idx.at_resolution(scale.resolution))
            return downsample(src, factor, mode)
        coarse = idx.at_resolution(scale.resolution) if _on_grid(idx, scale.resolution) else \
            VolumetricIndex.from_bbox(idx.bbox, scale.resolution, "expand")
        src = upsample(self._read_stored(scale, coarse), factor)
        off = [(a - b) for a, b in zip(idx.start,
               [c * f for c, f in zip(coarse.start, factor, strict=True)], strict=True)]
        sx, sy, sz = idx.shape
        return src[:, off[0]:off[0] + sx, off[1]:off[1] + sy, off[2]:off[2] + sz]

    def _start_read(self, scale: ScaleInfo, idx: VolumetricIndex) -> ReadResult:
        store = self._store(scale)
        inside = idx.intersection(scale.index)
        shape = (scale.num_channels, *idx.shape)
        if inside.is_empty():
            return ReadResult(value=np.zeros(shape, dtype=scale.dtype))
        a, b = inside.start, inside.stop
        fut = store[:, a[0]:b[0], a[1]:b[1], a[2]:b[2]].read()
        if inside.shape == idx.shape:
            return ReadResult(future=fut)
        where = (slice(None), *inside.slices_in(idx))
        return ReadResult(future=fut, shape=shape, where=where, dtype=scale.dtype)

    def _read_stored(self, scale: ScaleInfo, idx: VolumetricIndex) -> npt.NDArray[Any]:
        return self._start_read(scale, idx).result()

    def __getitem__(self, idx: VolumetricIndex) -> npt.NDArray[Any]:
        return self.read(idx)

    # ------------------------------------------------------------------ writing

    def write(self, idx: VolumetricIndex, data: npt.NDArray[Any]) -> None:
        """Write ``data`` ((C, X, Y, Z), or (X, Y, Z) for one channel) at ``idx``; the parts
        outside the stored region are dropped. Floats written to integer layers are rounded."""
        self.write_async(idx, data).result()

    def write_async(self, idx: VolumetricIndex, data: npt.NDArray[Any],
                    transaction: ts.Transaction | None = None) -> Any:
        """Start a write; ``.result()`` waits until it is durable (with ``transaction``: until
        the data is staged in it; it is durable once the transaction is committed)."""
        if self.readonly:
            raise PermissionError(f"layer {self.path} is read-only")
        if self._rt.ahead:
            with self._lock:
                self._rt.ahead.clear()  # they may predate this write
        idx = self._index(idx)
        if self.write_procs:
            for proc in self.write_procs:
                data = np.asarray(proc(data))
        scale = self._scale_for_write(idx.resolution)
        if scale is None:
            stored = ", ".join(str(list(s.resolution)) for s in self.scales()) or "nothing"
            raise ValueError(
                f"layer {self.path} has no scale at {list(idx.resolution)} (it holds {stored}); "
                "create it first (prepare_for_write, or the flow that writes it)"
            )
        arr = np.asarray(data)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.shape[1:] != idx.shape or arr.shape[0] != scale.num_channels:
            raise ValueError(
                f"cannot write an array of shape {list(arr.shape)} to {self.path} at an index of "
                f"shape {list(idx.shape)} with {scale.num_channels} channel(s)"
            )
        arr = cast_for_layer(arr, scale.dtype)
        inside = idx.intersection(scale.index)
        if inside.is_empty():
            return _Done()
        arr = arr[(slice(None), *inside.slices_in(idx))]
        a, b = inside.start, inside.stop
        store = self._store(scale)
        if transaction is not None:
            store = store.with_transaction(transaction)
        return store[:, a[0]:b[0], a[1]:b[1], a[2]:b[2]].write(arr)

    def __setitem__(self, idx: VolumetricIndex, data: npt.NDArray[Any]) -> None:
        self.write(idx, data)

    def _scale_for_write(self, resolution: Sequence[float]) -> ScaleInfo | None:
        return self.scale(resolution)


class _Done:
    def result(self) -> None:
        return None


class ReadResult:
    """A read in progress: a tensorstore future, placed into a zero-filled array when the
    read covers only part of the requested index."""

    def __init__(
        self,
        future: Any = None,
        value: npt.NDArray[Any] | None = None,
        shape: tuple[int, ...] | None = None,
        where: tuple[slice, ...] | None = None,
        dtype: str | None = None,
    ) -> None:
        self._future = future
        self._value = value
        #: applied to the array once, when it is ready (a layer's read processors)
        self.post: Callable[[npt.NDArray[Any]], npt.NDArray[Any]] | None = None
        self._shape = shape
        self._where = where
        self._dtype = dtype

    def result(self) -> npt.NDArray[Any]:
        if self._value is None:
            got: npt.NDArray[Any] = self._future.result()
            if self._shape is None:
                self._value = got
            else:
                out = np.zeros(self._shape, dtype=self._dtype)
                assert self._where is not None
                out[self._where] = got
                self._value = out
        if self.post is not None:
            post, self.post = self.post, None
            self._value = post(self._value)
        return self._value


def cast_for_layer(arr: npt.NDArray[Any], dtype: str) -> npt.NDArray[Any]:
    """``arr`` as ``dtype``; floats going to integers are rounded to nearest and clipped to
    the integer range first."""
    target = np.dtype(dtype)
    if arr.dtype == target:
        return arr
    if np.issubdtype(target, np.integer) and np.issubdtype(arr.dtype, np.floating):
        info = np.iinfo(target)
        rounded: npt.NDArray[Any] = np.clip(np.rint(arr), info.min, info.max)
        return rounded.astype(target)
    return arr.astype(target)


def _is_int(x: float) -> bool:
    return abs(x - round(x)) < 1e-6 and round(x) >= 1


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(abs(x - y) <= 1e-6 * max(1.0, abs(x)) for x, y in zip(a, b, strict=True))


def _on_grid(idx: VolumetricIndex, res: Vec3) -> bool:
    try:
        idx.at_resolution(res)
    except ValueError:
        return False
    return True


StoredLookup = Callable[["TSLayer"], tuple[str | None, list[ScaleInfo]]]


def _stored_on_disk(layer: TSLayer) -> tuple[str | None, list[ScaleInfo]]:
    """The format and scales stored for ``layer`` (``(None, [])`` when nothing is there)."""
    return layer.format(), layer.scales()


def _at(scales: Sequence[ScaleInfo], resolution: Sequence[float]) -> ScaleInfo | None:
    res = vec3(resolution)
    for s in scales:
        if _close(s.resolution, res):
            return s
    return None


def _differences(have: ScaleInfo, want: dict[str, Any], *, check_resolution: bool) -> list[str]:
    out: list[str] = []
    pairs: list[tuple[str, Any, Any]] = [
        ("dtype", np.dtype(have.dtype).name, np.dtype(want["dtype"]).name
         if "dtype" in want else None),
        ("num_channels", have.num_channels, want.get("num_channels")),
        ("layer_type", have.layer_type, want.get("layer_type")),
    ]
    if check_resolution:
        pairs += [
            ("chunk_size", list(have.chunk_size), want.get("chunk_size")),
            ("size", list(have.size), want.get("size")),
            ("voxel_offset", list(have.voxel_offset), want.get("voxel_offset")),
        ]
    for name, h, w in pairs:
        if w is not None and list(np.atleast_1d(h)) != list(np.atleast_1d(w)):
            out.append(f"{name} is {h}, the spec asks for {w}")
    return out


#: zetta's layer parameters build_ts_layer also takes; any of them makes it a zetta layer
ZETTA_INFO_PARAMS = ("on_info_exists", "info_field_overrides", "info_add_scales",
                     "info_add_scales_ref", "info_add_scales_mode", "info_scales", "info_type",
                     "info_data_type", "info_inherit_all_params", "info_bbox", "info_encoding",
                     "info_extra_scale_data")


@register("build_ts_layer")
def build_ts_layer(
    path: str,
    format: str = "auto",
    readonly: bool = False,
    info_dtype: str | None = None,
    info_num_channels: int | None = None,
    info_resolution: list[float] | None = None,
    info_voxel_offset: list[int] | None = None,
    info_size: list[int] | None = None,
    info_chunk_size: list[int] | None = None,
    info_compression: str | None = None,
    info_layer_type: str | None = None,
    info_reference_path: str | None = None,
    info_overwrite: bool = False,
    data_resolution: list[float] | None = None,
    interpolation_mode: str | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    concurrency: int = 0,
    read_procs: list[Any] | None = None,
    write_procs: list[Any] | None = None,
    index_procs: list[Any] | None = None,
    default_desired_resolution: list[float] | None = None,
    index_resolution: list[float] | None = None,
    allow_slice_rounding: bool = False,
    mask_value_thr: float = 0.0,
    cache_bytes_limit: int | None = None,
    on_info_exists: str | None = None,
    info_field_overrides: dict[str, Any] | None = None,
    info_add_scales: list[Any] | None = None,
    info_add_scales_ref: Any = None,
    info_add_scales_mode: str | None = None,
    info_scales: list[list[float]] | None = None,
    info_type: str | None = None,
    info_data_type: str | None = None,
    info_inherit_all_params: bool | None = None,
    info_bbox: Any = None,
    info_encoding: str | None = None,
    info_extra_scale_data: dict[str, Any] | None = None,
    info_keep_existing_scales: bool = True,
) -> TSLayer:
    """A tensorstore-backed volumetric layer.

    ``path`` is a local path or any kvstore URL tensorstore accepts (``gs://``, ``s3://``,
    ``file://``). ``format`` is ``zarr``, ``zarr3``, ``n5`` or ``precomputed``; ``auto`` detects
    an existing layer and creates zarr otherwise. The ``info_*`` settings describe the layer
    to create when it does not exist; an existing layer whose metadata differs is refused
    unless ``info_overwrite`` (which replaces it, data included). ``interpolation_mode``
    (nearest, average, mode, max) allows reads at resolutions other than the stored ones;
    ``data_resolution`` forces reads to come from that stored resolution. ``read_procs``,
    ``write_procs`` and ``index_procs`` are applied to what is read, written and indexed.

    zetta's build_ts_layer parameters are accepted too: given any of its info parameters
    (``info_scales``: its 0.4 set; ``on_info_exists``, ``info_field_overrides``,
    ``info_add_scales*``: its earlier set) the layer is a neuroglancer precomputed layer whose
    info follows them, as ``build_cv_layer`` builds it.
    """
    zetta = {n: v for n, v in (
        ("on_info_exists", on_info_exists), ("info_field_overrides", info_field_overrides),
        ("info_add_scales", info_add_scales), ("info_add_scales_ref", info_add_scales_ref),
        ("info_add_scales_mode", info_add_scales_mode), ("info_scales", info_scales),
        ("info_type", info_type), ("info_data_type", info_data_type),
        ("info_inherit_all_params", info_inherit_all_params), ("info_bbox", info_bbox),
        ("info_encoding", info_encoding), ("info_extra_scale_data", info_extra_scale_data),
    ) if v is not None}
    if zetta:
        specflow_only = [n for n, v in (
            ("info_dtype", info_dtype), ("info_resolution", info_resolution),
            ("info_voxel_offset", info_voxel_offset), ("info_size", info_size),
            ("info_compression", info_compression), ("info_layer_type", info_layer_type),
        ) if v is not None]
        if specflow_only or format not in ("auto", "precomputed"):
            raise ValueError(
                f"{', '.join(zetta)} describe a zetta precomputed layer; they cannot be "
                f"combined with {', '.join(specflow_only) or 'format ' + repr(format)}"
            )
        from specflow.volumes import cloudvol

        common: dict[str, Any] = {
            "path": path, "default_desired_resolution": default_desired_resolution,
            "index_resolution": index_resolution, "data_resolution": data_resolution,
            "interpolation_mode": interpolation_mode, "mask_value_thr": mask_value_thr,
            "readonly": readonly, "info_reference_path": info_reference_path,
            "info_type": info_type, "info_data_type": info_data_type,
            "info_num_channels": info_num_channels, "info_chunk_size": info_chunk_size,
            "info_encoding": info_encoding, "allow_slice_rounding": allow_slice_rounding,
            "index_procs": index_procs, "read_procs": read_procs, "write_procs": write_procs,
            "cache_bytes_limit": cache_bytes_limit,
        }
        if info_scales is not None:
            return cloudvol.build_cv_layer(
                **common, info_inherit_all_params=bool(info_inherit_all_params),
                info_bbox=info_bbox, info_scales=info_scales,
                info_extra_scale_data=info_extra_scale_data, info_overwrite=info_overwrite,
                info_keep_existing_scales=info_keep_existing_scales,
            )
        return cloudvol.build_cv_layer_legacy(
            **common, info_field_overrides=info_field_overrides,
            info_add_scales=info_add_scales, info_add_scales_ref=info_add_scales_ref,
            info_add_scales_mode=info_add_scales_mode or "merge",
            on_info_exists=on_info_exists or "extend",
        )
    if interpolation_mode is not None and interpolation_mode not in MODES:
        from specflow.volumes.cloudvol import interpolation

        interpolation_mode = interpolation(interpolation_mode)
    return TSLayer(
        path, format=format,  # type: ignore[arg-type]
        readonly=readonly, info_dtype=info_dtype,
        info_num_channels=info_num_channels, info_resolution=info_resolution,
        info_voxel_offset=info_voxel_offset, info_size=info_size,
        info_chunk_size=info_chunk_size, info_compression=info_compression,
        info_layer_type=info_layer_type, info_reference_path=info_reference_path,
        info_overwrite=info_overwrite, data_resolution=data_resolution,
        interpolation_mode=interpolation_mode,
        cache_bytes=cache_bytes_limit if cache_bytes_limit is not None else cache_bytes,
        concurrency=concurrency, read_procs=read_procs or (), write_procs=write_procs or (),
        index_procs=index_procs or (),
    )
