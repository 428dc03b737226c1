"""Reuse across runs: the quickstart, then the same spec with its threshold changed and
``--reuse``. The blur is reused; the threshold and everything after it run again (the
downsample's tasks have the same ids as before, but read a mask that changed); the result
is bit-identical to a fresh run of the edited spec."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from support import ROOT

QUICKSTART = str(ROOT / "specs" / "quickstart.yaml")
EDIT = "target.stages[2].fn.value=0.62"
LAYERS = ("raw.zarr", "blurred.zarr", "mask.zarr", "mask_16nm.zarr")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specflow", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def run_quickstart(cwd: Path, run_dir: str, *extra: str) -> subprocess.CompletedProcess[str]:
    r = cli("run", QUICKSTART, "--backend", "inline", "--run-dir", run_dir, "--no-progress",
            *extra, cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def rows(run: Path) -> dict[str, tuple[str, str]]:
    con = sqlite3.connect(run / "checkpoint.db")
    try:
        return {tid: (op, st) for tid, op, st in
                con.execute("SELECT id, operation, status FROM tasks")}
    finally:
        con.close()


def arrays(base: Path) -> dict[str, np.ndarray]:
    root = base / ".specflow" / "quickstart"
    return {name: read_zarr_tree(root / name) for name in LAYERS}


def read_zarr_tree(path: Path) -> np.ndarray:
    """Every stored byte of a layer, in a stable order (what bit-identical means here)."""
    parts = []
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        parts.append(str(f.relative_to(path)).encode())
        parts.append(f.read_bytes())
    return np.frombuffer(b"\0".join(parts), dtype=np.uint8)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A: the quickstart, then the edited spec reusing it (r2), then the edited spec again
    reusing r2 (r3); B: a fresh run of the edited spec."""
    a = tmp_path_factory.mktemp("reused")
    b = tmp_path_factory.mktemp("fresh")
    run_quickstart(a, "r1")
    first = arrays(a)
    run_quickstart(a, "r2", "--set", EDIT, "--reuse", "r1")
    run_quickstart(b, "fresh", "--set", EDIT)
    after_r2 = arrays(a)
    run_quickstart(a, "r3", "--set", EDIT, "--reuse", "r2")
    assert not np.array_equal(first["mask.zarr"], after_r2["mask.zarr"]), \
        "the edit must change the mask, or the test shows nothing"
    return {"a": a, "b": b}


def test_blur_is_reused_and_everything_after_the_threshold_runs_again(
    runs: dict[str, Path],
) -> None:
    a, b = runs["a"], runs["b"]
    r1, r2, fresh = rows(a / "r1"), rows(a / "r2"), rows(b / "fresh")
    executed = {t for t, (_, st) in r2.items() if st == "done"}
    reused = {t for t, (_, st) in r2.items() if st == "reused"}
    # the edited run does the fresh run's work, part of it by reuse (ids hold absolute
    # paths, so two folders are compared by operation)
    assert Counter(op for op, _ in r2.values()) == Counter(op for op, _ in fresh.values())
    assert all(st == "done" for _, st in fresh.values())
    assert reused <= {t for t, (_, st) in r1.items() if st == "done"}
    # every reduction belongs to the blur: all reused, none run
    assert {op for op, _ in r2.values()} >= {"subchunkable.reduce_chunk"}
    assert all(st == "reused" for op, st in r2.values() if op == "subchunkable.reduce_chunk")
    # below the changed threshold, tasks whose ids the first run had done ran again: the
    # downsample (same paths, same ids, new input) and the summary
    again = executed & set(r1)
    assert again, "tasks downstream of the changed work must run again"
    assert {r2[t][0] for t in again} == {"subchunkable.process_chunk",
                                          "subchunkable.prepare_dst", "volume_summary"}
    # the threshold's own tasks are new work
    assert executed - set(r1)


def test_result_is_bit_identical_to_a_fresh_run_of_the_edited_spec(
    runs: dict[str, Path],
) -> None:
    got, want = arrays(runs["a"]), arrays(runs["b"])
    for name in LAYERS:
        assert np.array_equal(got[name], want[name]), f"{name} differs from the fresh run"
    png = Path(".specflow") / "quickstart" / "preview.png"
    assert (runs["a"] / png).read_bytes() == (runs["b"] / png).read_bytes()


