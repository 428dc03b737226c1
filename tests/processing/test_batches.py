"""Top-level chunks run in batches (``processing_batch``): a batch combines its own chunks'
outputs in memory and stages only the seams between batches, so its output must be the
unbatched flow's, byte for byte, whatever the geometry; and a seam piece the staging area
lost is computed again."""

from __future__ import annotations

import functools
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from processing_helpers import RES, make_volume, run_inline, whole

from specflow.execution.checkpoint import Checkpoint
from specflow.processing import build_subchunkable_apply_flow, gaussian_filter, mean_filter
from specflow.processing.subchunkable import (
    SubchunkableConfigError,
    _ReadySlabs,
    _Seams,
    batches,
)
from specflow.processing.subchunkable_rules import Level
from specflow.run import count_tasks
from specflow.volumes import build_ts_layer
from specflow.volumes.geometry import VolumetricIndex


def _run(tmp: Path, src: Any, name: str, shape: tuple[int, int, int], stored: list[int],
         start: tuple[int, int, int] = (0, 0, 0), **kw: Any) -> Any:
    """Run the flow over ``shape`` voxels from ``start``; dst as read over the volume."""
    dst = build_ts_layer(str(tmp / name), info_reference_path=src.path,
                         info_chunk_size=stored)
    if not kw.get("skip_intermediaries"):
        kw.setdefault("level_intermediaries_dirs",
                      [str(tmp / f"tmp_{name}")] * len(kw["processing_chunk_sizes"]))
    stop = [a + b for a, b in zip(start, shape, strict=True)]
    run_inline(build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), op_kwargs={"src": src},
        bbox=VolumetricIndex.from_voxels(start, stop, RES).bbox, verbose=False, **kw))
    return dst.read(whole(src.scales()[0].size))


