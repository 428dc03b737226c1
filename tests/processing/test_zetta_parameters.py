"""The subchunkable parameters zetta specs use, on build_ts_layer volumes: processing_gap,
auto_bbox, expand_bbox_backend, dst: null, fn_semaphores, bump blending, the neuroglancer
link, and zetta-style operations that write into the dst they are given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from processing_helpers import RES, dst_like, make_volume, run_inline, whole

from specflow.builder import build
from specflow.processing import build_subchunkable_apply_flow, copy
from specflow.processing.blending import rising
from specflow.processing.subchunkable import ChunkSink
from specflow.volumes.geometry import VolumetricIndex

SHAPE = (40, 16, 8)


def apply(dst: Any, src: Any, **kw: Any) -> None:
    kw.setdefault("fn", copy)
    kw.setdefault("op_kwargs", {"src": src})
    kw.setdefault("verbose", False)
    run_inline(build_subchunkable_apply_flow(dst=dst, dst_resolution=list(RES), **kw))


@pytest.mark.parametrize("stored", [(8, 16, 8), (16, 16, 8)])
def test_processing_gap_leaves_the_gaps_unprocessed(tmp_path: Path, stored: tuple[int, ...]) -> None:
    src, data = make_volume(tmp_path / "src", dtype="uint8", shape=SHAPE, chunk=(8, 16, 8))
    dst = dst_like(tmp_path / f"dst{stored[0]}", src, info_chunk_size=list(stored))
    # chunks of 8 every 16 voxels: 0..8, 16..24, 32..40 (with stored chunks of 16 the
    # chunks are not aligned to dst and go through staging)
    apply(dst, src, processing_chunk_sizes=[[8, 16, 8], [4, 8, 8]], processing_gap=[8, 0, 0],
          bbox=whole(SHAPE).bbox, level_intermediaries_dirs=[str(tmp_path / "t")] * 2)
    got = dst.read(whole(SHAPE))
    for x0 in (0, 16, 32):
        assert np.array_equal(got[:, x0:x0 + 8], data[:, x0:x0 + 8])
    for x0 in (8, 24):
        assert not got[:, x0:x0 + 8].any()


def test_auto_bbox_and_expand_bbox_backend(tmp_path: Path) -> None:
    src, data = make_volume(tmp_path / "src", dtype="uint8", shape=SHAPE, chunk=(8, 16, 8))
    auto = dst_like(tmp_path / "auto", src)
    auto.prepare_for_write(RES)
    apply(auto, src, processing_chunk_sizes=[[8, 16, 8]], auto_bbox=True,
          skip_intermediaries=True)
    assert np.array_equal(auto.read(whole(SHAPE)), data)
    # a box from x = 10 grows to dst's stored chunks (8): from x = 8
    aligned = dst_like(tmp_path / "aligned", src, info_chunk_size=[8, 16, 8])
    box = VolumetricIndex.from_voxels([10, 0, 0], [40, 16, 8], RES).bbox
    apply(aligned, src, processing_chunk_sizes=[[8, 16, 8]], bbox=box, expand_bbox_backend=True,
          expand_bbox_processing=False, skip_intermediaries=True)
    got = aligned.read(whole(SHAPE))
    assert np.array_equal(got[:, 8:], data[:, 8:]) and not got[:, :8].any()


@pytest.mark.parametrize("batch", [None, [2, 1, 1]])
def test_no_dst_runs_the_operation_for_its_effects(tmp_path: Path, batch: Any) -> None:
    src, _ = make_volume(tmp_path / "src", dtype="uint8", shape=SHAPE, chunk=(8, 16, 8))
    seen = tmp_path / "seen"
    seen.mkdir()

    def note(src: Any) -> None:
        (seen / f"{int(src.sum())}-{src.shape}").write_text("x")

    apply(None, src, fn=note, processing_chunk_sizes=[[8, 16, 8]], bbox=whole(SHAPE).bbox,
          skip_intermediaries=True, processing_batch=batch)
    assert len(list(seen.iterdir())) == 5


def test_fn_semaphores_are_held_instead_of_cpu(tmp_path: Path) -> None:
    from specflow import resources

    src, data = make_volume(tmp_path / "src", dtype="uint8", shape=SHAPE, chunk=(8, 16, 8))
    dst = dst_like(tmp_path / "dst", src)
    from specflow.run import execute

    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), fn=copy, op_kwargs={"src": src}, verbose=False,
        processing_chunk_sizes=[[8, 16, 8]], bbox=whole(SHAPE).bbox,
        fn_semaphores=["cuda", "cpu"], skip_intermediaries=True)
    # with cpu held by the flow as well, a cpu semaphore of 1 would deadlock
    report = execute(flow, backend="local", workers=1, semaphores={"cpu": 1, "cuda": 1},
                     run_dir=tmp_path / "run")
    assert report.status == "done", report.failures
    del resources
    assert np.array_equal(dst.read(whole(SHAPE)), data)


def test_bump_blending_reproduces_the_input_and_matches_zettas_weights(tmp_path: Path) -> None:
    src, data = make_volume(tmp_path / "src", dtype="float32", shape=SHAPE, chunk=(8, 16, 8))
    dst = dst_like(tmp_path / "dst", src)
    apply(dst, src, processing_chunk_sizes=[[8, 16, 8]], processing_blend_pads=[2, 0, 0],
          processing_blend_modes="bump", bbox=whole(SHAPE).bbox,
          level_intermediaries_dirs=[str(tmp_path / "t")])
    np.testing.assert_allclose(dst.read(whole(SHAPE)), data, rtol=0, atol=1e-6)
    # zetta: weight = bump(i) / (bump(i) + bump(i + stride)) over a 12-voxel output
    size, pad = 12, 2
    t = (np.arange(size) + 1.0) / (size + 1.0) * 2 - 1
    bump = np.exp(-1 / (1 - t * t))
    want = [bump[i] / (bump[i] + bump[i + size - 2 * pad]) for i in range(2 * pad)]
    np.testing.assert_allclose(rising(2 * pad, "bump", size), want)
    np.testing.assert_allclose(rising(4, "linear"), [0.2, 0.4, 0.6, 0.8])


def test_generate_ng_link_prints_a_link(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = make_volume(tmp_path / "src", dtype="uint8", shape=SHAPE, chunk=(8, 16, 8))
    build_subchunkable_apply_flow(
        dst=dst_like(tmp_path / "dst", src), dst_resolution=list(RES), fn=copy,
        op_kwargs={"src": src}, processing_chunk_sizes=[[8, 16, 8]], bbox=whole(SHAPE).bbox,
        skip_intermediaries=True, generate_ng_link=True)
    err = capsys.readouterr().err
    assert "level 0: 5 chunk(s) of [8, 16, 8]" in err
    assert "neuroglancer: https://neuroglancer-demo.appspot.com/#!" in err
    import re
    import urllib.parse

    link = re.search(r"neuroglancer: (\S+)", err)
    assert link is not None
    state = json.loads(urllib.parse.unquote(link.group(1).split("#!", 1)[1]))
    assert state["layers"][0]["source"].startswith("precomputed://file://")


class CopyWhenTemp:
    """A zetta-style operation: it writes into the dst it is given."""

    def with_added_crop_pad(self, crop_pad: Any) -> CopyWhenTemp:
        return self

    def __call__(self, idx: VolumetricIndex, dst: ChunkSink, src: Any) -> None:
        if "_temp_" in dst.backend.name:
            dst[idx] = src[idx]


def test_zetta_style_operations_write_into_their_dst(tmp_path: Path) -> None:
    src, data = make_volume(tmp_path / "src", dtype="uint8", shape=SHAPE, chunk=(8, 16, 8))
    staged = dst_like(tmp_path / "staged", src)
    apply(staged, src, fn=None, op=CopyWhenTemp(), processing_chunk_sizes=[[8, 16, 8]],
          processing_crop_pads=[1, 1, 0], bbox=whole(SHAPE).bbox,
          level_intermediaries_dirs=[str(tmp_path / "t")])
    assert np.array_equal(staged.read(whole(SHAPE)), data)
    skipped = dst_like(tmp_path / "skipped", src)
    apply(skipped, src, fn=None, op=CopyWhenTemp(), processing_chunk_sizes=[[8, 16, 8]],
          bbox=whole(SHAPE).bbox, skip_intermediaries=True)
    assert not skipped.read(whole(SHAPE)).any()


def test_zettas_repeat_and_specflows_task_repeater() -> None:
    rep = build({"@type": "repeat", "@mode": "partial", "pattern": "c x y z -> c x y (z 2)"})
    a = np.arange(8).reshape(1, 2, 2, 2)
    out = rep(a)
    assert out.shape == (1, 2, 2, 4) and list(out[0, 0, 0]) == [0, 0, 1, 1]
    tasks = build({"@type": "specflow.repeat", "task": {"@type": "echo", "message": 1},
                   "count": 3})
    assert len({t.id for t in tasks}) == 3


def test_a_dry_run_counts_what_a_run_executes(tmp_path: Path) -> None:
    from specflow import execute
    from specflow.run import count_tasks

    src, _ = make_volume(tmp_path / "src", dtype="uint8", shape=SHAPE, chunk=(8, 16, 8))

    def flow(name: str) -> Any:
        return build_subchunkable_apply_flow(
            dst=dst_like(tmp_path / name, src, info_chunk_size=[8, 16, 8]),
            dst_resolution=list(RES), fn=copy, op_kwargs={"src": src}, verbose=False,
            processing_chunk_sizes=[[8, 16, 8]], processing_blend_pads=[2, 0, 0],
            bbox=whole(SHAPE).bbox, level_intermediaries_dirs=[str(tmp_path / "t")])

    counted = count_tasks(flow("counted")).counts
    assert not (tmp_path / "counted").exists(), "a dry run writes nothing"
    report = execute(flow("ran"), backend="inline", checkpoint=False)
    ran = {op: c["done"] for op, c in report.counts.items() if c.get("done")}
    assert counted == ran and counted["subchunkable.reduce_chunk"] == 5
