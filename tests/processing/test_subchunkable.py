from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from processing_helpers import RES, dst_like, make_volume, run_inline, whole

from specflow.builder import build
from specflow.processing import (
    DownsampleOp,
    build_postpad_subchunkable_apply_flow,
    build_reduce_staged_flow,
    build_subchunkable_apply_flow,
    copy,
    gaussian_filter,
    mean_filter,
)
from specflow.processing.operations import gaussian_radius
from specflow.volumes import build_ts_layer

SHAPE = (48, 40, 32)


def apply(tmp_path: Path, src: Any, name: str, **kw: Any) -> Any:
    dst = kw.pop("dst", None) or dst_like(tmp_path / name, src)
    kw.setdefault("fn", copy)
    kw.setdefault("op_kwargs", {"src": src})
    kw.setdefault("bbox", whole(SHAPE).bbox)
    if not kw.get("skip_intermediaries"):
        kw.setdefault("level_intermediaries_dirs",
                      [str(tmp_path / "tmp")] * len(kw["processing_chunk_sizes"]))
    kw.setdefault("verbose", False)
    run_inline(build_subchunkable_apply_flow(dst=dst, dst_resolution=list(RES), **kw))
    return dst.read(whole(SHAPE))


@pytest.mark.parametrize("mode", ["linear", "quadratic"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_identity_with_blend_pads_reproduces_the_input(tmp_path: Path, mode: str,
                                                       dtype: str) -> None:
    src, data = make_volume(tmp_path / "src", dtype=dtype, shape=SHAPE)
    out = apply(tmp_path, src, "one", processing_chunk_sizes=[[16, 20, 16]],
                processing_blend_pads=[[4, 5, 8]], processing_blend_modes=mode)
    two = apply(tmp_path, src, "two", processing_chunk_sizes=[[24, 20, 16], [16, 15, 12]],
                processing_blend_pads=[[4, 5, 2], [2, 3, 3]], processing_crop_pads=[[0, 0, 2],
                                                                                 [1, 0, 0]],
                processing_blend_modes=mode)
    assert out.dtype == data.dtype
    if dtype == "float32":
        np.testing.assert_allclose(out, data, rtol=0, atol=1e-6)
        np.testing.assert_allclose(two, data, rtol=0, atol=1e-6)
    else:
        assert np.array_equal(out, data) and np.array_equal(two, data)
    assert not any((tmp_path / "tmp").iterdir()), "staging data is removed after reduction"


def test_max_blending_and_unaligned_crop_only_chunks(tmp_path: Path, volume: Any) -> None:
    src, data = volume
    out = apply(tmp_path, src, "max", processing_chunk_sizes=[[16, 20, 16]],
                processing_blend_pads=[[3, 3, 3]], processing_blend_modes="max")
    assert np.array_equal(out, data)
    # chunks of 12 do not align with the stored chunks (16): staged, then copied
    staged = apply(tmp_path, src, "staged", processing_chunk_sizes=[[12, 20, 16]],
                   processing_crop_pads=[[2, 2, 2]])
    assert np.array_equal(staged, data)


def test_mean_filter_with_crop_pads_equals_the_whole_volume_filter(tmp_path: Path,
                                                                   volume: Any) -> None:
    src, data = volume
    want = mean_filter(data, radius=[2, 1, 3])
    fn = functools.partial(mean_filter, radius=[2, 1, 3])
    direct = apply(tmp_path, src, "direct", fn=fn, processing_chunk_sizes=[[16, 16, 16]],
                   processing_crop_pads=[[2, 1, 3]], skip_intermediaries=True,
                   level_intermediaries_dirs=None)
    assert np.array_equal(direct, want)
    unaligned = apply(tmp_path, src, "unaligned", fn=fn, processing_chunk_sizes=[[12, 10, 8]],
                      processing_crop_pads=[[3, 3, 3]])
    assert np.array_equal(unaligned, want)
    too_small = apply(tmp_path, src, "small", fn=fn, processing_chunk_sizes=[[16, 16, 16]],
                      processing_crop_pads=[[1, 1, 1]])
    assert not np.array_equal(too_small, want)


def test_two_levels_equal_one_level(tmp_path: Path, volume: Any) -> None:
    src, data = volume
    r = gaussian_radius(1.2)
    fn = functools.partial(gaussian_filter, sigma=1.2)
    one = apply(tmp_path, src, "one", fn=fn, processing_chunk_sizes=[[16, 16, 16]],
                processing_crop_pads=[list(r)])
    two = apply(tmp_path, src, "two", fn=fn, processing_chunk_sizes=[[16, 16, 16], [8, 8, 8]],
                processing_crop_pads=[[0, 0, 0], list(r)], subchunk_threads=3)
    three = apply(tmp_path, src, "three", fn=fn,
                  processing_chunk_sizes=[[24, 20, 16], [16, 14, 12], [8, 7, 6]],
                  processing_crop_pads=[[0, 0, 0], [0, 0, 0], list(r)],
                  processing_blend_pads=[[4, 4, 4], [0, 0, 0], [0, 0, 0]])
    assert np.array_equal(one, two)
    np.testing.assert_allclose(three, one, rtol=0, atol=1e-6)
    assert np.array_equal(one, gaussian_filter(data, sigma=1.2))


def test_defer_then_reduce_equals_blending_at_once(tmp_path: Path, volume: Any) -> None:
    src, data = volume
    fn = functools.partial(gaussian_filter, sigma=1.0)
    at_once = apply(tmp_path, src, "once", fn=fn, processing_chunk_sizes=[[16, 20, 16]],
                    processing_blend_pads=[[4, 4, 4]], processing_blend_modes="linear")
    dst = dst_like(tmp_path / "later", src)
    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), fn=fn, op_kwargs={"src": src},
        bbox=whole(SHAPE).bbox, processing_chunk_sizes=[[16, 20, 16]],
        processing_blend_pads=[[4, 4, 4]], processing_blend_modes="defer",
        level_intermediaries_dirs=[str(tmp_path / "tmp")])
    run_inline(flow)
    assert dst.read(whole(SHAPE)).sum() == 0  # nothing reduced yet
    (staging,) = (tmp_path / "tmp").iterdir()
    run_inline(build_reduce_staged_flow(str(staging), dst, mode="linear",
                                        max_reduction_chunk_size=[16, 16, 16]))
    assert np.array_equal(dst.read(whole(SHAPE)), at_once)


