from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from specflow.builder import build
from specflow.processing import SubchunkableConfigError, build_subchunkable_apply_flow, copy
from specflow.spec import SpecError
from specflow.volumes import BBox3D, build_ts_layer

BOX = BBox3D((0, 0, 0), (64, 64, 64))


def flow(tmp_path: Path, **kw: Any) -> Any:
    args: dict[str, Any] = dict(dst=build_ts_layer(str(tmp_path / "dst")), dst_resolution=[1, 1, 1],
                                processing_chunk_sizes=[[32, 32, 32]], fn=copy, bbox=BOX)
    args.update(kw)
    return build_subchunkable_apply_flow(**args)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"processing_chunk_sizes": [[32, 32, 32], [12, 16, 16]]},
         r"processing_chunk_sizes\[1\] = \[12, 16, 16\] must divide the padded chunk of level "
         r"0, \[32, 32, 32\].*use e.g. \[8, 16, 16\], or set auto_divisibility"),
        ({"processing_blend_pads": [[20, 0, 0]], "level_intermediaries_dirs": ["x"]},
         r"more than half.*at most \[16, 16, 16\]"),
        ({"processing_blend_pads": [[4, 4, 4]]}, r"needs level_intermediaries_dirs"),
        ({"processing_blend_pads": [[4, 4, 4]], "skip_intermediaries": True},
         r"skip_intermediaries writes each top-level chunk straight to dst"),
        ({"skip_intermediaries": True, "level_intermediaries_dirs": ["x"]},
         r"either skip_intermediaries"),
        ({"skip_intermediaries": True, "max_reduction_chunk_size": [64, 64, 64]},
         r"max_reduction_chunk_size has no effect"),
        ({"processing_chunk_sizes": [[32, 32, 32], [16, 16, 16]],
          "processing_blend_modes": ["linear", "defer"]}, r"only the top level"),
        ({"processing_blend_modes": "smooth"}, r"expected one of linear, quadratic, max, defer"),
        ({"processing_crop_pads": [[1, 1, 1], [1, 1, 1]]}, r"2 entries but .* 1 levels"),
        ({"op": copy}, r"exactly one of fn"),
        ({"start_coord": [0, 0, 0]}, r"either as bbox or as start_coord"),
        ({"bbox": None, "start_coord": [0, 0, 0], "end_coord": [8, 8, 8]},
         r"all of start_coord, end_coord and coord_resolution"),
        ({"bbox": BBox3D((0, 0, 0), (63, 64, 64)), "expand_bbox_processing": False},
         r"not a multiple of processing_chunk_sizes\[0\] = \[32, 32, 32\].*e.g. \[21, 32, 32\]"),
        ({"dst_resolution": [2, 2, 2], "bbox": BBox3D((1, 0, 0), (64, 64, 64))},
         r"not on the voxel grid of dst_resolution \[2.0, 2.0, 2.0\]"),
        ({"processing_chunk_sizes": [32, 32, 32]}, r"write \[\[32, 32, 32\]\] for one level"),
        ({"processing_crop_pads": [[-1, 0, 0]]}, r"must not be negative"),
    ],
)
def test_inconsistent_parameters_say_what_to_change(tmp_path: Path, kw: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(SubchunkableConfigError, match=message):
        flow(tmp_path, **kw)


def test_auto_divisibility_picks_a_size_that_fits(tmp_path: Path) -> None:
    built = flow(tmp_path, processing_chunk_sizes=[[32, 32, 32], [12, 16, 16]],
                 auto_divisibility=True)
    schema = built.fn.__self__
    assert schema.plan.levels[1].chunk == (8, 16, 16)


def test_spec_errors_name_the_field(tmp_path: Path) -> None:
    spec = {"@type": "build_subchunkable_apply_flow", "fn": {"@type": "copy", "@mode": "partial"},
            "dst": {"@type": "build_ts_layer", "path": str(tmp_path / "d")},
            "dst_resolution": [1, 1, 1], "processing_chunk_sizes": [[32, 32, 32]],
            "processing_blend_pads": [[4, 4, 4]], "bbox": {"@type": "BBox3D.from_coords",
                                                      "start_coord": [0, 0, 0],
                                                      "end_coord": [64, 64, 64]}}
    with pytest.raises(SpecError, match="needs level_intermediaries_dirs"):
        build({"target": spec})
