"""Shared fixtures: every test runs in its own working folder, so run dirs never mix."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def cluster() -> None:
    """The local SLURM cluster, brought up if it is not (in CI a cluster that does not come
    up fails the test; elsewhere it skips it)."""
    import slurm_cluster

    ok, output = slurm_cluster.ensure_cluster()
    if ok:
        return
    message = f"the local SLURM cluster did not come up:\n{output}"
    if slurm_cluster.in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture()
def job_name(cluster: None, request: pytest.FixtureRequest) -> Iterator[str]:
    """A SLURM job name of this test's own; its jobs are cancelled when it ends."""
    import slurm_cluster

    name = f"specflow-test-{request.node.name[:40]}-{os.getpid()}-{time.time_ns() % 10**9}"
    yield name
    slurm_cluster.cancel_all(name)


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("COLUMNS", "200")
