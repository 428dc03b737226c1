"""Version specifiers for registered types: ``">=0"``, ``">=0.2,<1.0"``, ``"==1.1"``."""

from __future__ import annotations

import re

_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*([0-9]+(?:\.[0-9]+)*)\s*$")


def parse_version(text: str) -> tuple[int, ...]:
    text = str(text).strip()
    if not re.fullmatch(r"[0-9]+(?:\.[0-9]+)*", text):
        raise ValueError(f"not a version: {text!r} (expected numbers separated by dots, e.g. 0.4)")
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


class VersionSpec:
    """A comma-separated conjunction of comparisons against versions."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.clauses: list[tuple[str, tuple[int, ...]]] = []
        for clause in str(text).split(","):
            if not clause.strip():
                continue
            m = _CLAUSE.match(clause)
            if not m:
                raise ValueError(f"bad version specifier clause {clause!r} in {text!r}")
            self.clauses.append((m.group(1) or "==", parse_version(m.group(2))))

    def contains(self, version: str | tuple[int, ...]) -> bool:
        v = parse_version(version) if isinstance(version, str) else version
        for op, bound in self.clauses:
            ok = {
                ">=": v >= bound,
                "<=": v <= bound,
                ">": v > bound,
                "<": v < bound,
                "==": v == bound,
                "!=": v != bound,
            }[op]
            if not ok:
                return False
        return True

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"VersionSpec({self.text!r})"
