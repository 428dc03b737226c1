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
        _check_expansion(node, filename)
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


ALIAS_EXPANSION_LIMIT = 100_000
"""Aliases may expand a YAML spec to at most this many values, or to ten times the values
written, whichever is more: past that it is refused (a "billion laughs" document would
otherwise be walked once per path through its aliases)."""


def _check_expansion(root: yaml.Node, filename: str) -> None:
    """Refuse a document whose aliases expand it beyond :data:`ALIAS_EXPANSION_LIMIT`,
    without expanding it: each node's expanded size is computed once."""
    size: dict[int, int] = {}
    refs: dict[int, int] = {}
    nodes: dict[int, yaml.Node] = {}
    # iterative post-order walk of the node graph (shared nodes are aliases)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    refs[id(root)] = 1
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            total = 1
            for child in _children(node):
                total += size.get(id(child), 1)  # a node still open is a cycle: counted once
            size[key] = total
            continue
        if key in nodes:
            continue
        nodes[key] = node
        stack.append((node, True))
        for child in _children(node):
            refs[id(child)] = refs.get(id(child), 0) + 1
            if id(child) not in nodes:
                stack.append((child, False))
    expanded = size[id(root)]
    written = len(nodes)
    if expanded <= max(ALIAS_EXPANSION_LIMIT, 10 * written):
        return
    worst = max((k for k in nodes if refs.get(k, 0) > 1),
                key=lambda k: refs[k] * size.get(k, 1), default=id(root))
    mark = nodes[worst].start_mark
    raise SpecError(
        f"YAML aliases expand this spec from {written:,} written values to {expanded:,} "
        f"(more than {max(ALIAS_EXPANSION_LIMIT, 10 * written):,}): refused; the anchor here "
        f"is used {refs.get(worst, 1):,} times and expands to {size.get(worst, 1):,} values",
        locations=[Location(filename, mark.line + 1, mark.column + 1)],
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


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
