"""Check a spec against the registry without building anything: unknown types, missing,
unexpected and mistyped arguments, all reported at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from specflow.builder.build import (
    META_KEYS,
    UNBUILT,
    _check_arguments,
    _key,
    _no_cycles,
    locate,
    node_entry,
    node_mode,
)
from specflow.builder.registry import DEFAULT_VERSION
from specflow.spec.errors import SpecError, join_path
from specflow.spec.source import SourceMap


def check_spec(spec: Any, source: SourceMap | None = None) -> list[SpecError]:
    """Every problem the registry can see in ``spec``, each with its path and position."""
    problems: list[SpecError] = []
    try:
        _no_cycles(spec, "", [])
    except SpecError as exc:
        problems.append(exc)
    else:
        _walk(spec, "", DEFAULT_VERSION, problems)
    return [locate(p, source) for p in problems]


def _walk(spec: Any, path: str, version: str, problems: list[SpecError]) -> None:
    if isinstance(spec, list):
        for i, v in enumerate(spec):
            _walk(v, f"{path}[{i}]", version, problems)
        return
    if not isinstance(spec, Mapping):
        return
    if "@version" in spec:
        version = str(spec["@version"])
    for k, v in spec.items():
        if k not in META_KEYS:
            _walk(v, join_path(path, _key(k)), version, problems)
    if "@type" not in spec:
        return
    mode = "regular"
    try:
        mode = node_mode(spec, path)
    except SpecError as exc:
        problems.append(exc)
    try:
        entry = node_entry(spec, path, version)
        kwargs = {k: _placeholder(v) for k, v in spec.items() if k not in META_KEYS}
        _check_arguments(entry, kwargs, path, partial=(mode == "partial"))
    except SpecError as exc:
        problems.append(exc)
        return
    if mode != "partial":
        problems.extend(_own_checks(entry.fn, entry.name, spec, path))


def _own_checks(fn: Any, name: str, spec: Mapping[str, Any], path: str) -> list[SpecError]:
    """The problems a constructor's own check (its ``__specflow_check__``: the node's
    arguments, typed children unbuilt, to a list of errors that may name the offending
    ``params``) finds without building anything."""
    check = getattr(fn, "__specflow_check__", None)
    if check is None:
        return []
    out = []
    for err in check({k: v for k, v in spec.items() if k not in META_KEYS}):
        params = [p for p in getattr(err, "params", ()) if p in spec]
        where = join_path(path, _key(params[0])) if params else path
        out.append(SpecError(f"{name}: {err}", path=where or None))
    return out


def _placeholder(v: Any) -> Any:
    """A value as the constructor would see it: typed nodes are not built here."""
    if isinstance(v, Mapping) and "@type" in v:
        return UNBUILT
    if isinstance(v, list):
        return [_placeholder(x) for x in v]
    return v
