from __future__ import annotations

import concurrent.futures as cf
import threading
from pathlib import Path

import specflow
from specflow.backends.base import MAX_DEFERRED_BYTES, MAX_DEFERRED_TASKS, run_batch, run_task
from specflow.flow.completion import defer

_POOL = cf.ThreadPoolExecutor(4)
DEFERRED: list[str] = []


def _write_after(returned: threading.Event, path: str, fail: bool) -> None:
    returned.wait(60)  # the task has returned by now: only its runner is waiting for us
    if fail:
        raise OSError(f"disk full writing {path}")
    Path(path).write_text("written")


@specflow.taskable_operation
def write_later(path: str, fail: bool = False, nbytes: int = 0) -> str:
    returned = threading.Event()
    fut = _POOL.submit(_write_after, returned, path, fail)
    if not defer(fut, nbytes):
        returned.set()
        fut.result()
        return path
    DEFERRED.append(path)
    returned.set()  # the write starts only after this task is done with it
    return path


def test_a_batch_reports_tasks_only_once_their_deferred_writes_are_done(tmp_path: Path) -> None:
    n = MAX_DEFERRED_TASKS + 3  # more than may be in flight: the oldest are settled early
    tasks = [write_later.make_task(path=str(tmp_path / f"{i}.txt")) for i in range(n)]
    tasks.append(write_later.make_task(path=str(tmp_path / "bad.txt"), fail=True))
    DEFERRED.clear()
    outcomes = run_batch(tasks)
    assert len(DEFERRED) == n + 1  # every task left its write to the batch
    assert [o.task_id for o in outcomes] == [t.id for t in tasks]
    assert all(o.ok for o in outcomes[:n])
    assert all((tmp_path / f"{i}.txt").read_text() == "written" for i in range(n))
    bad = outcomes[-1]
    assert not bad.ok and bad.error is not None and "disk full" in bad.error
    assert bad.exc_types[0] == "OSError" and not (tmp_path / "bad.txt").exists()


def test_without_a_collecting_runner_the_task_waits_itself(tmp_path: Path) -> None:
    DEFERRED.clear()
    o = run_task(write_later.make_task(path=str(tmp_path / "one.txt")))
    assert o.ok and not DEFERRED and (tmp_path / "one.txt").read_text() == "written"


def test_deferred_bytes_are_bounded_and_still_settled(tmp_path: Path) -> None:
    DEFERRED.clear()
    tasks = [write_later.make_task(path=str(tmp_path / f"{i}.txt"), nbytes=MAX_DEFERRED_BYTES)
             for i in range(4)]
    outcomes = run_batch(tasks)
    assert len(DEFERRED) == 4 and all(o.ok for o in outcomes)
    assert all((tmp_path / f"{i}.txt").read_text() == "written" for i in range(4))
