"""Every case of the shared CUE conformance corpus, evaluated by the built-in evaluator.

The corpus lives next to the repository (``../shared/cue-conformance``); it is read from there
and never copied. Each case is either ``expected/NAME.json`` (the value ``cue export`` printed)
or ``expected/NAME.error`` (the first line of cue's refusal: the field path before the first
``:`` must appear in specflow's message).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from specflow.spec.cue import load_cue
from specflow.spec.errors import SpecError

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "cue-conformance"
CASES = sorted((CORPUS / "cases").glob("*.cue")) if CORPUS.is_dir() else []


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cue_conformance_check", CORPUS / "check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def same() -> Any:
    return _checker().same


pytestmark = pytest.mark.skipif(not CASES, reason=f"conformance corpus not found at {CORPUS}")


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_conformance_case(case: Path, same: Any) -> None:
    expected_json = CORPUS / "expected" / f"{case.stem}.json"
    expected_error = CORPUS / "expected" / f"{case.stem}.error"
    if expected_json.exists():
        got = load_cue(case)
        want = json.loads(expected_json.read_text())
        assert same(json.loads(json.dumps(got)), want)
    else:
        assert expected_error.exists(), f"no expectation for {case.name}"
        ref = expected_error.read_text().strip()
        field = ref.split(":", 1)[0].strip()
        with pytest.raises(SpecError) as info:
            load_cue(case)
        if " " not in field:
            assert field in str(info.value)
