"""Check a spec against the registry without building anything: unknown types, missing,
unexpected and mistyped arguments, all reported at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from specflow.builder.build import (
    META_KEYS,
    MODES,
    UNBUILT,
    _check_arguments,
    _key,
    _no_cycles,
)
from specflow.builder.registry import DEFAULT_VERSION, lookup
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
    if source is None:
        return problems
    return [
        SpecError(p.message, path=p.path, locations=p.locations or [source.locate(p.path)],
                  hint=p.hint)
        for p in problems
    ]


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
    name = spec["@type"]
    if not isinstance(name, str):
        problems.append(SpecError(f"@type must be a string, got {name!r}",
                                  path=join_path(path, "@type")))
        return
    mode = spec.get("@mode", "regular")
    if mode not in MODES:
        problems.append(SpecError(f"unknown @mode {mode!r}; expected one of {', '.join(MODES)}",
                                  path=join_path(path, "@mode")))
    try:
        entry = lookup(name, version, path=join_path(path, "@type"))
        kwargs = {k: _placeholder(v) for k, v in spec.items() if k not in META_KEYS}
        _check_arguments(entry, kwargs, path, partial=(mode == "partial"))
    except SpecError as exc:
        problems.append(exc)


def _placeholder(v: Any) -> Any:
    """A value as the constructor would see it: typed nodes are not built here."""
    if isinstance(v, Mapping) and "@type" in v:
        return UNBUILT
    if isinstance(v, list):
        return [_placeholder(x) for x in v]
    return v
