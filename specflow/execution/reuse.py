"""Reuse of finished work across runs (``specflow run SPEC --reuse EARLIER``).

A task whose id is recorded done in an earlier run's checkpoint did the same work (ids are
content-addressed), so the executor may record it as ``reused`` instead of running it, and
hand flows the value the earlier run stored. The executor consults :meth:`ReuseSource.lookup`
only for flows that have not passed a barrier on work executed in this run: below such a
barrier the inputs may have changed under the same paths, and everything runs again.

An operation declares which of its arguments are outputs (``outputs=("dst",)``); a reused
task's outputs must still exist, or reuse is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specflow.execution.rows import CheckpointError
from specflow.flow.task import Task

if TYPE_CHECKING:
    from specflow.execution.checkpoint import Checkpoint


class ReuseRefused(CheckpointError):
    """A task would be reused, but what it wrote is gone."""


class _Missing:
    __slots__ = ()


MISSING: Any = _Missing()


def output_paths(task: Task) -> list[str]:
    """The paths of the outputs ``task``'s operation declares (layers or plain paths)."""
    options = getattr(task.fn, "options", None)
    names: Iterable[str] = getattr(options, "outputs", None) or getattr(
        task.fn, "__specflow_outputs__", None) or ()
    out = []
    for name in names:
        value = task.kwargs.get(name)
        if value is None:
            continue
        path = getattr(value, "path", value)
        if isinstance(path, (str, os.PathLike)):
            out.append(os.fspath(path))
    return out


def _exists(path: str) -> bool | None:
    """Whether a local path exists; ``None`` for remote URLs (not checked)."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif "://" in path:
        return None
    return Path(os.path.expanduser(path)).exists()


class ReuseSource:
    """The done tasks of earlier runs, by id."""

    def __init__(self, checkpoints: Iterable[str | os.PathLike[str]]) -> None:
        self._ckpts: list[Checkpoint] = []
        self._values: dict[str, tuple[Checkpoint, str]] = {}
        self._ids: set[str] = set()
        self.paths: list[Path] = []
        try:
            for p in checkpoints:
                path = Path(p)
                if path.is_dir():
                    path = path / "checkpoint.db"
                if not path.is_file():
                    raise CheckpointError(f"--reuse {p}: no checkpoint there (give a run dir "
                                          "or its checkpoint.db)")
                from specflow.execution.checkpoint import Checkpoint

                ck = Checkpoint(path)
                self._ckpts.append(ck)
                self.paths.append(path)
                ids, values = ck.done()
                self._ids |= ids
                for tid, raw in values.items():
                    self._values.setdefault(tid, (ck, raw))
        except BaseException:
            self.close()
            raise

    def close_and_path(self) -> Path:
        """The absolute checkpoint path of a one-run source, closing it (to record it)."""
        self.close()
        return self.paths[0].absolute()

    def __len__(self) -> int:
        return len(self._ids)

    def lookup(self, task: Task) -> Any:
        """``MISSING`` when ``task`` was not done earlier; else its value (``None`` when it
        stored none). Raises :class:`ReuseRefused` when one of its outputs is gone."""
        if task.id not in self._ids:
            return MISSING
        for path in output_paths(task):
            if _exists(path) is False:
                raise ReuseRefused(
                    f"cannot reuse {task.operation} {task.id[:12]} from "
                    f"{', '.join(map(str, self.paths))}: its output {path.rstrip('/')} no longer "
                    "exists "
                    "(run without --reuse, or restore it)"
                )
        stored = self._values.get(task.id)
        if stored is None:
            return None
        ck, raw = stored
        return ck.value_of(raw)

    def earlier_value(self, task_id: str) -> Any:
        """The value an earlier run recorded for ``task_id`` (``None`` if none): what a dry
        run hands flows for a task that would run again."""
        stored = self._values.get(task_id)
        if stored is None:
            return None
        try:
            return stored[0].value_of(stored[1])
        except Exception:  # noqa: BLE001 - a dry run's stand-in value only
            return None

    def close(self) -> None:
        for ck in self._ckpts:
            ck.close()
        self._ckpts = []

    def specs(self) -> list[tuple[Path, Any]]:
        """Each earlier run's resolved spec (for ``--explain``)."""
        return [(p, ck.run_info().spec) for p, ck in zip(self.paths, self._ckpts, strict=True)]


def spec_differences(old: Any, new: Any, path: str = "") -> list[str]:
    """The spec paths at which ``new`` differs from ``old`` (added, removed or changed)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(f"{sub} (added)")
            elif k not in new:
                out.append(f"{sub} (removed)")
            else:
                out.extend(spec_differences(old[k], new[k], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out.extend(spec_differences(a, b, f"{path}[{i}]"))
        return out
    if old != new or type(old) is not type(new):
        return [f"{path or '(the whole spec)'}: {_short(old)} -> {_short(new)}"]
    return []


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
