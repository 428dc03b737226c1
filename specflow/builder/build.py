"""Build a spec: every ``{"@type": ...}`` node becomes the result of its registered
constructor, children first. Plain dicts and lists stay plain."""

from __future__ import annotations

import copy
import functools
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from specflow.builder.provenance import set_spec
from specflow.builder.registry import DEFAULT_VERSION, Entry, check_opt_in, lookup
from specflow.spec.errors import SpecError, join_path
from specflow.spec.source import SourceMap

META_KEYS = ("@type", "@mode", "@version", "@requirements", "@worker_type")
#: keys any typed node may carry to say where the work it makes runs
PLACEMENT_KEYS = ("@requirements", "@worker_type")


class _Unbuilt:
    """Stands for a typed node that a check does not build: it fits any annotation."""

    def __repr__(self) -> str:
        return "<built value>"


UNBUILT = _Unbuilt()
MODES = ("regular", "partial")


class BuildError(SpecError):
    """A constructor refused its arguments or raised while building."""


def build(
    spec: Any,
    *,
    source: SourceMap | None = None,
    path: str = "",
    opt_ins: frozenset[str] | set[str] | tuple[str, ...] = frozenset(),
) -> Any:
    """Build ``spec`` and return the result.

    ``source`` (from :func:`specflow.spec.load_spec_with_source`) lets errors name the file
    and line of the offending node; ``path`` is the spec path of ``spec`` itself. A node whose
    type was registered with an ``opt_in`` (``"eval"``, ``"shell"``) is refused unless that
    opt-in is in ``opt_ins``.
    """
    _no_cycles(spec, path, [])
    try:
        return _build(spec, path, DEFAULT_VERSION, frozenset(opt_ins))
    except SpecError as exc:
        located = locate(exc, source)
        if located is exc:
            raise
        raise located from exc.__cause__


def locate(exc: SpecError, source: SourceMap | None) -> SpecError:
    """``exc`` with the source position of its path, when it has none yet."""
    if source is None or exc.locations:
        return exc
    located = type(exc)(exc.message, path=exc.path, locations=[source.locate(exc.path)],
                        hint=exc.hint)
    for key, value in vars(exc).items():  # what a subclass adds (e.g. the type it names)
        if key not in ("message", "path", "locations", "hint"):
            setattr(located, key, value)
    return located


def node_mode(spec: Mapping[str, Any], path: str) -> str:
    """The ``@mode`` of a typed node."""
    mode = spec.get("@mode", "regular")
    if mode not in MODES:
        raise SpecError(
            f"unknown @mode {mode!r}; expected one of {', '.join(MODES)}",
            path=join_path(path, "@mode"),
        )
    return str(mode)


def node_entry(spec: Mapping[str, Any], path: str, version: str) -> Entry:
    """The registry entry a typed node names."""
    type_name = spec["@type"]
    type_path = join_path(path, "@type")
    if not isinstance(type_name, str):
        raise SpecError(f"@type must be a string, got {type_name!r}", path=type_path)
    return lookup(type_name, version, path=type_path)


def _build(spec: Any, path: str, version: str, opt_ins: frozenset[str]) -> Any:
    if isinstance(spec, list):
        return [_build(v, f"{path}[{i}]", version, opt_ins) for i, v in enumerate(spec)]
    if isinstance(spec, tuple):
        return tuple(_build(v, f"{path}[{i}]", version, opt_ins) for i, v in enumerate(spec))
    if not isinstance(spec, Mapping):
        return spec
    if "@version" in spec:
        version = str(spec["@version"])
    if "@type" not in spec:
        return {k: _build(v, join_path(path, _key(k)), version, opt_ins)
                for k, v in spec.items() if k != "@version" or path}
    mode = node_mode(spec, path)
    entry = node_entry(spec, path, version)
    check_opt_in(entry, opt_ins, path=join_path(path, "@type"), node=spec)
    kwargs = {
        k: _build(v, join_path(path, _key(k)), version, opt_ins)
        for k, v in spec.items()
        if k not in META_KEYS
    }
    _check_arguments(entry, kwargs, path, partial=(mode == "partial"))
    resolved_spec = _with_version(spec, version)
    make_task = None if inspect.isclass(entry.fn) else getattr(entry.fn, "make_task", None)
    if mode == "partial":
        result: Any = functools.partial(entry.fn, **kwargs)
    else:
        try:
            # a registered operation in a spec is a task to run, not a call at build time
            result = make_task(**kwargs) if make_task is not None else entry.fn(**kwargs)
        except SpecError as exc:
            raise exc.with_path_prefix(path) from exc
        except Exception as exc:  # a constructor refusing its input is a spec problem
            raise BuildError(
                f"{entry.name}: {type(exc).__name__}: {exc}", path=path or None
            ) from exc
    if any(k in spec for k in PLACEMENT_KEYS):
        result = _placed(result, spec, path)
    set_spec(result, resolved_spec)
    return result