def test_second_reuse_of_the_edited_spec_runs_nothing(runs: dict[str, Path]) -> None:
    r3 = rows(runs["a"] / "r3")
    assert r3 and {st for _, st in r3.values()} == {"reused"}
    assert set(r3) == set(rows(runs["a"] / "r2"))
    status = cli("status", str(runs["a"] / "r3"), "--json", cwd=runs["a"])
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)["counts"]
    assert sum(c.get("reused", 0) for c in counts.values()) == len(r3)
    assert sum(c.get("done", 0) for c in counts.values()) == 0


def test_dry_run_counts_what_the_run_did_and_explain_names_the_edit(
    runs: dict[str, Path],
) -> None:
    a = runs["a"]
    r = cli("run", QUICKSTART, "--set", EDIT, "--reuse", "r1", "--dry-run", "--explain",
            cwd=a)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "target.stages[2].fn.value: 0.5 -> 0.62" in r.stdout
    r2 = rows(a / "r2")
    for op in {op for op, _ in r2.values()}:
        n_run = sum(1 for o, st in r2.values() if o == op and st == "done")
        n_reused = sum(1 for o, st in r2.values() if o == op and st == "reused")
        line = next(ln for ln in r.stdout.splitlines() if f" {op} " in ln)
        cells = [c.strip() for c in line.split("│") if c.strip()]
        assert cells == [op, str(n_run), str(n_reused)], line
    # (the run root holds only the index of the runs made with --run-dir above)
    assert not list((a / ".specflow" / "runs").glob("*/checkpoint.db")), "a dry run creates no run"


def test_reuse_refuses_when_an_output_is_gone(tmp_path: Path) -> None:
    run_quickstart(tmp_path, "r1")
    blurred = tmp_path / ".specflow" / "quickstart" / "blurred.zarr"
    shutil.rmtree(blurred)
    r = cli("run", QUICKSTART, "--backend", "inline", "--run-dir", "r2", "--no-progress",
            "--set", EDIT, "--reuse", "r1", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot reuse" in r.stderr and "blurred.zarr no longer exists" in r.stderr
    assert "Traceback" not in r.stderr


def test_reuse_of_a_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    r = cli("run", QUICKSTART, "--reuse", "no-such-run", "--dry-run", cwd=tmp_path)
    assert r.returncode == 2
    assert "--reuse no-such-run: no checkpoint there" in r.stderr


def test_a_resumed_reusing_run_still_reruns_below_its_own_work(tmp_path: Path) -> None:
    """Kill a run that reuses after it executed changed work; its resume must not reuse
    what comes after that work, though the earlier run did it."""
    import os
    import signal
    import time

    from support import TESTS

    ops = str(TESTS / "user_ops.py")
    out, gate, started = tmp_path / "out.txt", tmp_path / "gate", tmp_path / "started"

    def spec(value: int) -> Path:
        p = tmp_path / f"spec{value}.json"
        p.write_text(json.dumps({"@type": "test.three_stages", "out": str(out), "value": value,
                                 "gate": str(gate), "started": str(started)}))
        return p

    gate.write_text("open")
    first = cli("run", "-i", ops, str(spec(1)), "--backend", "inline", "--run-dir", "r1",
                "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    gate.unlink()
    started.unlink()
    proc = subprocess.Popen([sys.executable, "-m", "specflow", "run", "-i", ops, str(spec(2)),
                             "--backend", "inline", "--run-dir", "r2", "--no-progress",
                             "--reuse", "r1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert proc.poll() is None, "the run ended before stage 3 started"
        assert time.monotonic() < deadline, "stage 3 never started"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    gate.write_text("open")
    resumed = cli("resume", "r2", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    by_line = {}
    con = sqlite3.connect(tmp_path / "r2" / "checkpoint.db")
    for value, status in con.execute("SELECT value_json, status FROM tasks"):
        by_line[json.loads(value)] = status
    con.close()
    assert by_line == {"stage1": "reused", "stage2 value=2": "done", "stage3": "done"}
    assert out.read_text().splitlines() == ["stage1", "stage2 value=1", "stage3",
                                            "stage2 value=2", "stage3"]


def test_explain_needs_reuse(tmp_path: Path) -> None:
    r = cli("run", QUICKSTART, "--explain", cwd=tmp_path)
    assert r.returncode == 2
    assert "--explain compares with an earlier run" in r.stderr
