from __future__ import annotations

import functools
import pickle
from typing import Any

import pytest

import specflow
from specflow.builder import build, get_spec, register, unregister
from specflow.builder.check import check_spec
from specflow.spec import SpecError, loads_yaml


@register("tb.point")
class Point:
    def __init__(self, x: int, y: int = 0) -> None:
        self.x, self.y = x, y


@register("tb.add")
def add(a: float, b: float) -> float:
    return a + b


@register("tb.scale")
def scale(x: float, factor: float = 2.0) -> float:
    return x * factor


@register("tb.versioned", versions="<1")
def versioned_old(v: Any = None) -> str:
    return "old"


@register("tb.versioned", versions=">=1")
def versioned_new(v: Any = None) -> str:
    return "new"


@register("tb.collect")
def collect(items: list[Any]) -> list[Any]:
    return list(items)


def test_builds_children_first_and_keeps_plain_values_plain() -> None:
    spec = {
        "@type": "tb.add",
        "a": {"@type": "tb.add", "a": 1, "b": 2},
        "b": 10,
    }
    assert build(spec) == 13
    assert build({"k": [1, {"x": 2}]}) == {"k": [1, {"x": 2}]}


def test_built_object_remembers_its_spec() -> None:
    p = build({"@type": "tb.point", "x": 3})
    assert isinstance(p, Point) and p.x == 3
    assert get_spec(p) == {"@type": "tb.point", "x": 3}


def test_partial_mode_is_picklable_and_takes_remaining_args() -> None:
    fn = build({"@type": "tb.scale", "@mode": "partial", "factor": 3})
    assert isinstance(fn, functools.partial)
    again = pickle.loads(pickle.dumps(fn))
    assert again(x=2) == 6
    assert get_spec(fn)["@mode"] == "partial"


def test_version_selects_constructor_and_is_inherited() -> None:
    assert build({"@type": "tb.versioned"}) == "old"
    assert build({"@type": "tb.versioned", "@version": "1.2"}) == "new"
    nested = build({"@type": "tb.collect", "@version": "1.0",
                    "items": [{"@type": "tb.versioned"},
                              {"@type": "tb.versioned", "@version": "0.5"}]})
    assert nested == ["new", "old"]


def test_unknown_type_names_path_and_suggests() -> None:
    with pytest.raises(SpecError) as e:
        build({"@type": "tb.collect", "items": [{"@type": "tb.pointt", "x": 1}]})
    msg = str(e.value)
    assert msg.startswith("items[0].@type: unknown @type 'tb.pointt'")
    assert "did you mean 'tb.point'" in msg


def test_missing_unexpected_and_wrong_type_arguments() -> None:
    with pytest.raises(SpecError, match=r"missing argument 'x' for tb.point"):
        build({"@type": "tb.point"})
    with pytest.raises(SpecError, match=r"^z: unexpected argument 'z'"):
        build({"@type": "tb.point", "x": 1, "z": 2})
    with pytest.raises(SpecError, match=r"^x: wrong type .* expected int, got str"):
        build({"@type": "tb.point", "x": "one"})


def test_constructor_exception_becomes_spec_error_with_path() -> None:
    with pytest.raises(SpecError) as e:
        build({"s": [{"@type": "sleep", "seconds": -1}]})
    assert str(e.value).startswith("s[0]: sleep: ValueError: seconds must be >= 0")


def test_errors_carry_file_and_line_from_yaml() -> None:
    text = "a: 1\nstages:\n  - '@type': tb.point\n    x: 1\n  - '@type': tb.point\n    q: 2\n"
    spec, source = loads_yaml(text, "spec.yaml")
    with pytest.raises(SpecError) as e:
        build(spec, source=source)
    assert "spec.yaml:6:5" in str(e.value)
    assert str(e.value).startswith("stages[1].q: unexpected argument 'q'")


def test_check_reports_every_problem_without_building() -> None:
    calls: list[int] = []

    @register("tb.side_effect")
    def side_effect(n: int) -> int:
        calls.append(n)
        return n

    try:
        problems = check_spec({"a": {"@type": "tb.side_effect", "n": 1},
                               "b": {"@type": "nope"},
                               "c": {"@type": "tb.point", "y": 1}})
        assert calls == []
        paths = sorted(p.path or "" for p in problems)
        assert paths == ["b.@type", "c"]
    finally:
        unregister("tb.side_effect")


def test_self_referencing_yaml_is_refused() -> None:
    with pytest.raises(SpecError, match="contains itself"):
        loads_yaml("a: &x\n  b: *x\n", "cyc.yaml")


def test_public_api_exports() -> None:
    for name in ("register", "build", "load_spec", "SpecError", "taskable_operation",
                 "taskable_operation_cls", "flow_schema", "flow_schema_cls", "Dependency",
                 "execute"):
        assert hasattr(specflow, name), name
