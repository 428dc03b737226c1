"""Tasks: one unit of work shipped to a backend."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TransientErrorCondition:
    """An exception that is worth retrying: its type (by name, anywhere in the MRO) and,
    optionally, a text its message must contain (or a regex if ``regex`` is true)."""

    exception_type: str = "Exception"
    text: str = ""
    regex: bool = False

    def matches(self, exc_types: Sequence[str], message: str) -> bool:
        short = {t.rsplit(".", 1)[-1] for t in exc_types} | set(exc_types)
        if self.exception_type not in short:
            return False
        if not self.text:
            return True
        if self.regex:
            return re.search(self.text, message) is not None
        return self.text in message


@dataclass
class Task:
    """A call ``fn(**kwargs)`` with an identity and execution settings.

    ``id`` is content-addressed (see :mod:`specflow.flow.ids`); two tasks with the same id do
    the same work, so an executor runs only one of them.
    """

    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    id: str
    operation: str
    priority: int = 0
    runtime_limit_sec: float | None = None
    max_attempts: int | None = None
    transient: tuple[TransientErrorCondition, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    def __call__(self) -> Any:
        return self.fn(**self.kwargs)

    def __repr__(self) -> str:
        return f"Task({self.operation}, id={self.id[:12]})"

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.id == self.id
