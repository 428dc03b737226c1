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
TIMEOUT_ENV = "SPECFLOW_CUE_TIMEOUT"
MAX_MB_ENV = "SPECFLOW_CUE_MAX_MB"
DEFAULT_TIMEOUT = 5.0  # seconds of CPU time
DEFAULT_MAX_MB = 500.0  # growth of resident memory


def _budget(value: float | None, env: str, default: float) -> float | None:
    """A budget from the argument, else the environment, else the default; 0 means none."""
    if value is None:
        raw = os.environ.get(env, "").strip()
        if raw:
            try:
                value = float(raw)
            except ValueError:
                raise SpecError(f"{env} must be a number of seconds or MB, not {raw!r}") from None
        else:
            value = default
    if value < 0:
        raise SpecError(f"a CUE evaluation budget cannot be negative ({env}={value:g})")
    return value or None


def _to_spec_error(e: CueError) -> SpecError:
    locs = [Location(p.file, p.line, p.col) for p in e.pos]
    return SpecError(e.msg, path=e.path or None, locations=locs)


MAX_LISTED_ERRORS = 50


def _path_key(path: str | None) -> list[str]:
    """The elements of a field path (``a."b.c".0`` -> a, b.c, 0) for ordering errors."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    escaped = False
    for ch in path or "":
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
                continue
            elif ch == '"':
                quoted = False
                continue
            cur.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur or parts:
        parts.append("".join(cur))
    return parts


# Errors that cue reports without a position of their own: conflicts between values. They
# sort before the others (cue orders errors by position, then by path).
_UNPLACED = ("conflicting values", "errors in empty disjunction", "structural cycle")


def _error_order(e: CueError) -> tuple[int, str, int, int, list[str]]:
    if not e.pos or any(m in e.msg for m in _UNPLACED):
        return (0, "", 0, 0, _path_key(e.path))
    p = e.pos[0]
    return (1, p.file, p.line, p.col, _path_key(e.path))


def _report(errors: list[CueError]) -> SpecError:
    """One SpecError for all the errors of a spec: the first (in the order cue sorts them, by
    field path) leads, the others follow it in the message."""
    unique: list[CueError] = []
    seen: set[tuple[str, str]] = set()
    for e in errors:
        key = (e.path or "", e.msg)
        if key not in seen:
            seen.add(key)
            unique.append(e)
    unique.sort(key=_error_order)
    first = unique[0]
    err = _to_spec_error(first)
    if len(unique) == 1:
        return err
    more = [f"{e.path}: {e.msg}" if e.path else e.msg for e in unique[1:MAX_LISTED_ERRORS]]
    if len(unique) > MAX_LISTED_ERRORS:
        more.append(f"... and {len(unique) - MAX_LISTED_ERRORS} more errors")
    msg = first.msg + f" (and {len(unique) - 1} more errors)\n" + "\n".join(
        "  " + m for m in more
    )
    return SpecError(msg, path=err.path, locations=err.locations)


def loads_cue(
    text: str,
    filename: str = "<string>",
    *,
    timeout: float | None = None,
    max_mb: float | None = None,
) -> Any:
    """Evaluate CUE source text and return its exported value.

    The evaluation stops with a SpecError when it uses more than ``timeout`` seconds of CPU
    time or lets the process grow by more than ``max_mb`` MB (defaults: the environment
    variables SPECFLOW_CUE_TIMEOUT and SPECFLOW_CUE_MAX_MB, else 5 s and 500 MB; 0 turns a
    budget off)."""
    return loads_cue_with_positions(text, filename, timeout=timeout, max_mb=max_mb)[0]


def loads_cue_with_positions(
    text: str,
    filename: str = "<string>",
    *,
    timeout: float | None = None,
    max_mb: float | None = None,
) -> tuple[Any, dict[str, tuple[int, int]]]:
    """Evaluate CUE source text: its exported value, and for every exported value's spec path
    (``target.stages[0].fn``) the line and column of the field that wrote it."""
    from specflow.spec.cue.builtins import PACKAGES, ensure_init
    from specflow.spec.cue.evaluator import BudgetExceeded, Evaluator
    from specflow.spec.cue.export import export_checked, to_json
    from specflow.spec.cue.parser import parse
    from specflow.spec.cue.vertex import Vertex

    old_limit = sys.getrecursionlimit()
    if old_limit < 6000:
        sys.setrecursionlimit(6000)
    # The evaluation builds a large graph of short-lived objects; cyclic garbage collection
    # passes over it while it is alive only cost time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    tlimit = _budget(timeout, TIMEOUT_ENV, DEFAULT_TIMEOUT)
    mlimit = _budget(max_mb, MAX_MB_ENV, DEFAULT_MAX_MB)
    ev = Evaluator(PACKAGES, tlimit, mlimit)
    try:
        ensure_init()
        f = parse(text, filename)
        root = Vertex(None, None)
        root.conjuncts.append((f.root, None, ()))
        # as cue does: first every conflict anywhere (definitions included), then the fields
        # whose values are not concrete
        found: dict[str, Any] = {}
        value, conflicts, incompletes = export_checked(ev, root, found)
        if conflicts or incompletes:
            raise _report(conflicts or incompletes)
        positions = {k: (p.line, p.col) for k, p in found.items() if p.file == filename}
        return to_json(value), positions
    except CueError as e:
        raise _to_spec_error(e) from None
    except BudgetExceeded as e:
        env = TIMEOUT_ENV if e.setting == "timeout" else MAX_MB_ENV
        raise SpecError(
            f"{e.what} {e.limit}: the configuration is too large or does not terminate",
            locations=[Location(filename)],
            hint=f"raise the budget with {env} (or the {e.setting} parameter)",
        ) from None
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


def load_cue(
    path: str | os.PathLike[str],
    *,
    timeout: float | None = None,
    max_mb: float | None = None,
) -> Any:
    """Evaluate a CUE file and return its exported value (budgets as for ``loads_cue``)."""
    return load_cue_with_positions(path, timeout=timeout, max_mb=max_mb)[0]


def load_cue_with_positions(
    path: str | os.PathLike[str],
    *,
    timeout: float | None = None,
    max_mb: float | None = None,
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
    return loads_cue_with_positions(text, filename, timeout=timeout, max_mb=max_mb)


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
