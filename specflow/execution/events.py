"""Lifecycle events that code can subscribe to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EVENT_KINDS = (
    "run_started",
    "run_finished",
    "task_started",
    "task_succeeded",
    "task_failed",
    "task_retried",
    "task_skipped",
)


@dataclass
class Event:
    kind: str
    task_id: str | None = None
    operation: str | None = None
    attempt: int = 0
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Event], None]


class EventBus:
    """Delivers events to listeners; a listener that raises is reported once and dropped,
    never allowed to break the run."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self.broken: list[str] = []

    def subscribe(self, listener: Listener, kinds: tuple[str, ...] | None = None) -> None:
        for kind in kinds or EVENT_KINDS:
            if kind not in EVENT_KINDS:
                raise ValueError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
            self._listeners.setdefault(kind, []).append(listener)

    def wants(self, kind: str) -> bool:
        return bool(self._listeners.get(kind))

    def emit(self, event: Event) -> None:
        for listener in list(self._listeners.get(event.kind, ())):
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - a listener must not break a run
                self.broken.append(f"{listener!r}: {type(exc).__name__}: {exc}")
                for lst in self._listeners.values():
                    if listener in lst:
                        lst.remove(listener)


class EventLog:
    """A listener that appends each event as one JSON line to a file (``--events-log``),
    flushed per event so that a reader (``specflow serve``) can follow the run."""

    def __init__(self, path: str) -> None:
        import io

        self._fh: io.TextIOWrapper = open(path, "a", buffering=1)  # noqa: SIM115

    def __call__(self, event: Event) -> None:
        import json
        import time

        data = {k: v for k, v in event.data.items() if k != "value"}
        line = json.dumps({"kind": event.kind, "time": time.time(), "task_id": event.task_id,
                           "operation": event.operation, "attempt": event.attempt,
                           "error": (event.error or "")[:2000] or None, "data": data},
                          default=str)
        self._fh.write(line + "\n")

    def close(self) -> None:
        self._fh.close()
