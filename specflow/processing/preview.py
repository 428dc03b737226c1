"""Looking at results: a PNG of one slice (numpy and zlib only) and a summary of a layer."""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from specflow.builder.registry import register
from specflow.flow.core import TaskableOperation
from specflow.flow.task import Task
from specflow.volumes.geometry import VolumetricIndex, vec3
from specflow.volumes.layers import TSLayer


def png_bytes(image: npt.NDArray[Any]) -> bytes:
    """An 8-bit greyscale (H, W) or RGB (H, W, 3) image as PNG bytes."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"png_bytes needs uint8 pixels, got {img.dtype}; scale with to_uint8")
    if img.ndim == 2:
        colour, channels = 0, 1
    elif img.ndim == 3 and img.shape[2] == 3:
        colour, channels = 2, 3
    else:
        raise ValueError(f"png_bytes needs an (H, W) or (H, W, 3) image, got {list(img.shape)}")
    h, w = img.shape[:2]
    rows = img.reshape(h, w * channels)
    raw = np.zeros((h, w * channels + 1), dtype=np.uint8)  # filter byte 0 (none) per row
    raw[:, 1:] = rows

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def to_uint8(
    arr: npt.NDArray[Any], lo: float | None = None, hi: float | None = None
) -> npt.NDArray[np.uint8]:
    """``arr`` scaled linearly so ``lo`` (default: its minimum) is 0 and ``hi`` 255."""
    a = np.asarray(arr, dtype=np.float64)
    lo = float(np.min(a)) if lo is None else lo
    hi = float(np.max(a)) if hi is None else hi
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out: npt.NDArray[np.uint8] = np.clip(np.rint((a - lo) * scale), 0, 255).astype(np.uint8)
    return out


def write_png(path: str, image: npt.NDArray[Any]) -> str:
    """Write ``image`` (scaled to 8 bits when it is not uint8) as a PNG; returns the path."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = to_uint8(img)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(png_bytes(img))
    os.replace(tmp, path)
    return path


def _summary(
    layer: TSLayer, resolution: list[float], png_path: str | None = None, z: int | None = None,
    channel: int = 0,
) -> dict[str, Any]:
    """Statistics of the whole layer at ``resolution``, and a PNG of slice ``z`` (default: the
    middle one) when ``png_path`` is given. Printed and returned."""
    scale = layer.scale(vec3(resolution))
    if scale is None:
        raise ValueError(f"layer {layer.path} has no data at resolution {resolution}")
    whole = scale.index
    total = 0.0
    count = 0
    lo, hi = np.inf, -np.inf
    nonzero = 0
    for slab in whole.iter_chunks((whole.shape[0], whole.shape[1], 16)):
        data = layer.read(slab)[channel].astype(np.float64)
        total += float(data.sum())
        count += data.size
        lo, hi = min(lo, float(data.min())), max(hi, float(data.max()))
        nonzero += int(np.count_nonzero(data))
    out: dict[str, Any] = {
        "path": layer.path, "resolution": list(scale.resolution), "shape": list(scale.size),
        "voxel_offset": list(scale.voxel_offset), "dtype": scale.dtype,
        "min": lo, "max": hi, "mean": total / max(count, 1),
        "nonzero_fraction": nonzero / max(count, 1),
    }
    if png_path is not None:
        zz = whole.start[2] + whole.shape[2] // 2 if z is None else int(z)
        a, b = whole.start, whole.stop
        plane = VolumetricIndex.from_voxels((a[0], a[1], zz), (b[0], b[1], zz + 1), whole.resolution)
        image = layer.read(plane)[channel, :, :, 0].T  # rows are y, columns x
        write_png(png_path, to_uint8(image, lo, hi))
        out["png"] = os.path.abspath(png_path)
        out["png_z"] = zz
    lines = [f"{k}: {v}" for k, v in out.items()]
    print("volume summary\n  " + "\n  ".join(lines), flush=True)
    return out


volume_summary = TaskableOperation(_summary, operation_name="volume_summary",
                                   outputs=("png_path",))


@register("volume_summary")
def build_volume_summary(
    layer: TSLayer, resolution: list[float], png_path: str | None = None, z: int | None = None,
    channel: int = 0,
) -> Task:
    """A task that prints (and returns) statistics of ``layer`` and writes a PNG of one
    z slice to ``png_path``."""
    if not isinstance(layer, TSLayer):
        raise ValueError(f"layer must be a layer (build_ts_layer), got {type(layer).__name__}")
    return volume_summary.make_task(layer=layer, resolution=list(vec3(resolution)),
                                    png_path=png_path, z=z, channel=channel)


__all__ = ["build_volume_summary", "png_bytes", "to_uint8", "write_png"]
