from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from processing_helpers import make_volume

from specflow.volumes import TSLayer


@pytest.fixture
def volume(tmp_path: Path) -> tuple[TSLayer, Any]:
    return make_volume(tmp_path / "src")
