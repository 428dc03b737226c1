from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from specflow.volumes import VolumetricIndex, build_ts_layer

RES = (1.0, 1.0, 1.0)
SHAPE = (32, 32, 16)


def _bytes_under(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


@pytest.mark.parametrize("fmt", ["zarr", "zarr3", "n5"])
def test_layers_write_and_read_back_every_codec(tmp_path: Path, fmt: str) -> None:
    idx = VolumetricIndex.from_voxels((0, 0, 0), SHAPE, RES)
    # smooth data compresses; every codec must give it back bit for bit
    x = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(1, *SHAPE) % 7
    sizes = {}
    for codec in ("raw", "zstd", "blosc", "gzip"):
        path = tmp_path / f"{fmt}-{codec}"
        layer = build_ts_layer(str(path), format=fmt, info_dtype="float32",
                               info_size=list(SHAPE), info_chunk_size=[16, 16, 16],
                               info_resolution=list(RES), info_compression=codec)
        layer.prepare_for_write(RES)
        layer.write(idx, x)
        again = build_ts_layer(str(path))
        info = again.scale(RES)
        assert info is not None and info.compression == codec
        assert np.array_equal(again.read(idx), x)
        sizes[codec] = _bytes_under(path)
    assert all(sizes[c] < sizes["raw"] / 2 for c in ("zstd", "blosc", "gzip")), sizes


def test_precomputed_gzip_is_refused_with_the_encodings_it_has(tmp_path: Path) -> None:
    layer = build_ts_layer(str(tmp_path / "pc"), format="precomputed", info_dtype="float32",
                           info_size=list(SHAPE), info_resolution=list(RES),
                           info_compression="gzip")
    with pytest.raises(ValueError, match="raw, jpeg, png or compressed_segmentation"):
        layer.prepare_for_write(RES)
