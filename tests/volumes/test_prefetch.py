"""Reads started ahead of the task that needs them."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from specflow.backends.base import Outcome, prefetch_for, run_task
from specflow.flow.task import Task
from specflow.processing import build_subchunkable_apply_flow, mean_filter
from specflow.processing.subchunkable import process_chunk
from specflow.run import execute
from specflow.run.api import CountingBackend
from specflow.volumes import BBox3D, VolumetricIndex, build_ts_layer

RES = (1.0, 1.0, 1.0)


def _layer(path: Path) -> Any:
    layer = build_ts_layer(str(path), format="zarr", info_dtype="float32",
                           info_size=[16, 16, 16], info_chunk_size=[8, 8, 8],
                           info_resolution=list(RES))
    layer.prepare_for_write(list(RES))
    return layer


def test_a_read_takes_the_data_read_ahead_and_a_write_drops_it(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "a")
    idx = VolumetricIndex.from_voxels((2, 2, 2), (14, 14, 14), RES)
    whole = VolumetricIndex.from_voxels((0, 0, 0), (16, 16, 16), RES)
    layer.write(whole, np.full((1, 16, 16, 16), 3, np.float32))
    other = pickle.loads(pickle.dumps(layer))  # another object, the same settings
    layer.prefetch(idx)
    ahead = layer._rt.ahead  # type: ignore[attr-defined]
    assert len(ahead) == 1
    got = other.read(idx)
    assert not ahead and got.shape == (1, 12, 12, 12) and float(got.min()) == 3
    # a write after the read started makes it stale: it is dropped, the read sees the write
    layer.prefetch(idx)
    layer.write(whole, np.full((1, 16, 16, 16), 5, np.float32))
    assert not ahead and float(layer.read(idx).max()) == 5
    # layers with processors are not read ahead
    layer.with_procs(read_procs=[np.negative]).prefetch(idx)
    assert not ahead


class _Capture(CountingBackend):
    """Runs a flow's tasks but those of one operation, which it keeps unrun (reported
    done)."""

    name = "capture"

    def __init__(self, *keep: str) -> None:
        super().__init__()
        self.keep = keep or (process_chunk.name,)
        self.chunks: list[Task] = []

    def capacity(self) -> int:
        return 100

    def submit(self, tasks: Sequence[Task]) -> None:
        for t in tasks:
            if t.operation in self.keep:
                self.chunks.append(t)
                self._done.append(Outcome(t.id, True))
            else:
                self._done.append(run_task(t))


def test_a_chunk_task_reads_its_inputs_ahead_and_computes_the_same(tmp_path: Path) -> None:
    src = _layer(tmp_path / "src")
    data = np.random.default_rng(4).random((1, 16, 16, 16), dtype=np.float32)
    src.write(VolumetricIndex.from_voxels((0, 0, 0), (16, 16, 16), RES), data)
    dst = build_ts_layer(str(tmp_path / "dst"), info_reference_path=str(tmp_path / "src"))
    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), bbox=BBox3D((0, 0, 0), (16, 16, 16)),
        fn=mean_filter, op_kwargs={"src": src}, processing_chunk_sizes=[[8, 8, 8], [4, 4, 4]],
        processing_crop_pads=[[0, 0, 0], [1, 1, 1]], skip_intermediaries=True)
    backend = _Capture()
    execute(flow, backend=backend, checkpoint=False)
    assert len(backend.chunks) == 8
    ahead = src._rt.ahead  # type: ignore[attr-defined]
    for task in backend.chunks:
        prefetch_for(task)
        assert len(ahead) == 8  # one read per 4^3 sub-chunk, each with its context
        assert run_task(task).ok
        assert not ahead  # the task took every read started for it
    want = mean_filter(data, radius=1)
    whole = VolumetricIndex.from_voxels((0, 0, 0), (16, 16, 16), RES)
    assert np.array_equal(dst.read(whole), want)


def test_a_reduction_task_reads_its_staged_inputs_ahead(tmp_path: Path) -> None:
    src = _layer(tmp_path / "src")
    data = np.random.default_rng(5).random((1, 16, 16, 16), dtype=np.float32)
    whole = VolumetricIndex.from_voxels((0, 0, 0), (16, 16, 16), RES)
    src.write(whole, data)
    dst = build_ts_layer(str(tmp_path / "dst"), info_reference_path=str(tmp_path / "src"))
    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=list(RES), bbox=BBox3D((0, 0, 0), (16, 16, 16)),
        fn=mean_filter, op_kwargs={"src": src}, processing_chunk_sizes=[[8, 8, 8]],
        processing_crop_pads=[[2, 2, 2]], processing_blend_pads=[[1, 1, 1]],
        processing_blend_modes="max", level_intermediaries_dirs=[str(tmp_path / "t")])
    # the staging area stays: its deletion is kept unrun too
    backend = _Capture("subchunkable.reduce_chunk", "subchunkable.delete_staging")
    execute(flow, backend=backend, checkpoint=False)
    parts = [t for t in backend.chunks if t.operation == "subchunkable.reduce_chunk"]
    assert parts
    for task in parts:
        staging = task.kwargs["staging"]
        prefetch_for(task)
        ahead = staging._rt.ahead
        assert ahead  # the staged outputs overlapping its part, read ahead
        assert run_task(task).ok
        assert not ahead
    assert np.array_equal(dst.read(whole), mean_filter(data, radius=1))
