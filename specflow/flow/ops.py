"""Built-in operations for trying things out and for tests: ``echo``, ``sleep``,
``system_info``, ``noop`` and ``shell`` (a type that needs the ``shell`` opt-in: refused unless
the run is started with ``--allow-shell``)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from typing import Any

from specflow.builder.registry import register
from specflow.flow.core import Flow, TaskableOperation
from specflow.flow.ids import task_id
from specflow.flow.task import Task


def _echo_fn(message: Any) -> Any:
    print(message, flush=True)
    return message


def _sleep_fn(seconds: float, label: Any = None) -> float:
    time.sleep(seconds)
    return seconds


def _noop_fn(i: int = 0) -> None:
    return None


def _system_info_fn() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pid": os.getpid(),
    }


def _shell_fn(command: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None,
           check: bool = True) -> dict[str, Any]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        command, shell=isinstance(command, str), cwd=cwd, env=full_env,
        capture_output=True, text=True,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"command exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    return {"returncode": proc.returncode, "stdout": proc.stdout[-2000:]}


def _echo_dry(message: Any) -> Any:
    return message  # what echo returns, without printing


def _sleep_dry(seconds: float, label: Any = None) -> float:
    return seconds


_echo = TaskableOperation(_echo_fn, operation_name="echo", dry_run=_echo_dry)
_sleep = TaskableOperation(_sleep_fn, operation_name="sleep", dry_run=_sleep_dry)
_noop = TaskableOperation(_noop_fn, operation_name="noop", pure=True)
_system_info = TaskableOperation(_system_info_fn, operation_name="system_info")
_shell = TaskableOperation(_shell_fn, operation_name="shell")


@register("echo")
def echo(message: Any) -> Task:
    """A task that prints ``message`` and returns it."""
    return _echo.make_task(message=message)


@register("sleep")
def sleep(seconds: float, label: Any = None) -> Task:
    """A task that sleeps ``seconds``; ``label`` makes otherwise identical sleeps distinct."""
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    return _sleep.make_task(seconds=seconds, label=label)


@register("noop")
def noop(i: int = 0) -> Task:
    """A task that does nothing (``i`` tells copies apart)."""
    return _noop.make_task(i=i)


@register("system_info")
def system_info() -> Task:
    """A task that returns the host, Python version and CPU count of where it ran."""
    return _system_info.make_task()


@register("shell", opt_in="shell")
@register("command", opt_in="shell")
def shell(command: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None,
          check: bool = True) -> Task:
    """A task that runs a shell command (only with ``--allow-shell``); ``command`` is the
    same type under the name cluster task frameworks use."""
    return _shell.make_task(command=command, cwd=cwd, env=env or {}, check=check)


def _copy(task: Task, i: int) -> Task:
    # every field of the task but its id and tags (quicker than dataclasses.replace, which
    # matters for a million copies)
    copy: Task = object.__new__(Task)
    copy.__dict__.update(task.__dict__)
    copy.id = task_id(task.operation, ["copy", task.id, i], {})
    copy.tags = {**task.tags, "copy": str(i)}
    return copy


def _copies(task: Task, count: int) -> Generator[Any, Any, None]:
    for start in range(0, count, _REPEAT_BATCH):
        yield [_copy(task, i) for i in range(start, min(count, start + _REPEAT_BATCH))]


_REPEAT_BATCH = 256


class RepeatFlow(Flow):
    """The copies of one task, made as they are taken (never all at once): a flow, and a
    sequence of its tasks for Python callers."""

    __slots__ = ("task", "count")

    def __init__(self, task: Task, count: int) -> None:
        super().__init__(_copies, (task, count), name="repeat")
        self.task = task
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Task]:
        return (_copy(self.task, i) for i in range(self.count))


@register("specflow.repeat")
@register("repeat_task")
def repeat(task: Task, count: int) -> RepeatFlow:
    """``count`` copies of ``task`` (``repeat`` is zetta's array repeat); each copy's id is
    derived from the task's id and the
    copy's number, so the copies are distinct work that a resumed run still recognises."""
    if not isinstance(count, int) or isinstance(count, bool):
        raise ValueError(f"count must be an integer, got {count!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not isinstance(task, Task):
        raise ValueError(f"task must be a task (an operation's spec), got {type(task).__name__}")
    return RepeatFlow(task, count)
