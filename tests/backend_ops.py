"""Operations that misbehave on purpose, for the backend tests (``-i`` in CLI tests).

Tasks that must block wait for a *gate* file to appear; tasks announce that they started by
creating a *started* file. Tests wait on those files, never on a guessed duration.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import specflow
from specflow import resources


def _wait_for(gate: str) -> None:
    while not os.path.exists(gate):
        time.sleep(0.01)


@specflow.register("bt.gated")
@specflow.taskable_operation
def gated(started: str, gate: str, resource: str = "") -> str:
    """Announce the start, then block until ``gate`` exists (holding ``resource``)."""
    if resource:
        with resources.semaphore(resource):
            Path(started).touch()
            _wait_for(gate)
    else:
        Path(started).touch()
        _wait_for(gate)
    return started


@specflow.register("bt.gated_many")
@specflow.flow_schema
def gated_many(folder: str, gate: str, n: int, resource: str = "") -> Generator[Any, Any, None]:
    yield [gated.make_task(started=f"{folder}/started-{i}", gate=gate, resource=resource)
           for i in range(n)]


@specflow.register("bt.square")
@specflow.taskable_operation
def square(x: int) -> int:
    return x * x


@specflow.register("bt.exit")
@specflow.taskable_operation
def exit_with(code: int) -> None:
    sys.exit(code)


@specflow.register("bt.interrupt")
@specflow.taskable_operation
def interrupt() -> None:
    raise KeyboardInterrupt


@specflow.register("bt.kill_self")
@specflow.taskable_operation
def kill_self(started: str = "", gate: str = "") -> None:
    """SIGKILL the process running this task (after ``gate`` exists, when given)."""
    if started:
        Path(started).touch()
    if gate:
        _wait_for(gate)
    os.kill(os.getpid(), signal.SIGKILL)


@specflow.register("bt.lock")
@specflow.taskable_operation
def lock() -> Any:
    """Returns a value that cannot be pickled."""
    return threading.Lock()


@specflow.register("bt.huge_error")
@specflow.taskable_operation
def huge_error(size: int) -> None:
    raise ValueError("x" * size)


@specflow.register("bt.stubborn")
@specflow.taskable_operation
def stubborn(started: str, gate: str) -> None:
    """Ignores SIGALRM and blocks until ``gate`` exists."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    Path(started).touch()
    _wait_for(gate)


@specflow.register("bt.chatty")
@specflow.taskable_operation
def chatty(word: str) -> str:
    """Prints through Python, through fd 1 and 2 directly, and from a subprocess."""
    print(f"print {word}")
    sys.stdout.flush()
    print(f"stderr {word}", file=sys.stderr)
    os.write(1, f"fd1 {word}\n".encode())
    subprocess.run([sys.executable, "-c", f"print('child {word}')"], check=True)
    return word


@specflow.register("bt.bounded")
@specflow.taskable_operation
def bounded_resources() -> dict[str, int]:
    """The semaphores installed where the task runs."""
    return resources.installed()


@specflow.register("bt.die_holding")
@specflow.taskable_operation
def die_holding(resource: str) -> None:
    """SIGKILL the process running this task while it holds a unit of ``resource``."""
    with resources.semaphore(resource):
        os.kill(os.getpid(), signal.SIGKILL)


@specflow.register("bt.hold")
@specflow.taskable_operation
def hold(resource: str, x: int) -> int:
    with resources.semaphore(resource):
        return x
