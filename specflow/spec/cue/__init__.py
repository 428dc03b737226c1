"""specflow's built-in CUE evaluator.

``load_cue(path)`` and ``loads_cue(text)`` evaluate a CUE file the way ``cue export --out json``
does and return the JSON-like value. Any problem with the spec is raised as
:class:`specflow.spec.errors.SpecError` whose message starts with the offending field path.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from specflow.spec.cue.errors import CueError
from specflow.spec.errors import Location, SpecError

__all__ = ["load_cue", "load_cue_with_positions", "loads_cue", "loads_cue_with_positions"]

BINARY_ENV = "SPECFLOW_CUE_BINARY"


def _to_spec_error(e: CueError) -> SpecError:
    locs = [Location(p.file, p.line, p.col) for p in e.pos]
    return SpecError(e.msg, path=e.path or None, locations=locs)


def loads_cue(text: str, filename: str = "<string>") -> Any:
    """Evaluate CUE source text and return its exported value."""
    return loads_cue_with_positions(text, filename)[0]


def loads_cue_with_positions(
    text: str, filename: str = "<string>"
) -> tuple[Any, dict[str, tuple[int, int]]]:
    """Evaluate CUE source text: its exported value, and for every exported value's spec path
    (``target.stages[0].fn``) the line and column of the field that wrote it."""
    from specflow.spec.cue.builtins import PACKAGES, ensure_init
    from specflow.spec.cue.evaluator import Evaluator
    from specflow.spec.cue.export import export_value, to_json
    from specflow.spec.cue.parser import parse
    from specflow.spec.cue.vertex import Vertex

    old_limit = sys.getrecursionlimit()
    if old_limit < 6000:
        sys.setrecursionlimit(6000)
    # The evaluation builds a large graph of short-lived objects; cyclic garbage collection
    # passes over it while it is alive only cost time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    ev = Evaluator(PACKAGES)
    try:
        ensure_init()
        f = parse(text, filename)
        root = Vertex(None, None)
        root.conjuncts.append((f.root, None, ()))
        found: dict[str, Any] = {}
        value = export_value(ev, root, found)
        ev.validate(root)
        positions = {k: (p.line, p.col) for k, p in found.items() if p.file == filename}
        return to_json(value), positions
    except CueError as e:
        raise _to_spec_error(e) from None
    except RecursionError:
        raise SpecError(
            "value nested too deeply or structural cycle", locations=[Location(filename)]
        ) from None
    except SpecError:
        raise
    except Exception as e:  # noqa: BLE001 - last resort: nothing else may escape
        raise SpecError(
            f"internal error while evaluating CUE: {type(e).__name__}: {e}",
            locations=[Location(filename)],
        ) from e
    finally:
        ev.release()
        if gc_was_enabled:
            gc.enable()
        if old_limit < 6000:
            sys.setrecursionlimit(old_limit)


def load_cue(path: str | os.PathLike[str]) -> Any:
    """Evaluate a CUE file and return its exported value."""
    return load_cue_with_positions(path)[0]


def load_cue_with_positions(
    path: str | os.PathLike[str],
) -> tuple[Any, dict[str, tuple[int, int]]]:
    """Evaluate a CUE file: its value and the positions of its values (none when the
    ``cue`` binary evaluates it)."""
    try:
        filename = os.fsdecode(path)
    except TypeError as e:
        raise SpecError(f"invalid spec path {path!r}: {e}") from None
    binary = os.environ.get(BINARY_ENV)
    if binary:
        return _load_with_binary(binary, filename), {}
    try:
        with open(filename, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read CUE file: {e}", locations=[Location(filename)]) from None
    return loads_cue_with_positions(text, filename)


def _load_with_binary(binary: str, filename: str) -> Any:
    exe = shutil.which(binary) or binary
    try:
        proc = subprocess.run(
            [exe, "export", "--out", "json", filename],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise SpecError(f"cannot run {binary}: {e}", locations=[Location(filename)]) from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        head = lines[0] if lines else f"cue exited with status {proc.returncode}"
        path, sep, msg = head.partition(": ")
        if sep and " " not in path:
            raise SpecError(msg.rstrip(":"), path=path, locations=_locs(lines[1:]))
        raise SpecError(head.rstrip(":"), locations=_locs(lines[1:]))
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        raise SpecError(f"cue printed invalid JSON: {e}", locations=[Location(filename)]) from None


def _locs(lines: list[str]) -> list[Location]:
    out: list[Location] = []
    for ln in lines:
        parts = ln.strip().rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append(Location(parts[0], int(parts[1]), int(parts[2])))
    return out
