"""Runs through the command line with worker processes: the order tasks finish in, and a
crash in the middle, must not change a single voxel."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from specflow.volumes import VolumetricIndex, build_ts_layer

HERE = Path(__file__).parent
SHAPE = [64, 64, 48]
WHOLE = VolumetricIndex.from_voxels((0, 0, 0), SHAPE, (1, 1, 1))


def spec(tmp: Path, name: str, *, max_delay: float, workers: int,
         fn: dict[str, Any] | None = None) -> Path:
    raw = str(tmp / "raw.zarr")
    blur_stage = {
        "@type": "build_subchunkable_apply_flow",
        "fn": fn or {"@type": "jittery_gaussian", "@mode": "partial", "sigma": 1.0,
                     "max_delay": max_delay},
        "op_kwargs": {"src": {"@type": "build_ts_layer", "path": raw}},
        "dst": {"@type": "build_ts_layer", "path": str(tmp / f"{name}.zarr"),
                "info_reference_path": raw},
        "dst_resolution": [1, 1, 1],
        "start_coord": [0, 0, 0], "end_coord": SHAPE, "coord_resolution": [1, 1, 1],
        "processing_chunk_sizes": [[16, 16, 16], [12, 12, 12]],
        "processing_crop_pads": [[0, 0, 0], [3, 3, 3]],
        "processing_blend_pads": [[4, 4, 4], [0, 0, 0]],
        "processing_blend_modes": "quadratic",
        "level_intermediaries_dirs": [str(tmp / f"tmp_{name}")] * 2,
        "max_reduction_chunk_size": [32, 32, 32],
    }
    doc = {
        "@type": "execute", "backend": "local", "workers": workers,
        "target": {"@type": "sequential_flow", "stages": [
            {"@type": "synthetic_volume", "path": raw, "size": SHAPE,
             "chunk_size": [16, 16, 16], "seed": 3},
            blur_stage,
        ]},
    }
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specflow", *args], capture_output=True,
                          text=True, timeout=300, **kw)


def read(tmp: Path, name: str) -> Any:
    return build_ts_layer(str(tmp / f"{name}.zarr")).read(WHOLE)


def test_random_delays_many_workers_same_output(tmp_path: Path) -> None:
    outputs = []
    for i in range(3):
        path = spec(tmp_path, f"run{i}", max_delay=0.03, workers=4)
        done = cli("run", str(path), "-i", str(HERE / "slow_ops.py"), "--run-dir",
                   str(tmp_path / f"rundir{i}"), "--no-progress")
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(read(tmp_path, f"run{i}"))
    for out in outputs[1:]:
        assert np.array_equal(out, outputs[0])
    assert outputs[0].std() > 0.01


def _done_chunks(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            row = con.execute("select count(*) from tasks where status = 'done' and "
                              "operation = 'subchunkable.process_chunk'").fetchone()
            return int(row[0])
    except sqlite3.OperationalError:
        return 0


def run_ref(tmp: Path) -> None:
    ref = spec(tmp, "ref", max_delay=0.0, workers=2)
    done = cli("run", str(ref), "-i", str(HERE / "slow_ops.py"), "--run-dir",
               str(tmp / "refdir"), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr


def kill_once_done(path: Path, rundir: Path, chunks: int) -> None:
    """Run ``path`` and kill its driver and workers once ``chunks`` chunk tasks are done."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "specflow", "run", str(path), "-i", str(HERE / "slow_ops.py"),
         "--run-dir", str(rundir), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while _done_chunks(rundir / "checkpoint.db") < chunks and time.time() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
        assert _done_chunks(rundir / "checkpoint.db") >= chunks
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
        proc.wait()


def test_killed_run_resumes_to_identical_output(tmp_path: Path) -> None:
    run_ref(tmp_path)
    path = spec(tmp_path, "killed", max_delay=0.05, workers=2)
    rundir = tmp_path / "killeddir"
    kill_once_done(path, rundir, 8)
    assert _done_chunks(rundir / "checkpoint.db") < 64, "killed too late to test anything"

    resumed = cli("resume", str(rundir / "checkpoint.db"), "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed: skipped" in resumed.stdout
    assert np.array_equal(read(tmp_path, "killed"), read(tmp_path, "ref"))


def test_a_resumed_run_computes_again_what_the_staging_area_lost(tmp_path: Path) -> None:
    """Staged outputs of chunks recorded done are deleted between the killed run and its
    resume (as a staging area on storage that does not survive a restart would lose them):
    the reduction computes those chunks again instead of blending in zeros."""
    run_ref(tmp_path)
    gate = tmp_path / "gate"
    # 8 calls of the operation per top-level chunk (2^3 sub-chunks): 80 let 8+ chunks finish
    fn = {"@type": "gated_gaussian", "@mode": "partial", "sigma": 1.0, "gate": str(gate),
          "free_calls": 80}
    path = spec(tmp_path, "lost", max_delay=0.0, workers=2, fn=fn)
    rundir = tmp_path / "lostdir"
    # the synthetic volume's 48 chunks come first, then those of the blur
    kill_once_done(path, rundir, 48 + 6)
    slots = [p for p in (tmp_path / "tmp_lost").glob("staging-*/c/**/*") if p.is_file()]
    assert len(slots) >= 6
    for p in slots:
        p.unlink()

    gate.touch()
    resumed = cli("resume", str(rundir / "checkpoint.db"), "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed: skipped" in resumed.stdout
    assert np.array_equal(read(tmp_path, "lost"), read(tmp_path, "ref"))
    logs = "".join(p.read_text(errors="replace") for p in rundir.rglob("*.log"))
    assert logs.count("computed it again") >= 6
