from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from specflow.builder import build
from specflow.processing import SubchunkableConfigError, build_subchunkable_apply_flow, copy
from specflow.processing.subchunkable import check_arguments
from specflow.spec import SpecError
from specflow.volumes import BBox3D, build_ts_layer

BOX = BBox3D((0, 0, 0), (64, 64, 64))
TWO = [[32, 32, 32], [16, 16, 16]]


def flow(tmp_path: Path, **kw: Any) -> Any:
    args: dict[str, Any] = dict(
        dst=build_ts_layer(str(tmp_path / "dst"), info_dtype="uint8", info_size=[64, 64, 64],
                           info_chunk_size=[32, 32, 32]),
        dst_resolution=[1, 1, 1], processing_chunk_sizes=[[32, 32, 32]], fn=copy, bbox=BOX,
        level_intermediaries_dirs=[str(tmp_path / "tmp")], verbose=False)
    args.update(kw)
    return build_subchunkable_apply_flow(**args)


# Each case breaks one of the rules of zetta's subchunkable flow; the message must name
# the parameters involved and say what to change.
CASES: list[tuple[dict[str, Any], str]] = [
    ({"dst_tighten_bounds": True}, r"dst_tighten_bounds is no longer supported.*info_bbox"),
    ({"dst": None, "level_intermediaries_dirs": None},
     r"dst is null, so skip_intermediaries must be true"),
    ({"dst": None, "skip_intermediaries": True, "level_intermediaries_dirs": None,
      "expand_bbox_backend": True}, r"expand_bbox_backend .* dst is null"),
    ({"dst": None, "skip_intermediaries": True, "level_intermediaries_dirs": None,
      "max_reduction_chunk_size": [64, 64, 64]}, r"max_reduction_chunk_size is unused"),
    ({"dst": None, "skip_intermediaries": True, "level_intermediaries_dirs": None,
      "auto_bbox": True, "bbox": None}, r"auto_bbox takes the region from dst's bounds"),
    ({"auto_bbox": True}, r"auto_bbox takes the region from dst, so bbox must not be given"),
    ({"bbox": None}, r"no region to process.*missing start_coord, end_coord, coord_resolution"),
    ({"start_coord": [0, 0, 0]}, r"bbox was given, so start_coord must not be"),
    ({"op": copy}, r"give fn or op, not both"),
    ({"fn": None, "op": copy, "fn_semaphores": ["cpu"]}, r"fn_semaphores applies to fn only"),
    ({"fn": None}, r"give one of fn .* or op .*neither"),
    ({"generate_ng_link": True}, r"generate_ng_link .* verbose: false"),
    ({"processing_chunk_sizes": TWO, "processing_crop_pads": [[0, 0, 0]],
      "level_intermediaries_dirs": ["a", "b"]},
     r"processing_crop_pads has 1 entries but processing_chunk_sizes has 2 levels"),
    ({"processing_blend_modes": "defer", "skip_intermediaries": True,
      "level_intermediaries_dirs": None}, r'"defer" stages the outputs.*skip_intermediaries'),
    ({"processing_chunk_sizes": TWO, "processing_blend_modes": ["linear", "defer"],
      "level_intermediaries_dirs": ["a", "b"]}, r"only the top level"),
    ({"processing_chunk_sizes": TWO, "processing_blend_modes": ["linear"],
      "level_intermediaries_dirs": ["a", "b"]},
     r"processing_blend_modes has 1 entries but processing_chunk_sizes has 2 levels"),
    ({"max_reduction_chunk_size": [16, 64, 64]},
     r"max_reduction_chunk_size \[16, 64, 64\] must be at least the top-level"),
    ({"max_reduction_chunk_size": [32, 16, 32], "processing_chunk_sizes": [[16, 16, 16]]},
     r"must be at least the chunk size of dst at dst_resolution, \[32, 32, 32\]"),
    ({"skip_intermediaries": True, "reduction_worker_type": "x"},
     r"reduction_worker_type is for reduction tasks"),
    ({"skip_intermediaries": True}, r"level_intermediaries_dirs was given with "
                                    r"skip_intermediaries"),
    ({"skip_intermediaries": True, "level_intermediaries_dirs": None,
      "processing_blend_pads": [4, 4, 4]}, r"processing_blend_pads must be \[0, 0, 0\]"),
    ({"skip_intermediaries": True, "level_intermediaries_dirs": None,
      "processing_chunk_sizes": TWO, "processing_crop_pads": [[2, 2, 2], [0, 0, 0]]},
     r"processing_crop_pads must be \[0, 0, 0\] at every level but the bottom"),
    ({"level_intermediaries_dirs": None}, r"level_intermediaries_dirs is required"),
    ({"processing_chunk_sizes": TWO}, r"level_intermediaries_dirs has 1 entries but "
                                      r"processing_chunk_sizes has 2 levels"),
    ({"auto_divisibility": True, "shrink_processing_chunk": True,
      "expand_bbox_processing": False},
     r"auto_divisibility and shrink_processing_chunk cannot both"),
    ({"auto_divisibility": True, "expand_bbox_processing": False},
     r"auto_divisibility requires expand_bbox_processing: true"),
    ({"auto_divisibility": True, "expand_bbox_backend": True},
     r"auto_divisibility requires expand_bbox_backend: false"),
    ({"shrink_processing_chunk": True}, r"shrink_processing_chunk and expand_bbox_processing"),
    ({"processing_gap": [2, 3, 0]}, r"processing_gap \[2, 3, 0\] must be even"),
    ({"processing_gap": [2, 2, 0], "processing_blend_pads": [2, 2, 2]},
     r"processing_blend_pads\[0\] .* must be \[0, 0, 0\] with a nonzero processing_gap"),
    ({"processing_gap": [2, 2, 0], "expand_bbox_resolution": True},
     r"expand_bbox_resolution cannot be used with a nonzero processing_gap"),
    ({"op_args": [1]}, r"op_args is not supported"),
    ({"processing_blend_modes": "smooth"}, r"expected one of linear, quadratic, bump, max"),
    ({"processing_chunk_sizes": [32, 32, 32]}, r"write \[\[32, 32, 32\]\] for one level"),
    ({"processing_crop_pads": [[-1, 0, 0]]}, r"must not be negative"),
    ({"processing_chunk_sizes": [[32, 32, 32], [15, 16, 16]], "level_intermediaries_dirs":
      ["a", "b"]},
     r"processing_chunk_sizes\[0\] \+ 2 \* \(processing_crop_pads\[0\] \+ "
     r"processing_blend_pads\[0\]\) = \[32, 32, 32\] is not tiled exactly by "
     r"processing_chunk_sizes\[1\] = \[15, 16, 16\]; use processing_chunk_sizes\[1\] = "
     r"\[16, 16, 16\] \(or set auto_divisibility: true\)"),
    ({"bbox": BBox3D((0, 0, 0), (63, 64, 64)), "expand_bbox_processing": False},
     r"the region's shape .* = \[63, 64, 64\] is not tiled exactly .*"
     r"or set expand_bbox_processing: true"),
    ({"dst_resolution": [2, 2, 2], "bbox": BBox3D((1, 0, 0), (64, 64, 64))},
     r"not on the voxel grid of dst_resolution \[2, 2, 2\].*expand_bbox_processing needs the "
     r"region to be integral.*set expand_bbox_resolution: true"),
    ({"processing_blend_pads": [[20, 0, 0]]}, r"more than half.*at most \[16, 16, 16\]"),
    ({"procesing_chunk_sizes": [[8, 8, 8]]}, r"did you mean 'processing_chunk_sizes'"),
    ({"max_reduction_chunk_sizes": [64, 64, 64], "max_reduction_chunk_size": [64, 64, 64]},
     r"max_reduction_chunk_size or its older spelling"),
]


