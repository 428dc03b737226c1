"""VolumetricCallableOperation and InterpolateOperation inside the subchunkable flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fixtures import expected_input, input_name

import specflow
from specflow import build
from specflow.volumes import VolumetricIndex

SRC = f"assets/inputs/{input_name('uint8')}"
BBOX = {"@type": "BBox3D.from_coords", "start_coord": [2048, 2048, 2000],
        "end_coord": [2048 + 512, 2048 + 256, 2002], "resolution": [128, 128, 40]}


def flow(op: dict[str, Any], dst_path: str, res: list[int], chunk: list[int]) -> Any:
    return build({
        "@version": "0.4", "@type": "build_subchunkable_apply_flow", "op": op,
        "processing_chunk_sizes": [chunk], "dst_resolution": res, "bbox": BBOX,
        "skip_intermediaries": True,
        "op_kwargs": {"src": {"@type": "build_cv_layer", "path": SRC}},
        "dst": {"@type": "build_cv_layer", "path": dst_path, "info_reference_path": SRC,
                "info_scales": [res], "info_inherit_all_params": True, "info_chunk_size": chunk},
    }, opt_ins={"eval"})


def test_interpolate_img_downsamples_by_averaging(zetta_workdir: Path) -> None:
    op = {"@type": "InterpolateOperation", "res_change_mult": [2, 2, 1], "mode": "img"}
    report = specflow.execute(flow(op, "assets/outputs/ds", [256, 256, 40], [128, 128, 1]),
                              backend="inline", checkpoint=False)
    assert report.status == "done"
    dst = build({"@type": "build_cv_layer", "path": "assets/outputs/ds"})
    got = dst.read(VolumetricIndex.from_voxels([1024, 1024, 2000], [1280, 1152, 2002],
                                               [256, 256, 40]))
    fine = expected_input("uint8", [2048, 2048, 2000], [2560, 2304, 2002]).astype(np.float64)
    want = np.rint(fine.reshape(1, 256, 2, 128, 2, 2).mean(axis=(2, 4))).astype(np.uint8)
    assert np.array_equal(got, want)


def test_callable_operation_with_crop_pad_is_a_copy(zetta_workdir: Path) -> None:
    op = {"@type": "VolumetricCallableOperation", "crop_pad": [8, 8, 0],
          "fn": {"@type": "lambda", "lambda_str": "lambda src: src * 1"}}
    report = specflow.execute(flow(op, "assets/outputs/cp", [128, 128, 40], [256, 256, 1]),
                              backend="inline", checkpoint=False)
    assert report.status == "done"
    dst = build({"@type": "build_cv_layer", "path": "assets/outputs/cp"})
    region = VolumetricIndex.from_voxels([2048, 2048, 2000], [2560, 2304, 2002], [128, 128, 40])
    assert np.array_equal(dst.read(region), expected_input("uint8", region.start, region.stop))
