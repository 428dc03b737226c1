"""Spec loading: CUE, YAML and JSON files to plain JSON-like values."""

from specflow.spec.errors import Location, SpecError
from specflow.spec.loader import load_spec, load_spec_with_source, loads_json, loads_yaml
from specflow.spec.overrides import apply_overrides, parse_override, parse_path
from specflow.spec.source import SourceMap

__all__ = [
    "Location",
    "SourceMap",
    "SpecError",
    "apply_overrides",
    "load_spec",
    "load_spec_with_source",
    "loads_json",
    "loads_yaml",
    "parse_override",
    "parse_path",
]
