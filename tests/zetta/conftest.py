"""Fixtures for running zetta_utils specs: the input layers their integration specs read."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import link_inputs, make_inputs


@pytest.fixture(scope="session")
def zetta_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``assets/inputs/...`` (both input layers), built once per test run."""
    root = tmp_path_factory.mktemp("zetta_inputs")
    make_inputs(root)
    return root


@pytest.fixture()
def zetta_workdir(workdir: Path, zetta_inputs: Path) -> Path:
    """The test's working folder, with ``assets/inputs`` holding the input layers (specs
    write their outputs under ``assets/outputs`` and ``assets/temp`` of this folder)."""
    link_inputs(workdir, zetta_inputs)
    return workdir
