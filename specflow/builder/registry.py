"""The registry: ``@type`` names to Python constructors, per version range."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from specflow.builder.versions import VersionSpec, parse_version
from specflow.spec.errors import SpecError

T = TypeVar("T")

#: the version a spec gets when it names none
DEFAULT_VERSION = "0"


@dataclass
class Entry:
    name: str
    fn: Callable[..., Any]
    versions: VersionSpec
    module: str

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


def register(name: str, versions: str = ">=0") -> Callable[[T], T]:
    """Register a function or class under ``name`` for the ``versions`` range.

    Several constructors may share a name when their version ranges differ; a spec picks one
    with ``"@version"``. Registering the same name and range again replaces the entry (so a
    re-imported module does not fail).
    """
    spec = VersionSpec(versions)

    def deco(fn: T) -> T:
        entries = _REGISTRY.setdefault(name, [])
        entries[:] = [e for e in entries if e.versions.text != spec.text]
        entries.append(Entry(name, fn, spec, getattr(fn, "__module__", "?")))  # type: ignore[arg-type]
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
