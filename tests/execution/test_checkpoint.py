from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from user_ops import append_many, square

import specflow
from specflow.execution.checkpoint import Checkpoint, CheckpointError


def test_checkpoint_records_run_and_tasks(workdir: Path) -> None:
    out = workdir / "o.txt"
    report = specflow.execute(append_many(str(out), 50), backend="inline",
                              run_dir=workdir / "run", spec={"note": "x"})
    assert report.status == "done"
    with Checkpoint(workdir / "run" / "checkpoint.db") as ck:
        info = ck.run_info()
        assert info.status == "done" and info.spec == {"note": "x"}
        assert info.specflow_version == specflow.__version__
        assert ck.counts() == {"test.append": {"done": 50}}
        rows = list(ck.task_rows("done"))
        assert len({r.id for r in rows}) == 50
        assert all(r.started and r.finished and r.finished >= r.started for r in rows)
        assert sorted(r.value_json for r in rows)[0] == '"t0"'
    # WAL journal is on
    con = sqlite3.connect(workdir / "run" / "checkpoint.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_rerun_on_same_checkpoint_skips_done_tasks_and_restores_values(workdir: Path) -> None:
    out = workdir / "o.txt"
    specflow.execute(append_many(str(out), 20), backend="inline", run_dir=workdir / "run")
    again = specflow.execute(append_many(str(out), 25), backend="inline",
                             checkpoint=workdir / "run" / "checkpoint.db")
    assert again.resumed_done == 20
    assert again.total("done") == 5
    assert len(out.read_text().splitlines()) == 25

    from user_ops import sum_of_squares

    specflow.execute(sum_of_squares(4, str(workdir / "s.txt")), backend="inline",
                     run_dir=workdir / "r2")
    (workdir / "s.txt").unlink()
    rerun = specflow.execute(sum_of_squares(4, str(workdir / "s.txt")), backend="inline",
                             checkpoint=workdir / "r2" / "checkpoint.db")
    # every task was done; the dependency values come back from the checkpoint
    assert rerun.resumed_done == 5 and rerun.total("done") == 0
    assert square(0) == 0


def test_a_checkpoint_path_names_the_file_the_run_keeps(workdir: Path) -> None:
    out = workdir / "o.txt"
    first = specflow.execute(append_many(str(out), 6), backend="inline",
                             checkpoint=workdir / "runs" / "mine.db")
    assert first.total("done") == 6
    assert (workdir / "runs" / "mine.db").is_file()
    assert not (workdir / "runs" / "checkpoint.db").exists()
    again = specflow.execute(append_many(str(out), 8), backend="inline",
                             checkpoint=workdir / "runs" / "mine.db")
    assert again.resumed_done == 6 and again.total("done") == 2


def test_foreign_and_corrupt_files_get_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CheckpointError, match="not a readable SQLite database"):
        Checkpoint(junk)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(CheckpointError, match="not a specflow checkpoint"):
        Checkpoint(other)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Checkpoint(tmp_path / "missing.db")


def test_job_updates_keep_what_they_do_not_carry(tmp_path: Path) -> None:
    from specflow.backends.base import JobRecord

    with Checkpoint(tmp_path / "c.db", create=True) as ck:
        ck.record_jobs("slurm", [JobRecord("7_0", "RUNNING", 12, "/logs/7_0.out", 1.0),
                                 JobRecord("8_0", "PENDING", 3, None, 1.0)])
        ck.record_jobs("slurm", [JobRecord("7_0", "CANCELLED", 0, None, 2.0),
                                 JobRecord("8_0", "COMPLETED", 3, "/logs/8_0.out", 2.0)])
        jobs = {j["job_id"]: j for j in ck.jobs()}
        assert jobs["7_0"]["state"] == "CANCELLED"
        assert jobs["7_0"]["n_tasks"] == 12 and jobs["7_0"]["log_path"] == "/logs/7_0.out"
        assert jobs["8_0"]["log_path"] == "/logs/8_0.out"
        assert ck.live_jobs() == []


def test_a_driver_without_a_checkpoint_leaves_the_database_layer_unloaded(workdir: Path) -> None:
    """SQLAlchemy takes a fifth of a second to import; a run that keeps no checkpoint does
    not pay it, and one that keeps a checkpoint still records every task."""
    script = textwrap.dedent(f"""
        import sys
        import specflow
        from user_ops import append_many
        report = specflow.execute(append_many({str(workdir / "a.txt")!r}, 5), backend="local",
                                  workers=1, checkpoint=False)
        print(report.status, "sqlalchemy" in sys.modules)
        report = specflow.execute(append_many({str(workdir / "b.txt")!r}, 5), backend="local",
                                  workers=1, run_dir={str(workdir / "run")!r})
        print(report.status, "sqlalchemy" in sys.modules)
    """)
    tests_dir = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=workdir, env={**os.environ, "PYTHONPATH": tests_dir})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["done", "False", "done", "True"]
    assert (workdir / "a.txt").read_text().count("\n") == 5
    with Checkpoint(workdir / "run" / "checkpoint.db") as ck:
        assert ck.counts() == {"test.append": {"done": 5}}
