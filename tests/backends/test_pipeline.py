"""The pipeline that runs a worker's tasks: grouped writes committed once per group, each
task reported only once its writes are durable, failed commits settled task by task."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

import specflow
from specflow.backends.base import GROUP_TASKS, Outcome, Pipeline, run_batch
from specflow.flow.completion import defer, shared
from specflow.processing.subchunkable import write_out
from specflow.volumes import VolumetricIndex, build_ts_layer

RES = (1.0, 1.0, 1.0)


def _layer(path: Path, size: int) -> Any:
    layer = build_ts_layer(str(path), format="zarr", info_dtype="uint8",
                           info_size=[size, 8, 8], info_chunk_size=[8, 8, 8],
                           info_resolution=list(RES))
    layer.prepare_for_write(list(RES))
    return layer


def _on_disk(path: Path) -> np.ndarray:
    """What another process would read now (a fresh open, no shared cache)."""
    store = ts.open({"driver": "zarr", "kvstore": "file://" + str(path)}).result()
    return np.asarray(store.read().result())


@specflow.taskable_operation
def write_block(layer: Any, i: int) -> int:
    idx = VolumetricIndex.from_voxels((8 * i, 0, 0), (8 * i + 8, 8, 8), RES)
    write_out(layer, idx, np.full((1, 8, 8, 8), i + 1, dtype=np.uint8))
    return i


def test_grouped_writes_are_durable_when_each_task_is_reported(tmp_path: Path) -> None:
    n = GROUP_TASKS + 5  # more than one group
    layer = _layer(tmp_path / "dst", 8 * n)
    seen: dict[int, Outcome] = {}
    missing: list[int] = []
    commits: list[Any] = []

    def report(i: int, o: Outcome) -> None:
        if _on_disk(tmp_path / "dst")[0, 8 * i, 0, 0] != i + 1:
            missing.append(i)
        seen[i] = o

    pipeline = Pipeline(report)
    original = ts.Transaction.commit_async

    try:
        ts.Transaction.commit_async = lambda txn: commits.append(txn) or original(txn)  # type: ignore[method-assign]
        for i in range(n):
            pipeline.run(i, write_block.make_task(layer=layer, i=i))
        pipeline.drain()
    finally:
        ts.Transaction.commit_async = original  # type: ignore[method-assign]
        pipeline.close()
    assert sorted(seen) == list(range(n)) and all(o.ok for o in seen.values())
    assert not missing  # no task was reported before its block was on disk
    assert 2 <= len(commits) < n  # the blocks were committed a group at a time
    got = _on_disk(tmp_path / "dst")[0]
    want = np.repeat(np.arange(1, n + 1, dtype=np.uint8), 8)[:, None, None]
    assert np.array_equal(got, np.broadcast_to(want, got.shape))


_POOL = cf.ThreadPoolExecutor(2)
RUNS: list[tuple[int, bool]] = []


class _Txn:
    """A resource of a group whose commit fails (as a full disk would)."""

    def __init__(self) -> None:
        self.items: list[int] = []


def _failing_commit(txn: _Txn) -> cf.Future[None]:
    fut: cf.Future[None] = cf.Future()
    fut.set_exception(OSError(f"commit of {len(txn.items)} writes failed: disk full"))
    return fut


@specflow.taskable_operation
def stage(path: str, i: int, bad: bool = False) -> int:
    txn = shared("test-txn", _Txn, _failing_commit)
    RUNS.append((i, txn is not None))
    if txn is not None:
        txn.items.append(i)
        return i
    fut = _POOL.submit(_write, path, bad)
    if not defer(fut):
        fut.result()
    return i


def _write(path: str, bad: bool) -> None:
    if bad:
        raise OSError(f"no space left for {path}")
    Path(path).write_text("written")


def test_a_failed_group_commit_runs_its_tasks_again_one_by_one(tmp_path: Path) -> None:
    RUNS.clear()
    paths = [str(tmp_path / f"{i}.txt") for i in range(5)]
    tasks = [stage.make_task(path=p, i=i, bad=i == 3) for i, p in enumerate(paths)]
    outcomes = run_batch(tasks)
    # every task ran grouped first, then alone once the group's commit failed
    assert sorted(RUNS) == sorted([(i, True) for i in range(5)] + [(i, False) for i in range(5)])
    assert [o.ok for o in outcomes] == [True, True, True, False, True]
    bad = outcomes[3]
    assert bad.error is not None and "no space left" in bad.error  # its own failure, not the group's
    assert all(Path(p).read_text() == "written" for i, p in enumerate(paths) if i != 3)


GATES: dict[str, threading.Event] = {}


@specflow.taskable_operation
def wait_for(gate: str) -> None:
    if not GATES[gate].wait(60):
        raise TimeoutError("the earlier task was not reported while this one ran")


def test_a_group_is_committed_while_a_long_task_runs(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "dst", 8)
    reported = GATES["reported"] = threading.Event()
    outcomes: dict[str, Outcome] = {}

    def report(key: str, o: Outcome) -> None:
        outcomes[key] = o
        if key == "write":
            reported.set()

    pipeline = Pipeline(report)
    try:
        pipeline.run("write", write_block.make_task(layer=layer, i=0))
        # the next task ends only once the first is reported: the group must not wait for it
        pipeline.run("wait", wait_for.make_task(gate="reported"))
        pipeline.drain()
    finally:
        pipeline.close()
    assert outcomes["write"].ok and outcomes["wait"].ok, outcomes["wait"].error
    assert _on_disk(tmp_path / "dst")[0, 0, 0, 0] == 1
