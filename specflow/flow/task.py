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


REQUIREMENT_KEYS = ("cpus", "mem_gb", "gpus", "platform", "tags", "timeout_seconds",
                    "max_retries")


@dataclass(frozen=True)
class Requirements:
    """What a task needs of the worker that runs it, and how long and how often it may run.

    ``cpus``, ``mem_gb`` and ``gpus`` are amounts; ``platform`` is an OS name as Python's
    ``sys.platform`` gives it (``linux``, ``darwin``, ``win32``); ``tags`` are labels a worker
    must carry (SLURM: node features). ``timeout_seconds`` and ``max_retries`` override the
    run's runtime limit and attempts for the task.
    """

    cpus: float | None = None
    mem_gb: float | None = None
    gpus: int | None = None
    platform: str | None = None
    tags: tuple[str, ...] = ()
    timeout_seconds: float | None = None
    max_retries: int | None = None

    @classmethod
    def of(cls, raw: Any) -> Requirements:
        """From a mapping (a spec's ``@requirements``); raises ``ValueError`` naming the
        first bad entry."""
        if isinstance(raw, Requirements):
            return raw
        if not isinstance(raw, dict):
            raise ValueError(f"requirements must be a mapping such as {{cpus: 2, mem_gb: 4}}, "
                             f"got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(REQUIREMENT_KEYS))
        if unknown:
            raise ValueError(f"unknown requirement(s) {', '.join(map(repr, unknown))}; "
                             f"expected {', '.join(REQUIREMENT_KEYS)}")
        values: dict[str, Any] = {}
        for key in ("cpus", "mem_gb", "timeout_seconds"):
            v = raw.get(key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{key} must be a number > 0, got {v!r}")
            values[key] = float(v)
        for key in ("gpus", "max_retries"):
            v = raw.get(key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{key} must be a whole number >= 0, got {v!r}")
            values[key] = v
        plat = raw.get("platform")
        if plat is not None:
            if not isinstance(plat, str) or not plat:
                raise ValueError(f"platform must be a name such as 'linux', got {plat!r}")
            values["platform"] = plat.lower()
        tags = raw.get("tags")
        if tags is not None:
            if isinstance(tags, str):
                tags = [tags]
            if not isinstance(tags, (list, tuple)) or not all(
                    isinstance(t, str) and t for t in tags):
                raise ValueError(f"tags must be a list of names, got {tags!r}")
            values["tags"] = tuple(sorted(set(tags)))
        return cls(**values)

    def record(self) -> dict[str, Any]:
        """The entries that are set, as a plain mapping."""
        out: dict[str, Any] = {}
        for key in REQUIREMENT_KEYS:
            v = getattr(self, key)
            if v is not None and v != ():
                out[key] = list(v) if key == "tags" else v
        return out

    def text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.record().items())


def with_requirements(task: Task, requirements: Requirements | None,
                      worker_type: str | None, *, override: bool = False) -> Task:
    """A copy of ``task`` with these requirements and worker type (its own, where it has
    them, win; with ``override``, these win where given); its runtime limit and attempts
    follow ``timeout_seconds`` and ``max_retries``. Same id: requirements say where and how
    work runs, not what it is."""
    if override:
        req = requirements or task.requirements
        wtype = worker_type or task.worker_type
    else:
        req = task.requirements or requirements
        wtype = task.worker_type or worker_type
    if req is task.requirements and wtype == task.worker_type:
        return task
    copy: Task = object.__new__(Task)
    copy.__dict__.update(task.__dict__)
    copy.requirements = req
    copy.worker_type = wtype
    if req is not None:
        if req.timeout_seconds is not None:
            copy.runtime_limit_sec = req.timeout_seconds
        if req.max_retries is not None:
            copy.max_attempts = req.max_retries + 1
    return copy


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
    #: what the worker that runs it must have (see :class:`Requirements`)
    requirements: Requirements | None = None
    #: the kind of worker that runs it (SLURM: a ``worker_types`` entry or a partition)
    worker_type: str | None = None

    def __call__(self) -> Any:
        return self.fn(**self.kwargs)

    def __repr__(self) -> str:
        return f"Task({self.operation}, id={self.id[:12]})"

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.id == self.id
