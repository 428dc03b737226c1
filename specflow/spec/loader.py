"""Load a spec file (``.cue``, ``.yaml``/``.yml``, ``.json``) into a plain JSON-like value,
with a map from spec paths to source lines for error messages."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from specflow.spec.errors import Location, SpecError
from specflow.spec.source import SourceMap

SUFFIXES = (".cue", ".yaml", ".yml", ".json")


def load_spec(path: str | os.PathLike[str]) -> Any:
    """The spec in ``path`` as plain data (dicts, lists, str, int, float, bool, None)."""
    return load_spec_with_source(path)[0]


def load_spec_with_source(path: str | os.PathLike[str]) -> tuple[Any, SourceMap]:
    p = Path(path)
    shown = str(path)
    if not p.exists():
        raise SpecError(f"{shown}: no such spec file")
    if p.is_dir():
        raise SpecError(f"{shown}: is a folder, not a spec file")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise SpecError(
            f"{shown}: unknown spec format {suffix or '(no suffix)'!r}; "
            f"expected one of {', '.join(SUFFIXES)}"
        )
    if suffix == ".cue":
        from specflow.spec.cue import load_cue_with_positions

        value, positions = load_cue_with_positions(p)
        return value, SourceMap(shown, {path: Location(shown, line, col)
                                        for path, (line, col) in positions.items()})
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{shown}: cannot read: {exc}") from None
    if suffix == ".json":
        return loads_json(text, shown)
    return loads_yaml(text, shown)


def loads_json(text: str, filename: str = "<string>") -> tuple[Any, SourceMap]:
    try:
        return json.loads(text), SourceMap(filename)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"JSON syntax error: {exc.msg}", locations=[Location(filename, exc.lineno, exc.colno)]
        ) from None


def loads_yaml(text: str, filename: str = "<string>") -> tuple[Any, SourceMap]:
    source = SourceMap(filename)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, source
        value = _construct(loader, node, "", source, [])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = [Location(filename, mark.line + 1, mark.column + 1)] if mark else []
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"YAML syntax error: {problem}", locations=loc) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", locations=[Location(filename)]) from None
    finally:
        loader.dispose()
    return value, source


def _construct(
    loader: yaml.SafeLoader, node: yaml.Node, path: str, source: SourceMap, stack: list[int]
) -> Any:
    """The value of ``node``, recording each node's position under its spec path.
    ``stack`` holds the collections being built, to refuse an alias that contains itself."""
    where = _position(source, node)
    if id(node) in stack:
        raise SpecError("the spec contains itself (a YAML alias refers to its own anchor)",
                        path=path or None, locations=[where])
    source.positions.setdefault(path, where)
    if isinstance(node, yaml.SequenceNode):
        stack.append(id(node))
        items = [_construct(loader, v, f"{path}[{i}]", source, stack)
                 for i, v in enumerate(node.value)]
        stack.pop()
        return items
    if not isinstance(node, yaml.MappingNode):
        return loader.construct_object(node, deep=True)
    stack.append(id(node))
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key_at = _position(source, key_node)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise SpecError("mapping keys must be plain values", path=path or None,
                            locations=[key_at])
        if key in out:
            raise SpecError(f"duplicate key {key!r}", path=path or None, locations=[key_at])
        child = f"{path}.{key}" if path else str(key)
        source.positions[child] = key_at
        out[key] = _construct(loader, value_node, child, source, stack)
    stack.pop()
    return out


def _position(source: SourceMap, node: yaml.Node) -> Location:
    return Location(source.file, node.start_mark.line + 1, node.start_mark.column + 1)
