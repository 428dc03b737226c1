"""Dry runs count exactly what the executor runs: subchunkable flows of every shape, flows
that read values, duplicates; and they write nothing."""

from __future__ import annotations

import functools
import os
import sys
import tracemalloc
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

import specflow
from specflow.execution.dryrun import dry_run
from specflow.flow.builtin import concurrent_flow, sequential_flow
from specflow.flow.ops import noop, repeat
from specflow.processing import (
    DownsampleOp,
    build_reduce_staged_flow,
    build_subchunkable_apply_flow,
    copy,
    gaussian_filter,
)
from specflow.run import execute
from specflow.volumes import VolumetricIndex, build_ts_layer

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "processing"))
from processing_helpers import RES, dst_like, make_volume  # noqa: E402

SHAPE = (48, 40, 32)


def listing(folder: Path) -> list[tuple[str, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        out += [(os.path.relpath(os.path.join(dirpath, d), folder), -1) for d in dirnames]
        out += [(os.path.relpath(os.path.join(dirpath, f), folder),
                 os.path.getsize(os.path.join(dirpath, f))) for f in filenames]
    return sorted(out)


def executed(target: Any) -> dict[str, int]:
    report = execute(target, backend="inline", checkpoint=False)
    assert report.status == "done", [f.error for f in report.failures]
    return {op: c["done"] for op, c in report.counts.items() if c.get("done")}


def same_as_real(tmp_path: Path, target: Any) -> dict[str, int]:
    before = listing(tmp_path)
    dry = dry_run(target)
    assert listing(tmp_path) == before, "the dry run wrote something"
    assert dry.exact, dry
    real = executed(target)
    assert dry.counts == real
    return real


CONFIGS: dict[str, dict[str, Any]] = {
    "one level, direct": dict(processing_chunk_sizes=[[16, 16, 16]], skip_intermediaries=True),
    "one level, crop, unaligned (staged copy)": dict(
        processing_chunk_sizes=[[12, 20, 16]], processing_crop_pads=[[2, 2, 2]]),
    "one level, blend, bounded reduction": dict(
        processing_chunk_sizes=[[16, 20, 16]], processing_blend_pads=[[4, 5, 8]],
        processing_blend_modes="linear", max_reduction_chunk_size=[16, 20, 16]),
    "one level, max blend": dict(
        processing_chunk_sizes=[[16, 20, 16]], processing_blend_pads=[[3, 3, 3]],
        processing_blend_modes="max"),
    "two levels, blend and crop": dict(
        processing_chunk_sizes=[[24, 20, 16], [16, 15, 12]],
        processing_blend_pads=[[4, 5, 2], [2, 3, 3]],
        processing_crop_pads=[[0, 0, 2], [1, 0, 0]]),
    "three levels": dict(
        processing_chunk_sizes=[[24, 20, 16], [16, 14, 12], [8, 7, 6]],
        processing_crop_pads=[[0, 0, 0], [0, 0, 0], [1, 1, 1]],
        processing_blend_pads=[[4, 4, 4], [0, 0, 0], [0, 0, 0]]),
    "expanded region": dict(processing_chunk_sizes=[[20, 20, 20]],
                            processing_blend_pads=[[2, 2, 2]]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_subchunkable_counts_equal_the_real_run(tmp_path: Path, name: str) -> None:
    src, _ = make_volume(tmp_path / "src")
    kw = dict(CONFIGS[name])
    if not kw.get("skip_intermediaries"):
        kw["level_intermediaries_dirs"] = [str(tmp_path / "tmp")] * len(
            kw["processing_chunk_sizes"])
    flow = build_subchunkable_apply_flow(
        dst=dst_like(tmp_path / "dst", src), dst_resolution=list(RES),
        fn=functools.partial(gaussian_filter, sigma=1.0), op_kwargs={"src": src},
        bbox=VolumetricIndex.from_voxels((0, 0, 0), SHAPE, RES).bbox, **kw)
    real = same_as_real(tmp_path, flow)
    assert real["subchunkable.process_chunk"] > 1
    assert ("subchunkable.reduce_chunk" in real) == (not kw.get("skip_intermediaries"))
    # once dst exists the dry run reads its metadata, and still counts exactly
    same_as_real(tmp_path, flow)


def test_a_whole_job_in_stages_sees_what_earlier_stages_create(tmp_path: Path) -> None:
    """Later stages name layers (info_reference_path) that only earlier stages create,
    at another resolution too; defer leaves staging for a later reduction."""
    raw = str(tmp_path / "raw.zarr")
    shape = [64, 48, 32]
    bbox = VolumetricIndex.from_voxels((0, 0, 0), shape, RES).bbox
    synth = specflow.build({"@type": "synthetic_volume", "path": raw, "size": shape,
                            "chunk_size": [16, 16, 16]})
    blurred = build_ts_layer(str(tmp_path / "blurred.zarr"), info_reference_path=raw)
    defer = build_subchunkable_apply_flow(
        dst=blurred, dst_resolution=list(RES), fn=copy,
        op_kwargs={"src": build_ts_layer(raw)}, bbox=bbox,
        processing_chunk_sizes=[[32, 24, 16], [20, 16, 12]],
        processing_blend_pads=[[4, 4, 4], [0, 0, 0]],
        processing_blend_modes=["defer", "linear"],
        level_intermediaries_dirs=[str(tmp_path / "tmp")] * 2)
    staging = defer.fn.__self__.staging_path()
    reduce = build_reduce_staged_flow(staging, blurred, mode="quadratic")
    half = build_ts_layer(str(tmp_path / "half.zarr"), info_reference_path=raw,
                          info_resolution=[2, 2, 1], info_chunk_size=[8, 8, 8])
    down = build_subchunkable_apply_flow(
        dst=half, dst_resolution=[2, 2, 1],
        op=DownsampleOp(factor=[2, 2, 1], mode="average"), op_kwargs={"src": blurred},
        bbox=VolumetricIndex.from_voxels((0, 0, 0), [32, 24, 32], [2, 2, 1]).bbox,
        processing_chunk_sizes=[[8, 8, 8]], level_intermediaries_dirs=[str(tmp_path / "t2")])
    job = sequential_flow([synth, defer, reduce, down])
    real = same_as_real(tmp_path, job)
    assert real["subchunkable.process_chunk"] > 1
    assert "subchunkable.create_staging" in real


@specflow.taskable_operation
def opaque(x: int) -> int:
    return x * 2


@specflow.taskable_operation(pure=True)
def double(x: int) -> int:
    return x * 2


@specflow.flow_schema
def uses_value(op: Any) -> Generator[Any, Any, None]:
    first = op.make_task(x=1)
    yield first
    value = yield specflow.Dependency(first)
    try:
        yield [op.make_task(x=value + i) for i in range(3)]
    except Exception:  # noqa: BLE001 - a flow swallowing errors must not hide the unknown
        yield op.make_task(x=-1)


@specflow.flow_schema
def waits_only(op: Any) -> Generator[Any, Any, None]:
    first = op.make_task(x=1)
    yield first
    yield specflow.Dependency(first)  # a barrier: the value is not used
    yield [op.make_task(x=10 + i) for i in range(3)]
    yield [op.make_task(x=10 + i) for i in range(3)]  # duplicates run once


def test_pure_values_are_computed_and_unknown_values_stop_only_their_flow() -> None:
    assert dry_run(uses_value(double)).counts == executed(uses_value(double)) == {
        "double": 4}
    res = dry_run(uses_value(opaque))
    assert not res.exact and res.counts == {"opaque": 1}
    assert [(u.flow, u.operation) for u in res.unknown] == [("uses_value", "opaque")]
    assert executed(uses_value(opaque)) == {"opaque": 4}
    barrier = dry_run(waits_only(opaque))
    assert barrier.exact and barrier.counts == executed(waits_only(opaque)) == {"opaque": 4}
    assert barrier.duplicates == 3
    both = concurrent_flow([uses_value(opaque), waits_only(opaque)])
    mixed = dry_run(both)
    # the other flow is still counted (opaque(x=1) is one task of both flows)
    assert mixed.counts == {"opaque": 4} and not mixed.exact


def test_repeat_is_lazy_and_counted_exactly() -> None:
    tracemalloc.start()
    try:
        copies = specflow.build({"@type": "specflow.repeat", "task": {"@type": "noop"},
                                 "count": 1_000_000})
        built = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert built < 1_000_000, f"building a million copies took {built:,} bytes"
    assert len(copies) == 1_000_000
    res = dry_run(repeat(noop(), 200_000))
    assert res.exact and res.counts == {"noop": 200_000}
    small = repeat(noop(i=3), 40)
    assert dry_run(small).counts == executed(small) == {"noop": 40}
