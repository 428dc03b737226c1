"""Shared fixtures: every test runs in its own working folder, so run dirs never mix."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPECFLOW_RUN_ROOT", raising=False)
    return tmp_path


@pytest.fixture()
def user_ops() -> str:
    """Path of the operations module that CLI tests import with ``-i``."""
    return str(TESTS / "user_ops.py")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("COLUMNS", "200")
