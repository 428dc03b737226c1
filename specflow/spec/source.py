"""Where each part of a loaded spec came from: spec paths to file positions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from specflow.spec.errors import Location


@dataclass
class SourceMap:
    """Maps spec paths (``target.stages[1].fn``) to the position that wrote them."""

    file: str = "<spec>"
    positions: dict[str, Location] = field(default_factory=dict)

    def locate(self, path: str | None) -> Location:
        """The position of ``path`` or of its closest written ancestor."""
        p = path or ""
        while True:
            if p in self.positions:
                return self.positions[p]
            if not p:
                return Location(self.file)
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""


def format_path(parts: list[str | int] | tuple[str | int, ...] | list[Any]) -> str:
    """``["a", "b", 0, "c"]`` -> ``a.b[0].c``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out