def placement_problems(spec: Mapping[str, Any], path: str) -> list[SpecError]:
    """What is wrong with a typed node's ``@requirements`` and ``@worker_type``."""
    from specflow.flow.task import Requirements

    out = []
    if spec.get("@requirements") is not None:
        try:
            Requirements.of(spec["@requirements"])
        except ValueError as exc:
            out.append(SpecError(str(exc), path=join_path(path, "@requirements")))
    wtype = spec.get("@worker_type")
    if wtype is not None and (not isinstance(wtype, str) or not wtype):
        out.append(SpecError(f"@worker_type must be a name, got {wtype!r}",
                             path=join_path(path, "@worker_type")))
    return out


def _placed(result: Any, spec: Mapping[str, Any], path: str) -> Any:
    """``result`` with the node's ``@requirements`` and ``@worker_type``: a task gets them,
    an operation gives them to its tasks, a flow to every task under it that states none."""
    from specflow.flow.core import Flow, TaskableOperation
    from specflow.flow.task import Requirements, Task, with_requirements

    problems = placement_problems(spec, path)
    if problems:
        raise problems[0]
    req = (Requirements.of(spec["@requirements"])
           if spec.get("@requirements") is not None else None)
    wtype = spec.get("@worker_type")
    if isinstance(result, Task):
        # the node's own settings win over what its operation says
        return with_requirements(result, req, wtype, override=True)
    if isinstance(result, TaskableOperation):
        changes: dict[str, Any] = {}
        if req is not None:
            changes["requirements"] = req
        if wtype is not None:
            changes["worker_type"] = wtype
        return result.with_options(**changes)
    if isinstance(result, Flow):
        result.placement = (req, wtype)
        return result
    raise SpecError(
        f"@requirements and @worker_type apply to an operation, a task or a flow; "
        f"{spec['@type']} gives a {type(result).__name__}",
        path=join_path(path, "@requirements" if "@requirements" in spec else "@worker_type"))


def _no_cycles(spec: Any, path: str, stack: list[int]) -> None:
    """Refuse a spec that contains itself (YAML anchors can make one)."""
    if not isinstance(spec, (Mapping, list, tuple)):
        return
    if id(spec) in stack:
        raise SpecError("the spec contains itself (a reference cycle)", path=path or None)
    stack.append(id(spec))
    items = spec.items() if isinstance(spec, Mapping) else enumerate(spec)
    for k, v in items:
        _no_cycles(v, f"{path}[{k}]" if isinstance(k, int) else join_path(path, _key(k)), stack)
    stack.pop()


def _key(key: Any) -> str:
    k: str = str(key)
    if k.replace("_", "a").isalnum() and not k[:1].isdigit():
        return k
    return f'"{k}"'


def _with_version(spec: Mapping[str, Any], version: str) -> dict[str, Any]:
    out = copy.deepcopy(dict(spec))
    if version != DEFAULT_VERSION:
        out.setdefault("@version", version)
    return out


def _check_arguments(entry: Entry, kwargs: dict[str, Any], path: str, *, partial: bool) -> None:
    problems = argument_problems(entry, kwargs, path, partial=partial)
    if problems:
        raise problems[0]


def argument_problems(
    entry: Entry, kwargs: dict[str, Any], path: str, *, partial: bool
) -> list[SpecError]:
    """Every unexpected, missing and mistyped argument of one node."""
    problems: list[SpecError] = []
    sig = entry.signature()
    if sig is None:
        return problems
    params = sig.parameters
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    accepted = [
        n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if not has_var_kw:
        for k in kwargs:
            if k not in accepted:
                import difflib

                close = difflib.get_close_matches(k, accepted, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else (
                    f"{entry.name} accepts: {', '.join(accepted) or 'no arguments'}"
                )
                problems.append(SpecError(
                    f"unexpected argument {k!r} for {entry.name}",
                    path=join_path(path, _key(k)),
                    hint=hint,
                ))
    if not partial:
        missing = [
            n
            for n, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is p.empty
            and n not in kwargs
        ]
        if missing:
            problems.append(SpecError(
                f"missing argument{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)} for {entry.name}",
                path=path or None,
            ))
    hints = _type_hints(entry)
    for k, v in kwargs.items():
        ann = hints.get(k)
        if ann is not None and not _conforms(v, ann):
            problems.append(SpecError(
                f"wrong type for {entry.name} argument {k!r}: expected {_ann_name(ann)}, "
                f"got {type(v).__name__} {_short(v)}",
                path=join_path(path, _key(k)),
            ))
    return problems


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _type_hints(entry: Entry) -> dict[str, Any]:
    target: Any = entry.fn.__init__ if inspect.isclass(entry.fn) else entry.fn
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: no checking, not an error
        return {}


def _ann_name(ann: Any) -> str:
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def _conforms(value: Any, ann: Any) -> bool:
    """A conservative check: only refuses values that clearly do not fit plain annotations."""
    if ann is Any or ann is object or value is UNBUILT:
        return True
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in typing.get_args(ann))
    if origin is typing.Literal:
        return value in typing.get_args(ann)
    if ann is type(None):
        return value is None
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is bool:
        return isinstance(value, bool)
    if ann is str:
        return isinstance(value, str)
    if origin in (list, tuple) or ann in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or ann is dict:
        return isinstance(value, Mapping)
    return True