@pytest.mark.parametrize(("kw", "message"), CASES)
def test_inconsistent_parameters_say_what_to_change(tmp_path: Path, kw: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(SubchunkableConfigError, match=message) as info:
        flow(tmp_path, **kw)
    assert info.value.params, "the error names the offending parameters"


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(SubchunkableConfigError, match=r"2 problems: \(1\) .*shrink") as info:
        flow(tmp_path, processing_chunk_sizes=TWO, shrink_processing_chunk=True)
    assert {"level_intermediaries_dirs", "shrink_processing_chunk"} <= set(info.value.params)


def test_validation_sees_the_rules_without_building(tmp_path: Path) -> None:
    node = {"dst": {"@type": "build_ts_layer", "path": str(tmp_path / "never")},
            "dst_resolution": [1, 1, 1], "processing_chunk_sizes": [[32, 32, 32], [13, 16, 16]],
            "level_intermediaries_dirs": ["a", "b"], "fn": {"@type": "copy", "@mode": "partial"},
            "bbox": {"@type": "BBox3D.from_coords", "start_coord": [0, 0, 0],
                     "end_coord": [64, 64, 64], "resolution": [1, 1, 1]}}
    problems = check_arguments(node)
    assert len(problems) == 1 and "is not tiled exactly" in str(problems[0])
    assert not (tmp_path / "never").exists()
    node["processing_chunk_sizes"] = [[32, 32, 32], [16, 16, 16]]
    assert check_arguments(node) == []
    node["dst"] = None
    assert "skip_intermediaries must be true" in str(check_arguments(node)[0])


def test_auto_divisibility_keeps_the_bottom_chunk(tmp_path: Path) -> None:
    built = flow(tmp_path, processing_chunk_sizes=[[40, 40, 40], [12, 16, 16]],
                 processing_crop_pads=[[2, 2, 2], [0, 0, 0]], auto_divisibility=True,
                 level_intermediaries_dirs=["a", "b"])
    levels = built.fn.__self__.plan.levels
    # 40 + 2 * 2 = 44 holds three 12s (36 = 32 + 2 * 2) and two 16s (32 = 28 + 2 * 2)
    assert levels[1].chunk == (12, 16, 16) and levels[0].chunk == (32, 28, 28)


def test_older_spellings(tmp_path: Path) -> None:
    src = build_ts_layer(str(tmp_path / "src"))
    built = flow(tmp_path, op_kwargs=None, src=src, max_reduction_chunk_sizes=[64, 64, 64])
    schema = built.fn.__self__
    assert schema.op_kwargs == {"src": src}
    assert schema.plan.max_reduction_chunk_size == (64, 64, 64)
    with pytest.raises(SubchunkableConfigError, match="src given both in op_kwargs"):
        flow(tmp_path, op_kwargs={"src": src}, src=src)


def test_spec_errors_name_the_field(tmp_path: Path) -> None:
    spec = {"@type": "build_subchunkable_apply_flow", "fn": {"@type": "copy", "@mode": "partial"},
            "dst": {"@type": "build_ts_layer", "path": str(tmp_path / "d")},
            "dst_resolution": [1, 1, 1], "processing_chunk_sizes": [[32, 32, 32]],
            "processing_blend_pads": [[4, 4, 4]], "bbox": {"@type": "BBox3D.from_coords",
                                                      "start_coord": [0, 0, 0],
                                                      "end_coord": [64, 64, 64]}}
    with pytest.raises(SpecError, match="level_intermediaries_dirs is required"):
        build({"target": spec})


def test_a_list_of_blend_modes_gives_one_mode_per_level(tmp_path: Path) -> None:
    built = flow(tmp_path, processing_chunk_sizes=TWO, processing_blend_pads=[[8, 8, 8], [0, 0, 0]],
                 processing_blend_modes=["linear", "quadratic"],
                 level_intermediaries_dirs=[str(tmp_path / "a"), str(tmp_path / "b")])
    levels = built.fn.__self__.plan.geometry.levels
    assert [lvl.mode for lvl in levels] == ["linear", "quadratic"]
    one = flow(tmp_path, processing_chunk_sizes=TWO, processing_blend_modes="bump",
               level_intermediaries_dirs=[str(tmp_path / "a"), str(tmp_path / "b")])
    assert [lvl.mode for lvl in one.fn.__self__.plan.geometry.levels] == ["bump", "bump"]
