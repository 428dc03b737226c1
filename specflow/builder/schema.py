"""The JSON Schema of specs, generated from the registry."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from specflow.builder.build import _type_hints
from specflow.builder.registry import Entry, entries

SCHEMA_ID = "https://specflow.invalid/schemas/specflow.schema.json"


def _json_type(ann: Any) -> dict[str, Any] | None:
    if ann is None or ann is Any or ann is object:
        return None
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        parts = [_json_type(a) for a in typing.get_args(ann)]
        if any(p is None for p in parts):
            return None
        return {"anyOf": parts}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(ann))}
    if ann is type(None):
        return {"type": "null"}
    if ann is bool:
        return {"type": "boolean"}
    if ann is int:
        return {"type": "integer"}
    if ann is float:
        return {"type": "number"}
    if ann is str:
        return {"type": "string"}
    if origin in (list, tuple) or ann in (list, tuple):
        return {"type": "array", "items": {"$ref": "#/$defs/value"}}
    if origin is dict or ann is dict:
        return {"type": "object"}
    return None


#: what ``@requirements`` may say (see :class:`specflow.flow.task.Requirements`)
REQUIREMENTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cpus": {"type": "number", "exclusiveMinimum": 0},
        "mem_gb": {"type": "number", "exclusiveMinimum": 0},
        "gpus": {"type": "integer", "minimum": 0},
        "platform": {"type": "string", "minLength": 1},
        "tags": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "max_retries": {"type": "integer", "minimum": 0},
    },
}


def _entry_schema(entry: Entry) -> dict[str, Any]:
    sig = entry.signature()
    props: dict[str, Any] = {
        "@type": {"const": entry.name},
        "@mode": {"enum": ["regular", "partial"]},
        "@version": {"type": ["string", "number"]},
        "@requirements": REQUIREMENTS_SCHEMA,
        "@worker_type": {"type": "string", "minLength": 1},
    }
    required: list[str] = []
    open_ = True
    if sig is not None:
        hints = _type_hints(entry)
        open_ = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        for name, p in sig.parameters.items():
            if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                continue
            t = _json_type(hints.get(name))
            props[name] = (
                {"anyOf": [t, {"$ref": "#/$defs/typed"}]} if t else {"$ref": "#/$defs/value"}
            )
            if p.default is inspect.Parameter.empty:
                required.append(name)
    out: dict[str, Any] = {"type": "object", "properties": props}
    doc = inspect.getdoc(entry.fn)
    if doc:
        out["description"] = doc.split("\n\n")[0]
    if not open_:
        out["additionalProperties"] = False
    return out


def _versions_schema(versions: list[Entry]) -> dict[str, Any]:
    """A name registered for several version ranges accepts the arguments of any of them:
    the ``@version`` a node is built with may be inherited from a parent, which a schema
    cannot follow."""
    if len(versions) == 1:
        return _entry_schema(versions[0])
    out: dict[str, Any] = {"anyOf": [_entry_schema(e) for e in versions]}
    described = [e for e in versions if inspect.getdoc(e.fn)]
    if described:
        doc = inspect.getdoc(described[-1].fn) or ""
        out["description"] = doc.split("\n\n")[0]
    return out


def registry_schema() -> dict[str, Any]:
    """A JSON Schema accepting any spec whose typed nodes match the registry (argument
    names, required arguments and plain argument types)."""
    by_name: dict[str, list[Entry]] = {}
    for e in entries():
        by_name.setdefault(e.name, []).append(e)
    names = sorted(by_name)
    defs: dict[str, Any] = {
        "value": {
            "anyOf": [
                {"$ref": "#/$defs/typed"},
                {"type": "array", "items": {"$ref": "#/$defs/value"}},
                {
                    "type": "object",
                    "not": {"required": ["@type"]},
                    "additionalProperties": {"$ref": "#/$defs/value"},
                },
                {"type": ["string", "number", "boolean", "null"]},
            ]
        },
        "typed": {
            "type": "object",
            "required": ["@type"],
            "properties": {"@type": {"enum": names}},
            "allOf": [
                {
                    "if": {"properties": {"@type": {"const": n}}},
                    "then": {"$ref": f"#/$defs/types/{n}"},
                }
                for n in names
            ],
        },
    }
    defs["types"] = {n: _versions_schema(by_name[n]) for n in names}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "specflow spec",
        "$ref": "#/$defs/value",
        "$defs": defs,
    }
