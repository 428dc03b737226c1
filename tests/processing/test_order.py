from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from processing_helpers import RES, dst_like, make_volume, whole

from specflow.processing import build_subchunkable_apply_flow, mean_filter
from specflow.processing.order import local_order
from specflow.run import execute
from specflow.volumes import VolumetricIndex


def test_local_order_tiles_each_chunk_once_in_compact_runs() -> None:
    region = VolumetricIndex.from_voxels((5, -8, 2), (5 + 6 * 8, -8 + 5 * 4, 2 + 9 * 2), RES)
    chunk = (8, 4, 2)
    got = list(local_order(region, chunk))
    raster = list(region.iter_chunks(chunk, mode="exact"))
    assert len(got) == len(raster) == 6 * 5 * 9
    assert set(got) == set(raster) and got != raster
    # the first 64 chunks are one brick of 4^3 chunks
    first = got[:64]
    lo = [min(c.start[a] for c in first) for a in range(3)]
    hi = [max(c.stop[a] for c in first) for a in range(3)]
    assert lo == list(region.start) and hi == [5 + 32, -8 + 16, 2 + 8]
    # bricks at the far edges are partial, and still only whole chunks
    assert all(c.shape == chunk for c in got)


def test_local_order_is_lazy_and_refuses_a_region_it_does_not_tile() -> None:
    huge = VolumetricIndex.from_voxels((0, 0, 0), (10 ** 6, 10 ** 6, 10 ** 6), RES)
    three = list(itertools.islice(local_order(huge, (1, 1, 1)), 3))
    assert [c.start for c in three] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    with pytest.raises(ValueError, match="not tiled"):
        next(local_order(whole((10, 10, 10)), (3, 5, 5)))


@pytest.mark.parametrize("kind", ["direct", "staged", "two_levels"])
def test_brick_ordered_flow_on_two_workers_equals_the_whole_volume_filter(
        tmp_path: Path, kind: str) -> None:
    shape = (48, 40, 56)  # 6 x 5 x 7 chunks of 8: more than one brick along every axis
    src, data = make_volume(tmp_path / "src", shape=shape, chunk=(8, 8, 8), seed=3)
    want = mean_filter(data, radius=2)
    dst = dst_like(tmp_path / "dst", src)
    # staged: every output voxel, blend bands included, has its full context, so the max blend
    # of overlapping outputs is exact
    extra: dict[str, Any] = {
        "direct": {"processing_chunk_sizes": [[8, 8, 8]], "processing_crop_pads": [[2, 2, 2]],
                   "skip_intermediaries": True},
        "staged": {"processing_chunk_sizes": [[8, 8, 8]], "processing_crop_pads": [[2, 2, 2]],
                   "processing_blend_pads": [[1, 1, 1]], "processing_blend_modes": "max",
                   "level_intermediaries_dirs": [str(tmp_path / "t")]},
        # tasks of 16 x 8 x 8 computed as 4^3 sub-chunks with the context (the user chunking
        # of benchmarks/volume.py, scaled down)
        "two_levels": {"processing_chunk_sizes": [[16, 8, 8], [4, 4, 4]],
                       "processing_crop_pads": [[0, 0, 0], [2, 2, 2]],
                       "skip_intermediaries": True},
    }[kind]
    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), bbox=whole(shape).bbox,
        fn=functools.partial(mean_filter, radius=2), op_kwargs={"src": src}, **extra)
    report = execute(flow, backend="local", workers=2, checkpoint=False)
    assert report.status == "done", [f.error for f in report.failures]
    tasks = 6 * 5 * 7 // (2 if kind == "two_levels" else 1)
    assert report.counts["subchunkable.process_chunk"]["done"] == tasks
    assert np.array_equal(dst.read(whole(shape)), want)