def _case(rng: random.Random) -> dict[str, Any]:
    chunk = [rng.choice([6, 8, 10, 12]) for _ in range(3)]
    n = [rng.randint(1, 4) for _ in range(3)]
    shape = tuple(c * k for c, k in zip(chunk, n, strict=True))
    blend = [rng.randint(0, min(3, c // 2)) for c in chunk]
    if not any(blend):
        blend[rng.randrange(3)] = 1
    stored = [rng.choice([2, 4, c]) for c in chunk]
    red = rng.choice([None, [max(c, s * rng.randint(1, 4)) for c, s in
                             zip(chunk, stored, strict=True)]])
    # the region starts off dst's stored grid, so reduction parts are clipped at its edges
    start = tuple(rng.choice([0, 0, rng.randint(1, 5)]) for _ in range(3))
    return {
        "shape": shape, "stored": stored, "start": start,
        "processing_chunk_sizes": [chunk], "processing_crop_pads": [[rng.randint(0, 2)] * 3],
        "processing_blend_pads": [blend],
        "processing_blend_modes": rng.choice(["linear", "quadratic", "max"]),
        "max_reduction_chunk_size": red,
        "processing_batch": [rng.randint(1, 3) for _ in range(3)],
    }


@pytest.mark.parametrize("seed", range(8))
def test_a_batched_blend_writes_the_bytes_of_the_unbatched_one(tmp_path: Path,
                                                               seed: int) -> None:
    rng = random.Random(seed)
    case = _case(rng)
    shape, stored = case.pop("shape"), case.pop("stored")
    per_batch = case.pop("processing_batch")
    volume = tuple(s + a + 3 for s, a in zip(shape, case["start"], strict=True))
    src, _ = make_volume(tmp_path / "src", shape=volume, chunk=(8, 8, 8), seed=seed)
    fn = functools.partial(mean_filter, radius=1)
    want = _run(tmp_path, src, "plain", shape, stored, fn=fn, **case)
    got = _run(tmp_path, src, "batched", shape, stored, fn=fn, processing_batch=per_batch,
               **case)
    assert np.array_equal(got, want), (case, per_batch)
    assert want.std() > 0.01
    assert not any((tmp_path / "tmp_batched").iterdir()), "the staging area is removed"


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_batches_of_two_levels_and_integer_outputs(tmp_path: Path, dtype: str) -> None:
    shape = (48, 40, 32)
    src, _ = make_volume(tmp_path / "src", dtype=dtype, shape=shape)
    kw: dict[str, Any] = {
        "fn": functools.partial(gaussian_filter, sigma=1.0),
        "processing_chunk_sizes": [[16, 20, 16], [8, 14, 12]],
        "processing_crop_pads": [[0, 0, 0], [2, 2, 2]],
        "processing_blend_pads": [[4, 4, 4], [2, 0, 1]],
        "processing_blend_modes": "quadratic"}
    want = _run(tmp_path, src, "plain", shape, [8, 8, 8], **kw)
    got = _run(tmp_path, src, "batched", shape, [8, 8, 8], processing_batch=[2, 1, 2], **kw)
    assert got.dtype == np.dtype(dtype)
    assert np.array_equal(got, want)


def test_a_batched_crop_writes_the_bytes_of_the_unbatched_one(tmp_path: Path) -> None:
    shape = (48, 40, 32)
    src, data = make_volume(tmp_path / "src", shape=shape)
    fn = functools.partial(mean_filter, radius=[2, 1, 3])
    kw: dict[str, Any] = {"fn": fn, "processing_chunk_sizes": [[16, 8, 16]],
                          "processing_crop_pads": [[2, 1, 3]], "skip_intermediaries": True}
    got = _run(tmp_path, src, "batched", shape, [16, 8, 16], processing_batch=[2, 3, 1], **kw)
    assert np.array_equal(got, mean_filter(data, radius=[2, 1, 3]))


def test_batches_tile_the_chunk_grid_and_seams_need_two_batches() -> None:
    rng = random.Random(7)
    for _ in range(30):
        chunk = tuple(rng.randint(3, 9) for _ in range(3))
        n = [rng.randint(1, 6) for _ in range(3)]
        region = VolumetricIndex.from_voxels(
            [0, 0, 0], [c * k for c, k in zip(chunk, n, strict=True)], RES)
        top = Level(chunk, (0, 0, 0), tuple(rng.randint(0, 3) for _ in range(3)), "linear")
        per = [rng.randint(1, 4) for _ in range(3)]
        boxes = list(batches(region, top, per))
        assert sum(b.num_voxels for b in boxes) == region.num_voxels
        stored = tuple(rng.randint(1, 5) for _ in range(3))
        seams = _Seams(region, top, [stored, (0, 0, 0), None, per])
        slabs = _ReadySlabs(region, top, chunk, stored, (0, 0, 0), None, per)
        handed_to = {}
        for i, b in enumerate(boxes):
            for c in b.split(chunk, mode="exact"):
                handed_to[c.start] = i
        reduced = {p.start for px in range(slabs.nparts[0]) for p in slabs.covered(px)}
        for k in np.ndindex(*seams.nparts):
            part = seams._part(k)
            owners = {handed_to[c.start] for c in region.split(chunk, mode="exact")
                      if not c.padded(top.blend).intersection(part).is_empty()}
            # a part is reduced from staged pieces exactly when outputs of two batches meet
            assert (len(owners) > 1) == seams.seam(k, per) == (part.start in reduced)


def test_processing_batch_is_refused_with_gaps_and_deferred_blends(tmp_path: Path) -> None:
    src, _ = make_volume(tmp_path / "src")
    dst = build_ts_layer(str(tmp_path / "dst"), info_reference_path=src.path)
    common: dict[str, Any] = {"dst": dst, "dst_resolution": list(RES), "fn": mean_filter,
                              "op_kwargs": {"src": src}, "bbox": whole((48, 40, 32)).bbox,
                              "processing_chunk_sizes": [[16, 16, 16]],
                              "level_intermediaries_dirs": [str(tmp_path / "t")]}
    with pytest.raises(SubchunkableConfigError, match="processing_gap") as exc:
        build_subchunkable_apply_flow(processing_gap=[2, 0, 0], processing_batch=[2, 2, 2],
                                      **common)
    assert "processing_batch" in exc.value.params
    with pytest.raises(SubchunkableConfigError, match="defer"):
        build_subchunkable_apply_flow(processing_blend_pads=[[2, 2, 2]],
                                      processing_blend_modes="defer",
                                      processing_batch=[2, 2, 2], **common)
    with pytest.raises(SubchunkableConfigError, match="three whole numbers"):
        build_subchunkable_apply_flow(processing_batch=[2, 0, 2], **common)


def test_a_dry_run_counts_batches_exactly(tmp_path: Path) -> None:
    src, _ = make_volume(tmp_path / "src")
    dst = build_ts_layer(str(tmp_path / "dst"), info_reference_path=src.path)
    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), fn=mean_filter, op_kwargs={"src": src},
        bbox=whole((48, 40, 32)).bbox, processing_chunk_sizes=[[16, 8, 16]],
        processing_blend_pads=[[2, 2, 2]], processing_batch=[2, 2, 2],
        level_intermediaries_dirs=[str(tmp_path / "t")], verbose=False)
    counted = count_tasks(flow)
    # 3 x 5 x 2 chunks in batches of 2 x 2 x 2: 2 x 3 x 1 batches
    assert counted.exact and counted.counts["subchunkable.process_batch"] == 6
    assert counted.counts["subchunkable.reduce_chunk"] > 0
    assert not (tmp_path / "dst").exists()


def test_a_seam_piece_lost_after_its_batch_was_recorded_is_computed_again(
        tmp_path: Path) -> None:
    """The run stops after its batches (the seam reductions fail, as a crash would leave
    them); the staging area loses every staged piece; the resumed run (a new process) computes
    those chunks again and writes the uninterrupted run's bytes."""
    shape = (48, 40, 32)
    src, _ = make_volume(tmp_path / "src", shape=shape)
    kw: dict[str, Any] = {"processing_chunk_sizes": [[16, 20, 16]],
                          "processing_blend_pads": [[3, 3, 3]],
                          "processing_blend_modes": "linear"}
    want = _run(tmp_path, src, "plain", shape, [16, 20, 16],
                fn=functools.partial(gaussian_filter, sigma=1.0), **kw)
    script = (
        "import functools, json, sys\n"
        "from specflow.processing import build_subchunkable_apply_flow, gaussian_filter\n"
        "from specflow.run import execute\n"
        "from specflow.volumes import BBox3D, build_ts_layer\n"
        "src, dst, staging, db, fail = sys.argv[1:6]\n"
        "import specflow.processing.subchunkable as s\n"
        "if fail == '1':\n"
        "    def refuse(*a, **k):\n"
        "        raise RuntimeError('stopped before the seams')\n"
        "    s.reduce_chunk.fn = refuse\n"
        "flow = build_subchunkable_apply_flow(\n"
        "    dst=build_ts_layer(dst, info_reference_path=src), dst_resolution=[1, 1, 1],\n"
        "    fn=functools.partial(gaussian_filter, sigma=1.0),\n"
        "    op_kwargs={'src': build_ts_layer(src)}, bbox=BBox3D((0, 0, 0), (48, 40, 32)),\n"
        "    level_intermediaries_dirs=[staging], processing_batch=[2, 1, 1], verbose=False,\n"
        "    **json.loads(sys.argv[6]))\n"
        "report = execute(flow, backend='inline', checkpoint=db, max_attempts=1)\n"
        "print(report.status)\n")
    args = [str(tmp_path / "src"), str(tmp_path / "batched"), str(tmp_path / "staging"),
            str(tmp_path / "run.db")]
    first = subprocess.run([sys.executable, "-c", script, *args, "1", json.dumps(kw)],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[-1] != "done"
    with Checkpoint(str(tmp_path / "run.db")) as cp:
        done = list(cp.task_rows("done", operation="subchunkable.process_batch"))
    assert len(done) == 2 * 2 * 2  # 3 x 2 x 2 chunks in batches of 2 x 1 x 1
    pieces = list((tmp_path / "staging").glob("staging-*/pieces/*"))
    assert pieces
    for p in pieces:
        p.unlink()
    second = subprocess.run([sys.executable, "-c", script, *args, "0", json.dumps(kw)],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[-1] == "done", second.stdout + second.stderr
    logs = second.stderr + "".join(p.read_text(errors="replace")
                                   for p in (tmp_path / "logs").rglob("*.log"))
    assert logs.count("computed it again") >= len(pieces)
    got = build_ts_layer(str(tmp_path / "batched")).read(whole(shape))
    assert np.array_equal(got, want)
