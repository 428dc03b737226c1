"""The result cache of pure operations: a later run takes their values without running
them, without being told to; the cache stays within its bound and can be emptied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import user_ops
from support import TESTS

from specflow.execution.cache import ResultCache, clear_cache
from specflow.run import execute

USER_OPS = str(TESTS / "user_ops.py")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_later_run_takes_pure_values_from_the_cache(workdir: Path) -> None:
    log, out = workdir / "ran.txt", workdir / "sum.txt"
    first = execute(user_ops.sum_of_pure_squares(n=6, log=str(log), out=str(out)),
                    backend="inline", run_dir=workdir / "r1")
    assert first.status == "done"
    assert sorted(lines(log)) == [str(i) for i in range(6)]
    assert first.counts["test.pure_square"]["done"] == 6
    cached = list((workdir / ".specflow" / "cache").rglob("*.json"))
    assert len(cached) == 6
    out.unlink()
    # a new run (not a resume, no --reuse): the pure tasks do not run, their values do come
    second = execute(user_ops.sum_of_pure_squares(n=6, log=str(log), out=str(out)),
                     backend="local", workers=2, run_dir=workdir / "r2")
    assert second.status == "done"
    assert len(lines(log)) == 6, "pure tasks ran again"
    assert second.counts["test.pure_square"]["reused"] == 6
    assert second.counts["test.pure_square"]["done"] == 0
    # the impure task that reads their values ran, with the right values
    assert lines(out) == [str(sum(i * i for i in range(6)))]


def test_the_cache_keeps_values_losslessly_and_stays_within_its_bound(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache", max_bytes=20_000)
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    assert cache.put("a" * 32, {"arr": arr, "t": (1, 2), "b": b"\x00\x01"})
    got = cache.get("a" * 32)
    assert np.array_equal(got["arr"], arr) and got["arr"].dtype == np.int16
    assert got["t"] == (1, 2) and got["b"] == b"\x00\x01"
    for i in range(200):
        cache.put(f"{i:032d}", "x" * 500)
    assert cache.size() <= 20_000
    assert cache.get(f"{199:032d}") == "x" * 500, "the newest values stay"
    from specflow.execution.cache import MISSING

    assert cache.get(f"{0:032d}") is MISSING, "the least recently used values went first"
    n, size = clear_cache(tmp_path / "cache")
    assert n > 0 and size > 0
    assert cache.size() == 0


def test_values_that_are_not_data_are_not_cached(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    assert not cache.put("c" * 32, object())
    assert cache.size() == 0


def test_types_shows_pure_operations(workdir: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "specflow", "types", "-i", USER_OPS,
                        "test.pure_square"], capture_output=True, text=True, timeout=120,
                       cwd=workdir, env={**os.environ, "COLUMNS": "300"})
    assert r.returncode == 0, r.stderr
    assert "(pure)" in r.stdout
    r = subprocess.run([sys.executable, "-m", "specflow", "types", "-i", USER_OPS,
                        "test.square"], capture_output=True, text=True, timeout=120,
                       cwd=workdir, env={**os.environ, "COLUMNS": "300"})
    assert "(pure)" not in r.stdout


def test_clean_cache_empties_it_and_the_next_run_computes_again(workdir: Path) -> None:
    log, out = workdir / "ran.txt", workdir / "sum.txt"
    execute(user_ops.sum_of_pure_squares(n=3, log=str(log), out=str(out)), backend="inline",
            run_dir=workdir / "r1")
    assert len(list((workdir / ".specflow" / "cache").rglob("*.json"))) == 3
    r = subprocess.run([sys.executable, "-m", "specflow", "clean", "--cache"], cwd=workdir,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "removed 3 cached value(s)" in r.stdout
    assert not list((workdir / ".specflow" / "cache").rglob("*.json"))
    again = execute(user_ops.sum_of_pure_squares(n=3, log=str(log), out=str(out)),
                    backend="inline", run_dir=workdir / "r2")
    assert again.counts["test.pure_square"]["done"] == 3
    assert len(lines(log)) == 6
