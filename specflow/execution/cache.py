"""A result cache for pure operations, shared by every run under one run root.

An operation marked ``@taskable_operation(pure=True)`` returns a value that depends only on
its arguments and writes nothing, so its task id (a hash of the operation and its
arguments) names its value for good. Values are kept as files named by task id under
``.specflow/cache/`` beside the run root, in the checkpoint's lossless JSON form (decoding
never imports or calls anything), and any later run takes them instead of running the task.
The cache is bounded in size: when it grows past its bound, the least recently used values
are dropped.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

from specflow.execution.values import ValueNotStored, decode, encode
from specflow.flow.task import Task

#: default bound of the cache's size on disk
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
#: after an eviction the cache holds at most this share of its bound
EVICT_TO = 0.8
_ID = re.compile(r"^[0-9a-zA-Z_-]{8,128}$")


class _Missing:
    __slots__ = ()


MISSING: Any = _Missing()


def is_pure(task: Task) -> bool:
    """Whether ``task``'s operation is declared pure."""
    options = getattr(task.fn, "options", None)
    return bool(getattr(options, "pure", False) or getattr(task.fn, "__specflow_pure__", False))


class ResultCache:
    """Values of pure tasks by task id, in ``folder``, at most ``max_bytes`` on disk."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._size: int | None = None
        self.hits = 0
        self.stored = 0

    def _path(self, task_id: str) -> Path | None:
        if not _ID.match(task_id):
            return None
        return self.folder / task_id[:2] / f"{task_id}.json"

    def get(self, task_id: str) -> Any:
        """The cached value of ``task_id``, or ``MISSING``."""
        path = self._path(task_id)
        if path is None:
            return MISSING
        try:
            text = path.read_text()
            value = decode(text)
        except (OSError, ValueError):
            return MISSING
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        self.hits += 1
        return value

    def put(self, task_id: str, value: Any) -> bool:
        """Keep ``value``; False when it is not plain data (then nothing is cached)."""
        path = self._path(task_id)
        if path is None:
            return False
        try:
            data = encode(value).encode()
        except ValueNotStored:
            return False
        if len(data) > self.max_bytes // 4:
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            return False
        self.stored += 1
        if self._size is None:
            self._size = self.size()
        else:
            self._size += len(data)
        if self._size > self.max_bytes:
            self._evict()
        return True

    def _entries(self) -> list[tuple[float, int, Path]]:
        out: list[tuple[float, int, Path]] = []
        if not self.folder.is_dir():
            return out
        for sub in self.folder.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.glob("*.json"):
                with contextlib.suppress(OSError):
                    st = f.stat()
                    out.append((st.st_mtime, st.st_size, f))
        return out

    def size(self) -> int:
        """Bytes the cache holds."""
        return sum(s for _, s, _ in self._entries())

    def _evict(self) -> None:
        entries = sorted(self._entries())
        total = sum(s for _, s, _ in entries)
        goal = int(self.max_bytes * EVICT_TO)
        for _, s, f in entries:
            if total <= goal:
                break
            with contextlib.suppress(OSError):
                f.unlink()
                total -= s
        self._size = total


def clear_cache(folder: str | os.PathLike[str]) -> tuple[int, int]:
    """Remove every cached value under ``folder`` (``specflow clean --cache``); returns how
    many values and bytes were removed."""
    cache = ResultCache(folder)
    n = size = 0
    for _, s, f in cache._entries():
        with contextlib.suppress(OSError):
            f.unlink()
            n += 1
            size += s
    if cache.folder.is_dir():
        for sub in cache.folder.iterdir():
            with contextlib.suppress(OSError):
                sub.rmdir()
    return n, size
