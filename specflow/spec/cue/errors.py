"""Internal error type of the CUE evaluator, turned into SpecError at the API boundary."""

from __future__ import annotations

from typing import NamedTuple


class Pos(NamedTuple):
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class CueError(Exception):
    """An evaluation or syntax error.

    ``incomplete`` errors come from values that are not yet known (a reference to a field that
    is still ``int``, say): they do not make a disjunction branch fail and are only reported
    when a concrete value is required.
    """

    def __init__(
        self,
        msg: str,
        *,
        path: str | None = None,
        pos: list[Pos] | None = None,
        incomplete: bool = False,
        missing: bool = False,
        cycle: bool = False,
    ) -> None:
        super().__init__(msg)
        self.msg = msg
        self.path = path
        self.pos: list[Pos] = list(pos or [])
        self.incomplete = incomplete
        # a reference to a field that does not exist (or is only optional): `x == _|_` holds
        self.missing = missing
        # the value depends on itself (a field read while it is being evaluated)
        self.cycle = cycle

    def add_pos(self, *more: Pos | None) -> CueError:
        for p in more:
            if p is not None and p not in self.pos:
                self.pos.append(p)
        return self

    def __str__(self) -> str:
        head = f"{self.path}: {self.msg}" if self.path else self.msg
        return "\n".join([head] + [f"    {p}" for p in self.pos])
