"""A sharded neuroglancer precomputed dst keeps many stored chunks in one shard file. Chunk
tasks aligned with the stored chunks but not with the shards make two workers rewrite the same
shard file at once; tensorstore's conditional writes (read, modify, write only if unchanged,
else again) must keep every chunk that either of them wrote."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from specflow.backends.local import LocalBackend
from specflow.execution.checkpoint import Checkpoint
from specflow.processing import build_subchunkable_apply_flow, mean_filter
from specflow.run import execute
from specflow.volumes import BBox3D, build_ts_layer

SIZE, CHUNK = 64, 8


def _sharded(path: Path) -> dict[str, Any]:
    # identity hash, 3 shard bits above 6 bits of minishard and preshift: the 8 shards are
    # the 8 octants of the 8^3 chunk grid, 64 stored chunks each
    return {"driver": "neuroglancer_precomputed", "kvstore": f"file://{path}/",
            "scale_metadata": {"size": [SIZE] * 3, "chunk_size": [CHUNK] * 3, "encoding": "raw",
                               "resolution": [1, 1, 1],
                               "sharding": {"@type": "neuroglancer_uint64_sharded_v1",
                                            "preshift_bits": 3, "hash": "identity",
                                            "minishard_bits": 3, "shard_bits": 3,
                                            "minishard_index_encoding": "raw",
                                            "data_encoding": "raw"}},
            "multiscale_metadata": {"data_type": "float32", "num_channels": 1, "type": "image"}}


def test_two_workers_writing_chunks_of_the_same_shards_lose_none(workdir: Path) -> None:
    data = np.random.default_rng(5).random((SIZE, SIZE, SIZE, 1), dtype=np.float32)
    ts.open(_sharded(workdir / "src"), create=True).result().write(data).result()
    ts.open(_sharded(workdir / "dst"), create=True).result()
    src = build_ts_layer(str(workdir / "src"), readonly=True)
    dst = build_ts_layer(str(workdir / "dst"))
    flow = build_subchunkable_apply_flow(
        dst=dst, dst_resolution=[1, 1, 1], bbox=BBox3D((0, 0, 0), (SIZE,) * 3), fn=mean_filter,
        op_kwargs={"src": src}, processing_chunk_sizes=[[CHUNK] * 3],
        processing_crop_pads=[[1] * 3], skip_intermediaries=True)
    # one task at a time per worker: the two workers take turns through every octant
    report = execute(flow, backend=LocalBackend(workers=2, max_batch=1),
                     run_dir=workdir / "run")
    assert report.status == "done"
    got = ts.open(_sharded(workdir / "dst"), open=True).result().read().result()
    assert np.array_equal(got[..., 0], mean_filter(data[..., 0][None], radius=1)[0])
    # and the shards were shared: some octant holds chunks that each of the workers wrote
    with Checkpoint(workdir / "run" / "checkpoint.db") as ck:
        rows = [r for r in ck.task_rows("done") if r.operation == "subchunkable.process_chunk"]
    assert len(rows) == (SIZE // CHUNK) ** 3
    writers: dict[tuple[int, ...], set[str]] = {}
    for r in rows:
        assert r.args is not None
        box = re.search(r"x (\d+):\d+ y (\d+):\d+ z (\d+):\d+", r.args)
        assert box is not None, r.args
        octant = tuple(int(v) // (SIZE // 2) for v in box.groups())
        writers.setdefault(octant, set()).add(str(r.worker))
    assert any(len(w) == 2 for w in writers.values()), writers
