"""tensorstore, imported on first use.

Loading tensorstore takes a second or more on some machines. A driving process that only
describes layers (their settings, their metadata on local disk) never needs it, and its
workers, which do, then start while the driver is still setting up.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """A module imported when one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._module: types.ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self.__name__)
        return getattr(module, attr)


tensorstore = LazyModule("tensorstore")
