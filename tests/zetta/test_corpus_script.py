"""benchmarks/zetta_corpus.py sorts specs into builds / out of scope / should support."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import ROOT, SHARED

CASES = SHARED / "cue-conformance" / "cases"
pytestmark = pytest.mark.skipif(not CASES.exists(), reason="../shared corpus not present")


def corpus(only: str) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "zetta_corpus.py"),
                        "--only", only], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_categories_of_known_specs() -> None:
    out = corpus("tests__integration__subchunkable__specs__test_uint8_copy_writeproc")
    assert "builds          tests__integration__subchunkable__specs__test_uint8_copy_writeproc" \
        in out
    out = corpus("examples__training__0_first_example")
    line = next(x for x in out.splitlines() if "examples__training__0_first_example" in x)
    assert line.startswith("out of scope") and "lightning_train" in line
    assert "model training" in line.rsplit("(", 1)[1]
    out = corpus("__exc__test_uint8_exc_both_bbox_and_coords")
    assert "refused" in out.splitlines()[0]
