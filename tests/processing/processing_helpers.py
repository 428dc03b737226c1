from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from specflow.run import execute
from specflow.volumes import TSLayer, VolumetricIndex, build_ts_layer

RES = (1.0, 1.0, 1.0)


def run_inline(target: Any) -> None:
    report = execute(target, backend="inline", checkpoint=False)
    assert report.status == "done", [f.error for f in report.failures]


def make_volume(path: Path, dtype: str = "float32", shape: tuple[int, int, int] = (48, 40, 32),
                chunk: tuple[int, int, int] = (16, 16, 16), seed: int = 0) -> tuple[TSLayer, Any]:
    layer = build_ts_layer(str(path), info_dtype=dtype, info_size=list(shape),
                           info_chunk_size=list(chunk), info_resolution=list(RES),
                           info_overwrite=True)
    layer.prepare_for_write(RES)
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        data = rng.integers(0, np.iinfo(np.dtype(dtype)).max, size=(1, *shape)).astype(dtype)
    else:
        data = rng.random((1, *shape), dtype=np.float32).astype(dtype)
    layer.write(whole(shape), data)
    return layer, data


def whole(shape: tuple[int, int, int]) -> VolumetricIndex:
    return VolumetricIndex.from_voxels((0, 0, 0), shape, RES)


def dst_like(path: Path, ref: TSLayer, **kw: Any) -> TSLayer:
    return build_ts_layer(str(path), info_reference_path=ref.path, **kw)
