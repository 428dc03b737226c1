"""SPECFLOW_CUE_BINARY: delegate to an external ``cue`` executable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from specflow.spec.cue import load_cue
from specflow.spec.errors import Location, SpecError


def _fake_cue(tmp_path: Path, body: str) -> Path:
    exe = tmp_path / "fake-cue"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


@pytest.mark.skipif(os.name != "posix", reason="needs a shell script")
def test_binary_output_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = _fake_cue(
        tmp_path, 'test "$1 $2 $3" = "export --out json" || exit 3\necho \'{"from": "binary"}\'\n'
    )
    spec = tmp_path / "s.cue"
    spec.write_text("a: 1\n")
    monkeypatch.setenv("SPECFLOW_CUE_BINARY", str(exe))
    assert load_cue(spec) == {"from": "binary"}


@pytest.mark.skipif(os.name != "posix", reason="needs a shell script")
def test_binary_failure_becomes_spec_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = _fake_cue(
        tmp_path,
        "echo 'job.n: conflicting values 1 and 2:' >&2\necho '    ./s.cue:1:9' >&2\nexit 1\n",
    )
    spec = tmp_path / "s.cue"
    spec.write_text("job: n: 1\njob: n: 2\n")
    monkeypatch.setenv("SPECFLOW_CUE_BINARY", str(exe))
    with pytest.raises(SpecError) as info:
        load_cue(spec)
    assert str(info.value).startswith("job.n: conflicting values 1 and 2")
    assert info.value.locations == (Location("./s.cue", 1, 9),)


def test_missing_binary_is_a_spec_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "s.cue"
    spec.write_text("a: 1\n")
    monkeypatch.setenv("SPECFLOW_CUE_BINARY", str(tmp_path / "no-such-cue"))
    with pytest.raises(SpecError) as info:
        load_cue(spec)
    assert "cannot run" in str(info.value)


def test_builtin_evaluator_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPECFLOW_CUE_BINARY", raising=False)
    spec = tmp_path / "s.cue"
    spec.write_text("a: 1 + 1\n")
    assert load_cue(spec) == {"a": 2}