def _blur_inside(src: Any) -> Any:
    """No output for the chunks at the low x end (their first plane of input is outside)."""
    return None if not src[0, 0].any() else gaussian_filter(src, sigma=1.0)


def _defer(tmp_path: Path, src: Any, fn: Any) -> tuple[Any, Path]:
    dst = dst_like(tmp_path / "later", src)
    run_inline(build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), fn=fn, op_kwargs={"src": src},
        bbox=whole(SHAPE).bbox, processing_chunk_sizes=[[16, 20, 16]],
        processing_blend_pads=[[4, 4, 4]], processing_blend_modes="defer",
        level_intermediaries_dirs=[str(tmp_path / "tmp")]))
    (staging,) = (tmp_path / "tmp").iterdir()
    return dst, staging


def test_chunks_without_output_reduce_as_zeros_not_as_lost(tmp_path: Path, volume: Any) -> None:
    src, data = volume
    at_once = apply(tmp_path, src, "once", fn=_blur_inside,
                    processing_chunk_sizes=[[16, 20, 16]], processing_blend_pads=[[4, 4, 4]],
                    processing_blend_modes="linear")
    dst, staging = _defer(tmp_path, src, _blur_inside)
    marked = list((staging / "empty").iterdir())
    slots = [p for p in (staging / "c").rglob("*") if p.is_file()]
    assert len(marked) == 2 * 2 and len(slots) == 2 * 2 * 2
    run_inline(build_reduce_staged_flow(str(staging), dst, mode="linear"))
    assert np.array_equal(dst.read(whole(SHAPE)), at_once)
    assert 0 < np.count_nonzero(at_once) < at_once.size


def test_reducing_a_staging_area_that_lost_an_output_fails_and_names_it(
        tmp_path: Path, volume: Any) -> None:
    src, _ = volume
    dst, staging = _defer(tmp_path, src, functools.partial(gaussian_filter, sigma=1.0))
    lost = sorted(p for p in (staging / "c").rglob("*") if p.is_file())[0]
    lost.unlink()
    # in a new process, as a resume would: this one's cache still holds what it wrote
    script = (
        "import sys\n"
        "from specflow.processing import build_reduce_staged_flow\n"
        "from specflow.run import execute\n"
        "from specflow.volumes import build_ts_layer\n"
        "dst = build_ts_layer(sys.argv[2])\n"
        "report = execute(build_reduce_staged_flow(sys.argv[1], dst, mode='linear'),\n"
        "                 backend='inline', checkpoint=False, max_attempts=1)\n"
        "print(report.status)\n"
        "print(report.failures[0].error if report.failures else '')\n")
    out = subprocess.run([sys.executable, "-c", script, str(staging), dst.path],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    status, error = out.stdout.splitlines()[-2:]
    assert status != "done"
    assert "StagingLostError" in error and "is missing from" in error
    assert "top-level chunk" in error


def test_postpad_flow_matches(tmp_path: Path, volume: Any) -> None:
    src, data = volume
    dst = dst_like(tmp_path / "post", src)
    run_inline(build_postpad_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), processing_input_sizes=[[24, 28, 24]],
        processing_crop=[0, 0, 0], processing_blend=[4, 4, 4],
        fn=copy, op_kwargs={"src": src}, bbox=whole(SHAPE).bbox,
        level_intermediaries_dirs=[str(tmp_path / "tmp")]))
    np.testing.assert_allclose(dst.read(whole(SHAPE)), data, atol=1e-6)


