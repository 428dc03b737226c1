"""``--set a.b[0].c=VALUE`` overrides of a loaded spec (VALUE is parsed as YAML)."""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from specflow.spec.errors import SpecError
from specflow.spec.source import format_path

_TOKEN = re.compile(r'\.?(?:"((?:[^"\\]|\\.)*)"|([^.\[\]"]+))|\[(-?\d+)\]')


def parse_path(text: str) -> list[str | int]:
    """``a.b[0]."c.d"`` -> ``["a", "b", 0, "c.d"]``; ``a.0.b`` is ``a[0].b`` (on a mapping,
    the key ``"0"``)."""
    parts: list[str | int] = []
    pos = 0
    text = text.strip()
    if not text:
        raise SpecError("--set needs a path before '=' (e.g. target.size=3)")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or (m.start() == 0 and text.startswith(".")):
            raise SpecError(f"--set {text}: cannot parse the path at {text[pos:]!r}")
        if m.group(3) is not None:
            parts.append(int(m.group(3)))
        elif m.group(2) is not None and m.group(2).isdigit() and m.start() > 0:
            parts.append(int(m.group(2)))  # a.0.b: an index (or a key "0" of a mapping)
        else:
            parts.append(m.group(1) if m.group(1) is not None else m.group(2))
        pos = m.end()
    return parts


def parse_override(text: str) -> tuple[list[str | int], Any]:
    if "=" not in text:
        raise SpecError(f"--set {text}: expected PATH=VALUE (e.g. target.size=3)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise SpecError(f"--set {text}: the value is not valid YAML ({exc})") from None
    return parse_path(key), value


def apply_overrides(spec: Any, overrides: list[str]) -> Any:
    """A copy of ``spec`` with every override applied in order."""
    if not overrides:
        return spec
    spec = copy.deepcopy(spec)
    for text in overrides:
        path, value = parse_override(text)
        spec = _set(spec, path, value, text)
    return spec


def _fmt(parts: list[str | int]) -> str:
    return format_path(parts) or "<root>"


def _set(root: Any, path: list[str | int], value: Any, text: str) -> Any:
    if not path:
        return value
    node = root
    for i, part in enumerate(path):
        last = i == len(path) - 1
        here = _fmt(path[: i + 1])
        if isinstance(part, int) and isinstance(node, dict) and str(part) in node:
            part = str(part)
        if isinstance(part, int):
            if not isinstance(node, list):
                raise SpecError(
                    f"--set {text}: {_fmt(path[:i])} is not a list, cannot index it with [{part}]",
                    path=_fmt(path[:i]),
                )
            if not -len(node) <= part < len(node):
                raise SpecError(
                    f"--set {text}: index {part} out of range (the list has {len(node)} items)",
                    path=here,
                )
            if last:
                node[part] = value
            else:
                node = node[part]
        else:
            if not isinstance(node, dict):
                raise SpecError(
                    f"--set {text}: {_fmt(path[:i])} is a {type(node).__name__}, not a mapping",
                    path=_fmt(path[:i]),
                )
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = {} if not isinstance(path[i + 1], int) else None
                    if node[part] is None:
                        raise SpecError(
                            f"--set {text}: {here} does not exist, cannot index into it",
                            path=here,
                        )
                node = node[part]
    return root
