"""The one error type a user sees for a bad spec or a bad command line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A position in a spec source file (1-based line and column; 0 means unknown)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line and self.col:
            return f"{self.file}:{self.line}:{self.col}"
        if self.line:
            return f"{self.file}:{self.line}"
        return self.file


class SpecError(Exception):
    """A spec (or command line) that specflow refuses.

    ``str(error)`` is the whole user-facing message: it starts with the spec path of the
    offending field (``target.stages[1].fn: ...``) when there is one, followed by one
    indented ``file:line:col`` line per contributing source position.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        locations: list[Location] | tuple[Location, ...] = (),
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.locations = tuple(locations)
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.path}: {self.message}" if self.path else self.message
        lines = [head]
        if self.hint:
            lines.append(f"    hint: {self.hint}")
        lines.extend(f"    {loc}" for loc in self.locations)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def with_path_prefix(self, prefix: str) -> SpecError:
        """The same error, its path placed under ``prefix``."""
        if not prefix:
            return self
        path = join_path(prefix, self.path) if self.path else prefix
        err = SpecError(self.message, path=path, locations=self.locations, hint=self.hint)
        err.__cause__ = self.__cause__
        return err


def join_path(prefix: str, rest: str | None) -> str:
    """Join spec path parts: ``a`` + ``b`` -> ``a.b``; ``a`` + ``[0]`` -> ``a[0]``."""
    if not rest:
        return prefix
    if not prefix:
        return rest
    if rest.startswith("["):
        return prefix + rest
    return f"{prefix}.{rest}"
