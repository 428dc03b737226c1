"""``lambda`` needs --allow-eval on run, validate and resume; validate -i knows the module's
types and reports every unexpected argument."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
from fixtures import expected_input
from support import SHARED, TESTS

WRITEPROC = (SHARED / "cue-conformance" / "cases"
             / "tests__integration__subchunkable__specs__test_uint8_copy_writeproc.cue")
needs_corpus = pytest.mark.skipif(not WRITEPROC.exists(), reason="../shared corpus not present")


def sf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specflow", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


@needs_corpus
def test_zetta_writeproc_spec_needs_allow_eval_then_runs(zetta_workdir: Path) -> None:
    out = zetta_workdir / "assets" / "outputs" / "test_uint8_copy_writeproc"
    r = sf("run", str(WRITEPROC), "--backend", "local", "--no-progress", cwd=zetta_workdir)
    assert r.returncode == 2, r.stderr
    assert "--allow-eval" in r.stderr and "target.fn.@type" in r.stderr
    assert f"{WRITEPROC.name}:15:" in r.stderr and "Traceback" not in r.stderr  # its line
    assert not out.exists()
    r = sf("validate", str(WRITEPROC), cwd=zetta_workdir)
    assert r.returncode == 2 and "--allow-eval" in r.stderr
    assert "target.dst.write_procs[0].@type" in r.stderr  # every lambda is named

    r = sf("run", str(WRITEPROC), "--backend", "local", "--no-progress", "--allow-eval",
           "--run-dir", "run", cwd=zetta_workdir)
    assert r.returncode == 0, r.stderr
    store = ts.open({"driver": "neuroglancer_precomputed",
                     "kvstore": f"file://{out.resolve()}/"}).result()
    got = np.moveaxis(store[2048:3072, 2048:3072, 2000:2006, :].read().result(), 3, 0)
    want = expected_input("uint8", [2048, 2048, 2000], [3072, 3072, 2006])
    want[..., :5] += 1  # the box is z 2000..2005; the write proc adds one
    want[..., 5] = 0
    assert np.array_equal(got, want)

    # resuming takes the opt-in from its own command line only
    r = sf("resume", "run/checkpoint.db", "--no-progress", cwd=zetta_workdir)
    assert r.returncode == 2 and "--allow-eval" in r.stderr
    r = sf("resume", "run/checkpoint.db", "--no-progress", "--allow-eval", cwd=zetta_workdir)
    assert r.returncode == 0, r.stderr


def test_lambda_refusal_names_file_and_line(workdir: Path) -> None:
    (workdir / "s.yaml").write_text(
        '"@type": sequential_flow\nstages:\n  - "@type": echo\n    message:\n'
        '      "@type": lambda\n      lambda_str: "lambda: 1"\n')
    r = sf("run", "s.yaml", "--backend", "inline", cwd=workdir)
    assert r.returncode == 2
    assert "stages[0].message.@type" in r.stderr and "--allow-eval" in r.stderr
    assert "s.yaml:5" in r.stderr
    r = sf("run", "s.yaml", "--backend", "inline", "--allow-eval", cwd=workdir)
    assert r.returncode == 0, r.stderr


def test_validate_imports_before_the_schema_and_lists_every_bad_argument(workdir: Path) -> None:
    ops = str(TESTS / "user_ops.py")
    (workdir / "ok.json").write_text(json.dumps(
        {"@type": "test.append", "path": "x.txt", "line": "a"}))
    r = sf("validate", "-i", ops, "ok.json", cwd=workdir)
    assert r.returncode == 0, r.stderr
    (workdir / "bad.json").write_text(json.dumps(
        {"@type": "test.append", "path": "x.txt", "line": "a", "colour": 1, "size": 2}))
    r = sf("validate", "-i", ops, "bad.json", cwd=workdir)
    assert r.returncode == 2
    assert "unexpected argument 'colour'" in r.stderr
    assert "unexpected argument 'size'" in r.stderr
