"""The SLURM backend's settings and its worker-side job body, without a cluster."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import cloudpickle
import pytest
import user_ops

from specflow.backends.base import Outcome, run_task
from specflow.backends.slurm import (
    SlurmBackend,
    _decode,
    _encode,
    _expand_ids,
    _unpickle_outcome,
    make_slurm_backend,
    parse_time_limit,
    run_job,
)
from specflow.flow.task import Task


@pytest.mark.parametrize(
    ("given", "minutes"),
    [(None, 60), (90, 90), (2.5, 3), ("45", 45), ("10:30", 11), ("01:30:00", 90),
     ("1-00:00:00", 1440), ("2-12", 3600), ("0-00:00:30", 1)],
)
def test_time_limits(given: object, minutes: int) -> None:
    assert parse_time_limit(given) == minutes  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["soon", "1:2:3:4", 0, -5, "00:00:00", True])
def test_bad_time_limits(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_time_limit(bad)  # type: ignore[arg-type]


def test_settings_from_a_spec() -> None:
    be = make_slurm_backend(partition="debug", time_limit="00:10:00", mem_gb=1.5, gres=None,
                            extra={"qos": "low"}, slurm_setup=["module load x"],
                            tasks_per_job=10)
    assert be.partition == "debug"
    assert be.time_limit_min == 10
    assert be.mem == "1536M"
    assert be.gres is None
    assert be.sbatch_options == {"qos": "low"}
    assert be.setup == ["module load x"]
    assert be.tasks_per_job == 10
    assert make_slurm_backend(mem_gb=4).mem == "4G"
    assert make_slurm_backend(mem="500M").mem == "500M"


@pytest.mark.parametrize(
    "settings",
    [{"partitoin": "debug"}, {"mem": "1G", "mem_gb": 1}, {"tasks_per_job": 0},
     {"max_jobs_in_flight": 0}, {"array_parallelism": 0}, {"cpus_per_task": 0}],
)
def test_bad_settings(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_slurm_backend(**settings)


def test_capacity_follows_the_grouping() -> None:
    assert SlurmBackend(tasks_per_job=4, max_jobs_in_flight=3).capacity() == 12
    assert SlurmBackend().capacity() > 1000


def test_array_ids_expand() -> None:
    assert _expand_ids("12_[1-3,7%2]") == ["12_1", "12_2", "12_3", "12_7"]
    assert _expand_ids("12_4") == ["12_4"]
    assert _expand_ids("99") == ["99"]


def test_stream_records_round_trip_and_stop_at_a_torn_tail() -> None:
    ok = run_task_outcome(user_ops.square.make_task(x=7))
    bad = run_task_outcome(Task(fn=threading.Lock, kwargs={}, id="lock", operation="lock"))
    data = _encode(ok) + _encode(bad)
    records, used = _decode(data + _encode(ok)[:5])
    assert used == len(data)
    first, second = (_unpickle_outcome(tid, inner) for tid, inner in records)
    assert first.ok and first.value == 49
    # a value that cannot be pickled fails its task, and only that task
    assert not second.ok and second.error is not None
    assert second.error.startswith("TaskTransportError")


def run_task_outcome(task: Task) -> Outcome:
    return run_task(task)


def test_job_body_streams_outcomes_and_skips_reported_tasks_when_rerun(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    tasks = [user_ops.append.make_task(path=str(out), line=f"l{i}") for i in range(3)]
    tasks.append(user_ops.fail.make_task(message="nope"))
    payload = cloudpickle.dumps(tasks)
    stream = tmp_path / "stream.out"
    outcomes = run_job(str(stream), (), payload)
    assert [o.ok for o in outcomes] == [True, True, True, False]
    assert outcomes[3].error == "ValueError: nope"
    records, used = _decode(stream.read_bytes())
    assert used == stream.stat().st_size
    assert [tid for tid, _ in records] == [t.id for t in tasks]
    # run again (a requeued job): what the stream holds is not redone
    again = run_job(str(stream), (), payload)
    assert [o.task_id for o in again] == [t.id for t in tasks]
    assert out.read_text().splitlines() == ["l0", "l1", "l2"]
    assert pickle.loads(pickle.dumps(again))[0].value == "l0"
