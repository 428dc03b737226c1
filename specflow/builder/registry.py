"""The registry: ``@type`` names to Python constructors, per version range."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from specflow.builder.versions import VersionSpec, parse_version
from specflow.spec.errors import SpecError

T = TypeVar("T")

#: the version a spec gets when it names none
DEFAULT_VERSION = "0"


#: the opt-ins a registered type may need, each with the command-line flag that grants it
OPT_IN_FLAGS: dict[str, str] = {
    "eval": "--allow-eval",
    "shell": "--allow-shell",
}

_OPT_IN_WHAT = {
    "eval": "evaluates Python text",
    "shell": "runs shell commands",
}


@dataclass
class Entry:
    name: str
    fn: Callable[..., Any]
    versions: VersionSpec
    module: str
    #: what the user must grant on the command line before a spec may build this type
    opt_in: str | None = None
    #: arguments that need a grant when a spec gives them (e.g. shell lines run in a job)
    opt_in_args: dict[str, str] = field(default_factory=dict)

    def signature(self) -> inspect.Signature | None:
        target: Any = self.fn
        if inspect.isclass(target):
            target = target.__init__
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            return None
        if inspect.isclass(self.fn):
            params = list(sig.parameters.values())[1:]
            sig = sig.replace(parameters=params)
        return sig


_REGISTRY: dict[str, list[Entry]] = {}
_LOADERS: list[Callable[[], None]] = []


def add_loader(loader: Callable[[], None]) -> None:
    """Call ``loader`` (once) the first time a name is looked up that is not registered:
    the package uses it to import its built-in types only when needed."""
    _LOADERS.append(loader)


def _run_loaders() -> bool:
    ran = False
    while _LOADERS:
        _LOADERS.pop(0)()
        ran = True
    return ran


def register(name: str, versions: str = ">=0", *, opt_in: str | None = None,
             opt_in_args: dict[str, str] | None = None) -> Callable[[T], T]:
    """Register a function or class under ``name`` for the ``versions`` range.

    Several constructors may share a name when their version ranges differ; a spec picks one
    with ``"@version"``. Registering the same name and range again replaces the entry (so a
    re-imported module does not fail). ``opt_in`` (one of :data:`OPT_IN_FLAGS`) marks a type
    that a spec may only build when the run grants it (``build(..., opt_ins=...)``; on the
    command line ``--allow-eval`` or ``--allow-shell``). ``opt_in_args`` does the same for
    single arguments: ``{"setup": "shell"}`` refuses a spec that gives ``setup`` (non-empty)
    without ``--allow-shell``.
    """
    spec = VersionSpec(versions)
    for grant in (opt_in, *(opt_in_args or {}).values()):
        if grant is not None and grant not in OPT_IN_FLAGS:
            raise ValueError(f"unknown opt_in {grant!r}; expected one of "
                             f"{', '.join(OPT_IN_FLAGS)}")

    def deco(fn: T) -> T:
        entries = _REGISTRY.setdefault(name, [])
        entries[:] = [e for e in entries if e.versions.text != spec.text]
        entries.append(Entry(name, fn, spec, getattr(fn, "__module__", "?"),  # type: ignore[arg-type]
                             opt_in=opt_in, opt_in_args=dict(opt_in_args or {})))
        try:
            if getattr(fn, "__specflow_type__", None) is None:
                fn.__specflow_type__ = name  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass
        return fn

    return deco


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered_names() -> list[str]:
    _run_loaders()
    return sorted(_REGISTRY)


def entries() -> list[Entry]:
    _run_loaders()
    return [e for name in sorted(_REGISTRY) for e in _REGISTRY[name]]


def lookup(name: str, version: str = DEFAULT_VERSION, *, path: str | None = None) -> Entry:
    """The entry for ``name`` that accepts ``version``; a :class:`SpecError` otherwise."""
    found = _REGISTRY.get(name)
    if not found and _run_loaders():
        found = _REGISTRY.get(name)
    if not found:
        from specflow.builder.not_provided import not_provided

        refused = not_provided(name, path=path)
        if refused is not None:
            raise refused
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else (
            "`specflow types` lists the registered types; `-i MODULE` imports your own"
        )
        raise SpecError(f"unknown @type {name!r}", path=path, hint=hint)
    try:
        v = parse_version(version)
    except ValueError as exc:
        raise SpecError(str(exc), path=path) from None
    for entry in reversed(found):
        if entry.versions.contains(v):
            return entry
    ranges = ", ".join(str(e.versions) for e in found)
    raise SpecError(
        f"@type {name!r} has no constructor for @version {version!r} (registered: {ranges})",
        path=path,
    )


def check_opt_in(entry: Entry, opt_ins: frozenset[str], *, path: str | None = None,
                 node: Any = None) -> None:
    """Refuse ``entry`` unless its opt-in (if it needs one) is among ``opt_ins``; with the
    spec ``node``, also an argument it gives that needs one."""
    if isinstance(node, dict):
        for arg, grant in entry.opt_in_args.items():
            if node.get(arg) and grant not in opt_ins:
                flag = OPT_IN_FLAGS[grant]
                base = path[: -len(".@type")] if path and path.endswith(".@type") else ""
                raise SpecError(
                    f"{entry.name}: {arg} {_OPT_IN_WHAT[grant]}: refused unless the run is "
                    f"started with {flag}",
                    path=f"{base}.{arg}" if base else arg,
                    hint=f"pass {flag} to `specflow run` (and again to `specflow resume`) if "
                    "you trust this spec")
    if entry.opt_in is None or entry.opt_in in opt_ins:
        return
    flag = OPT_IN_FLAGS[entry.opt_in]
    raise SpecError(
        f"@type {entry.name!r} {_OPT_IN_WHAT[entry.opt_in]}: refused unless the run is started "
        f"with {flag}",
        path=path,
        hint=f"pass {flag} to `specflow run` (and again to `specflow resume`) if you trust "
        "this spec",
    )


def required_opt_ins(spec: Any) -> set[str]:
    """The opt-ins building ``spec`` needs: of the registered types it names, and of the
    arguments it gives that need one (unknown types are left to validation)."""
    need: set[str] = set()
    stack = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            t = node.get("@type")
            if isinstance(t, str):
                try:
                    entry: Entry | None = lookup(t)
                except SpecError:
                    entry = None
                if entry is not None:
                    if entry.opt_in:
                        need.add(entry.opt_in)
                    need.update(g for a, g in entry.opt_in_args.items() if node.get(a))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return need
