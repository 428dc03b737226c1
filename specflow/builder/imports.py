"""Importing users' modules (``-i PATH_OR_MODULE``) so they can register operations."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from specflow.spec.errors import SpecError


def resolve_import(name: str) -> str:
    """``-i name`` finds ``name.py`` (or the package folder ``name``) in the current
    directory before looking for an installed module; a path or dotted name is kept."""
    if name.isidentifier() and Path(name + ".py").is_file():
        return str(Path(name + ".py").resolve())
    return name


def import_user_module(name: str) -> ModuleType:
    """Import a module by dotted name, or a ``.py`` file / package folder by path (a bare
    name finds ``name.py`` in the current directory first)."""
    name = resolve_import(name)
    p = Path(name)
    if name.endswith(".py") or p.is_dir() or p.exists():
        p = p.resolve()
        if not p.exists():
            raise SpecError(f"cannot import {name!r}: no such file")
        if p.is_dir():
            parent, mod_name = str(p.parent), p.name
            if parent not in sys.path:
                sys.path.insert(0, parent)
            return _import(mod_name, name)
        mod_name = p.stem
        if mod_name in sys.modules and getattr(sys.modules[mod_name], "__file__", None) == str(p):
            return sys.modules[mod_name]
        parent = str(p.parent)
        if parent not in sys.path:
            sys.path.insert(0, parent)
        return _import(mod_name, name)
    return _import(name, name)


def _import(mod_name: str, shown: str) -> ModuleType:
    try:
        return importlib.import_module(mod_name)
    except SpecError:
        raise
    except ModuleNotFoundError as exc:
        raise SpecError(f"cannot import {shown!r}: {exc}") from exc
    except Exception as exc:
        raise SpecError(f"importing {shown!r} failed: {type(exc).__name__}: {exc}") from exc
