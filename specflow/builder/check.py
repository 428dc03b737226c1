"""Check a spec against the registry without building anything: unknown types, missing,
unexpected and mistyped arguments, all reported at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from specflow.builder.build import (
    META_KEYS,
    UNBUILT,
    _key,
    _no_cycles,
    argument_problems,
    locate,
    node_entry,
    node_mode,
    placement_problems,
)
from specflow.builder.registry import DEFAULT_VERSION, check_opt_in
from specflow.spec.errors import SpecError, join_path
from specflow.spec.source import SourceMap


def check_spec(
    spec: Any,
    source: SourceMap | None = None,
    *,
    opt_ins: frozenset[str] | set[str] | tuple[str, ...] | None = None,
) -> list[SpecError]:
    """Every problem the registry can see in ``spec``, each with its path and position.
    With ``opt_ins``, a type that needs an opt-in not among them is a problem too."""
    problems: list[SpecError] = []
    granted = None if opt_ins is None else frozenset(opt_ins)
    try:
        _no_cycles(spec, "", [])
    except SpecError as exc:
        problems.append(exc)
    else:
        _walk(spec, "", DEFAULT_VERSION, problems, granted)
    return [locate(p, source) for p in problems]


def _walk(
    spec: Any, path: str, version: str, problems: list[SpecError],
    opt_ins: frozenset[str] | None,
) -> None:
    if isinstance(spec, list):
        for i, v in enumerate(spec):
            _walk(v, f"{path}[{i}]", version, problems, opt_ins)
        return
    if not isinstance(spec, Mapping):
        return
    if "@version" in spec:
        version = str(spec["@version"])
    for k, v in spec.items():
        if k not in META_KEYS:
            _walk(v, join_path(path, _key(k)), version, problems, opt_ins)
    if "@type" not in spec:
        return
    mode = "regular"
    try:
        mode = node_mode(spec, path)
    except SpecError as exc:
        problems.append(exc)
    try:
        entry = node_entry(spec, path, version)
        if opt_ins is not None:
            check_opt_in(entry, opt_ins, path=join_path(path, "@type"), node=spec)
        problems.extend(placement_problems(spec, path))
        kwargs = {k: _placeholder(v) for k, v in spec.items() if k not in META_KEYS}
        problems.extend(argument_problems(entry, kwargs, path, partial=(mode == "partial")))
    except SpecError as exc:
        problems.append(exc)
        return
    if mode != "partial":
        problems.extend(_own_checks(entry.fn, entry.name, spec, path, version))


def _own_checks(fn: Any, name: str, spec: Mapping[str, Any], path: str,
                version: str) -> list[SpecError]:
    """The problems a constructor's own check finds without building the node: its
    ``__specflow_check__`` takes the node's arguments (typed children unbuilt) and the spec
    version in effect, and returns errors that may name the offending ``params``."""
    check = getattr(fn, "__specflow_check__", None)
    if check is None:
        return []
    out = []
    for err in check({k: v for k, v in spec.items() if k not in META_KEYS}, version):
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
