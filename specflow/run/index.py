"""The index of runs made outside the run root (``--run-dir``), so that ``specflow runs
--all`` and ``specflow clean --all`` find them: one JSON line per run in
``<run root>/index.jsonl``."""

from __future__ import annotations

import json
import os
from pathlib import Path

INDEX_NAME = "index.jsonl"


def remember(root: Path, run_dir: Path) -> None:
    """Note ``run_dir`` in the index of ``root`` (runs under ``root`` need no note)."""
    run_dir = run_dir.absolute()
    try:
        run_dir.relative_to(root)
        return
    except ValueError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"run_dir": str(run_dir)}) + "\n"
    fd = os.open(root / INDEX_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def indexed(root: Path) -> list[Path]:
    """The run dirs noted in the index that still hold a checkpoint (each once)."""
    try:
        text = (root / INDEX_NAME).read_text()
    except OSError:
        return []
    seen: dict[str, None] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        p = entry.get("run_dir") if isinstance(entry, dict) else None
        if isinstance(p, str) and (Path(p) / "checkpoint.db").is_file():
            seen[p] = None
    return [Path(p) for p in seen]


def forget(root: Path, run_dirs: set[Path]) -> None:
    """Drop removed runs from the index."""
    keep = [p for p in indexed(root) if p not in run_dirs]
    path = root / INDEX_NAME
    if not path.exists():
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps({"run_dir": str(p)}) + "\n" for p in keep))
    os.replace(tmp, path)