def test_expand_and_shrink(tmp_path: Path, volume: Any) -> None:
    src, data = volume
    # a region of 20 voxels with chunks of 16: expanded to 32 (clipped by dst's bounds)
    dst = dst_like(tmp_path / "exp", src)
    sub = whole((20, 40, 32))
    run_inline(build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), processing_chunk_sizes=[[16, 40, 32]], fn=copy,
        op_kwargs={"src": src}, bbox=sub.bbox, level_intermediaries_dirs=[str(tmp_path / "t")]))
    got = dst.read(whole(SHAPE))
    assert np.array_equal(got[:, :32], data[:, :32]) and got[:, 32:].sum() == 0
    # a region smaller than the chunk: the chunk shrinks to it
    dst2 = dst_like(tmp_path / "shrink", src)
    run_inline(build_subchunkable_apply_flow(
        dst=dst2, dst_resolution=list(RES), processing_chunk_sizes=[[64, 64, 64]], fn=copy,
        op_kwargs={"src": src}, bbox=whole(SHAPE).bbox, shrink_processing_chunk=True,
        expand_bbox_processing=False, level_intermediaries_dirs=[str(tmp_path / "tmp")]))
    assert np.array_equal(dst2.read(whole(SHAPE)), data)


def test_ops_from_a_spec(tmp_path: Path) -> None:
    src, data = make_volume(tmp_path / "seg", dtype="uint8", shape=(32, 32, 8),
                            chunk=(16, 16, 8))
    spec = {
        "@type": "build_subchunkable_apply_flow",
        "op": {"@type": "DownsampleOp", "factor": [2, 2, 1], "mode": "max"},
        "op_kwargs": {"src": {"@type": "build_ts_layer", "path": str(tmp_path / "seg")}},
        "dst": {"@type": "build_ts_layer", "path": str(tmp_path / "ds"),
                "info_reference_path": str(tmp_path / "seg"), "info_chunk_size": [8, 8, 8]},
        "dst_resolution": [2, 2, 1],
        "start_coord": [0, 0, 0], "end_coord": [16, 16, 8], "coord_resolution": [2, 2, 1],
        "processing_chunk_sizes": [[8, 8, 8]], "skip_intermediaries": True,
    }
    run_inline(build(spec))
    ds = build_ts_layer(str(tmp_path / "ds"))
    got = ds.read(whole((32, 32, 8)).at_resolution((2, 2, 1)))
    assert np.array_equal(got, data.reshape(1, 16, 2, 16, 2, 8).max(axis=(2, 4)))
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"@type": "threshold", "@mode": "partial", "value": 100},
         (data > 100).astype(np.uint8)),
        ({"@type": "invert", "@mode": "partial"}, 255 - data),
        ({"@type": "affine_intensity", "@mode": "partial", "a": 0.5, "b": 1, "dtype": "uint8"},
         (data * 0.5 + 1).astype(np.uint8)),
    ]
    for fn, want in cases:
        out = tmp_path / f"out_{fn['@type']}"
        run_inline(build({
            "@type": "build_subchunkable_apply_flow", "fn": fn,
            "op_kwargs": {"src": {"@type": "build_ts_layer", "path": str(tmp_path / "seg")}},
            "dst": {"@type": "build_ts_layer", "path": str(out),
                    "info_reference_path": str(tmp_path / "seg")},
            "dst_resolution": [1, 1, 1], "start_coord": [0, 0, 0], "end_coord": [32, 32, 8],
            "coord_resolution": [1, 1, 1], "processing_chunk_sizes": [[16, 16, 8]],
            "skip_intermediaries": True,
        }))
        got = build_ts_layer(str(out)).read(whole((32, 32, 8)))
        assert np.array_equal(got, want), fn["@type"]


def test_downsample_average_op(tmp_path: Path, volume: Any) -> None:
    src, data = volume
    dst = build_ts_layer(str(tmp_path / "avg"), info_reference_path=src.path,
                         info_resolution=[2, 2, 2])
    run_inline(build_subchunkable_apply_flow(
        dst=dst, dst_resolution=[2, 2, 2], op=DownsampleOp([2, 2, 2], "average"),
        op_kwargs={"src": src}, bbox=whole(SHAPE).bbox, processing_chunk_sizes=[[16, 16, 16]],
        level_intermediaries_dirs=[str(tmp_path / "t")]))
    got = dst.read(whole(SHAPE).at_resolution((2, 2, 2)))
    want = data.reshape(1, 24, 2, 20, 2, 16, 2).mean(axis=(2, 4, 6))
    np.testing.assert_allclose(got, want, atol=1e-6)
