"""Language features of the built-in CUE evaluator, one small spec each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from specflow.spec.cue import load_cue, loads_cue


def ev(text: str) -> Any:
    return loads_cue(text, "test.cue")


# ---------------------------------------------------------------------------------------------
# structs, labels, comments


def test_plain_struct_and_nesting_shorthand() -> None:
    assert ev("a: b: c: 1\nd: 2") == {"a": {"b": {"c": 1}}, "d": 2}


def test_fields_merge_across_declarations() -> None:
    assert ev("a: x: 1\na: y: 2\na: {z: 3}") == {"a": {"x": 1, "y": 2, "z": 3}}


def test_quoted_labels_and_comments() -> None:
    src = """
    // a comment
    "@type": "thing"  // trailing
    "nvidia.com/gpu": "1"
    'single': 2
    """
    assert ev(src) == {"@type": "thing", "nvidia.com/gpu": "1", "single": 2}


def test_commas_are_optional_and_allowed() -> None:
    assert ev("a: 1, b: 2,\nc: [1, 2,]") == {"a": 1, "b": 2, "c": [1, 2]}


def test_package_clause_and_attributes_ignored() -> None:
    src = """
    @version("v1")
    package demo

    a: 1 @go(A)
    b: {
        @protobuf(1)
        c: "x"
    }
    """
    assert ev(src) == {"a": 1, "b": {"c": "x"}}


def test_field_order_follows_first_declaration() -> None:
    assert list(ev("b: 1\na: 2\nb: 1")) == ["b", "a"]


def test_top_level_list() -> None:
    assert ev("#X: 1\n[#X, 2]") == [1, 2]


def test_top_level_scalar_embedding() -> None:
    assert ev('"hello"') == "hello"


def test_empty_file_is_empty_struct() -> None:
    assert ev("") == {}


# ---------------------------------------------------------------------------------------------
# references and scoping


def test_references_are_order_independent() -> None:
    assert ev("a: b + 1\nb: c * 2\nc: 5") == {"a": 11, "b": 10, "c": 5}


def test_lexical_scoping_prefers_innermost() -> None:
    src = """
    x: 1
    s: {
        x: 2
        y: x
    }
    z: x
    """
    assert ev(src) == {"x": 1, "s": {"x": 2, "y": 2}, "z": 1}


def test_selectors_and_indexing() -> None:
    src = """
    a: {b: {c: [10, 20, 30]}}
    d: a.b.c[1]
    e: a["b"].c[2]
    """
    assert ev(src)["d"] == 20
    assert ev(src)["e"] == 30


def test_definitions_and_hidden_fields_are_not_exported() -> None:
    src = """
    #Def: {a: int}
    _hidden: 3
    _#hiddenDef: 4
    out: #Def & {a: _hidden + _#hiddenDef}
    """
    assert ev(src) == {"out": {"a": 7}}


def test_template_references_resolve_in_the_unified_struct() -> None:
    src = """
    #T: {
        n: int
        double: n * 2
        name: "item-\\(n)"
    }
    a: #T & {n: 3}
    b: #T & {n: 4}
    """
    assert ev(src) == {
        "a": {"n": 3, "double": 6, "name": "item-3"},
        "b": {"n": 4, "double": 8, "name": "item-4"},
    }


def test_let_bindings() -> None:
    src = """
    let base = "gs://bucket"
    a: {
        let sub = "\\(base)/a"
        path: sub + "/x"
    }
    """
    assert ev(src) == {"a": {"path": "gs://bucket/a/x"}}


def test_optional_fields_are_omitted_until_set() -> None:
    src = """
    #T: {a: int, b?: string}
    x: #T & {a: 1}
    y: #T & {a: 1, b: "s"}
    """
    assert ev(src) == {"x": {"a": 1}, "y": {"a": 1, "b": "s"}}


def test_required_field_when_given() -> None:
    assert ev("#T: {a!: int}\nx: #T & {a: 2}") == {"x": {"a": 2}}


def test_open_definition_with_ellipsis() -> None:
    src = """
    #T: {a: 1, ...}
    x: #T & {b: 2}
    """
    assert ev(src) == {"x": {"a": 1, "b": 2}}


def test_embedding_definition_extends_closed_struct() -> None:
    src = """
    #Base: {kind: string}
    #Job: {
        #Base
        cmd: string
    }
    j: #Job & {kind: "batch", cmd: "run"}
    """
    assert ev(src) == {"j": {"kind": "batch", "cmd": "run"}}


def test_definition_unified_with_extra_declarations() -> None:
    src = """
    #T: a: int
    #T: {b: int}
    x: #T & {a: 1, b: 2}
    """
    assert ev(src) == {"x": {"a": 1, "b": 2}}


def test_struct_embedding_in_plain_struct() -> None:
    src = """
    base: {a: 1}
    x: {
        base
        b: 2
    }
    """
    assert ev(src) == {"base": {"a": 1}, "x": {"a": 1, "b": 2}}


def test_pattern_constraints() -> None:
    src = """
    ports: [string]: {port: int, proto: *"tcp" | "udp"}
    ports: web: port: 80
    ports: dns: {port: 53, proto: "udp"}
    """
    assert ev(src) == {
        "ports": {"web": {"port": 80, "proto": "tcp"}, "dns": {"port": 53, "proto": "udp"}}
    }


def test_pattern_constraint_in_closed_definition_allows_matching_fields() -> None:
    src = """
    #Env: [=~"^[A-Z]+$"]: string
    e: #Env & {HOME: "/root", PATH: "/bin"}
    """
    assert ev(src) == {"e": {"HOME": "/root", "PATH": "/bin"}}


def test_close_builtin() -> None:
    assert ev("a: close({x: 1})\nb: a & {x: 1}") == {"a": {"x": 1}, "b": {"x": 1}}


# ---------------------------------------------------------------------------------------------
# strings


def test_interpolation_of_values() -> None:
    src = r"""
    n: 3
    f: 2.5
    s: "n=\(n) f=\(f) b=\(true) sum=\(n + 1) float=\(3.0)"
    """
    assert ev(src)["s"] == "n=3 f=2.5 b=true sum=4 float=3.0"


def test_interpolation_in_labels() -> None:
    src = r"""
    names: ["a", "b"]
    out: {
        for i, n in names {
            "item_\(n)": i
        }
    }
    """
    assert ev(src) == {"names": ["a", "b"], "out": {"item_a": 0, "item_b": 1}}


def test_string_escapes() -> None:
    src = r'a: "tab\tquote\"slash\\ nl\n uni\u00e9 \/"'
    assert ev(src)["a"] == 'tab\tquote"slash\\ nl\n uni\u00e9 /'


def test_multiline_strings_strip_indentation() -> None:
    src = 'a: """\n    line one\n      indented\n    last\n    """\n'
    assert ev(src)["a"] == "line one\n  indented\nlast"


def test_multiline_string_with_interpolation() -> None:
    src = 'x: 5\na: """\n\tvalue \\(x)\n\tend\n\t"""\n'
    assert ev(src)["a"] == "value 5\nend"


def test_raw_strings() -> None:
    src = r"""
    a: #"no \escape "quotes" here"#
    x: 1
    b: #"interp \#(x) and \(x)"#
    """
    out = ev(src)
    assert out["a"] == r'no \escape "quotes" here'
    assert out["b"] == r"interp 1 and \(x)"


def test_string_concatenation_and_repetition() -> None:
    assert ev('a: "ab" + "cd"\nb: "-" * 3\nc: 2 * "x"') == {"a": "abcd", "b": "---", "c": "xx"}


# ---------------------------------------------------------------------------------------------
# numbers and arithmetic


def test_number_literals() -> None:
    src = "a: 1_000\nb: 0x1F\nc: 0o17\nd: 0b101\ne: 1e3\nf: 2Ki\ng: 1.5K\nh: .5\ni: 8560Mi"
    assert ev(src) == {
        "a": 1000,
        "b": 31,
        "c": 15,
        "d": 5,
        "e": 1000.0,
        "f": 2048,
        "g": 1500,
        "h": 0.5,
        "i": 8560 * 1024 * 1024,
    }


def test_decimal_arithmetic() -> None:
    out = ev("a: 0.1 + 0.2\nb: 7 / 2\nc: 100.0 / 3\nd: 2 * 3\ne: 1.5 * 2\nf: 10 - 2.5")
    assert out["a"] == 0.3
    assert out["b"] == 3.5
    assert out["c"] == pytest.approx(33.333333333333336)
    assert out["d"] == 6 and isinstance(out["d"], int)
    assert out["e"] == 3.0 and isinstance(out["e"], float)
    assert out["f"] == 7.5


def test_integer_division_builtins_and_operators() -> None:
    src = """
    a: div(7, 2)
    b: mod(-7, 2)
    c: quo(-7, 2)
    d: rem(-7, 2)
    e: 7 div 2
    f: __mod(9, 4)
    """
    assert ev(src) == {"a": 3, "b": 1, "c": -3, "d": -1, "e": 3, "f": 1}


def test_interpolated_float_formats() -> None:
    assert ev(r'a: "\(7 / 2) \(0.1 + 0.2) \(1.0 * 2)"')["a"] == "3.5 0.3 2.0"


def test_unary_operators() -> None:
    assert ev("a: -3\nb: +2\nc: !true\nd: -(1.5)") == {"a": -3, "b": 2, "c": False, "d": -1.5}


def test_comparisons_and_booleans() -> None:
    src = """
    a: 1 < 2
    b: "a" < "b"
    c: 2 == 2.0
    d: "x" != "y"
    e: true && false
    f: false || true
    g: "abc" =~ "^a"
    h: "abc" !~ "z"
    i: null == null
    """
    assert ev(src) == {
        "a": True,
        "b": True,
        "c": True,
        "d": True,
        "e": False,
        "f": True,
        "g": True,
        "h": True,
        "i": True,
    }


# ---------------------------------------------------------------------------------------------
# lists


def test_list_concatenation_repetition_and_len() -> None:
    src = """
    a: [1, 2] + [3]
    b: [0] * 3
    c: len(a)
    d: len("héllo")
    e: len({x: 1, y: 2, _z: 3})
    """
    assert ev(src) == {"a": [1, 2, 3], "b": [0, 0, 0], "c": 3, "d": 6, "e": 2}


def test_list_unification_elementwise() -> None:
    src = """
    a: [int, string, ...]
    a: [1, "x", true]
    b: [...int]
    b: [1, 2]
    """
    assert ev(src) == {"a": [1, "x", True], "b": [1, 2]}


def test_list_slices() -> None:
    assert ev("a: [1, 2, 3, 4][1:3]\nb: [1, 2, 3][:2]") == {"a": [2, 3], "b": [1, 2]}


def test_list_comprehension_with_if_and_let() -> None:
    src = """
    xs: [1, 2, 3, 4, 5]
    even: [for x in xs if x mod 2 == 0 {x * 10}]
    pairs: [for i, x in xs let y = x * x if i < 2 {[i, y]}]
    """
    out = ev(src)
    assert out["even"] == [20, 40]
    assert out["pairs"] == [[0, 1], [1, 4]]


def test_nested_comprehensions_over_structs() -> None:
    src = r"""
    m: {a: 1, b: 2}
    out: [for k, v in m for j in [1, 2] {"\(k)\(j)": v * j}]
    """
    assert ev(src)["out"] == [{"a1": 1}, {"a2": 2}, {"b1": 2}, {"b2": 4}]


def test_struct_comprehension_and_if_guard() -> None:
    src = """
    flag: true
    s: {
        a: 1
        if flag {
            b: 2
        }
        if !flag {
            c: 3
        }
    }
    """
    assert ev(src) == {"flag": True, "s": {"a": 1, "b": 2}}


def test_comprehension_guard_reads_sibling() -> None:
    src = """
    s: {
        mode: "fast"
        if mode == "fast" {workers: 8}
    }
    """
    assert ev(src) == {"s": {"mode": "fast", "workers": 8}}


def test_comprehension_extends_field_used_by_embedding() -> None:
    src = """
    #Local: {kind: "local"}
    #Remote: {kind: "remote"}
    #USE_LOCAL: true
    #Target: _ | *#Remote
    if #USE_LOCAL {
        #Target: #Local
    }
    #Target & {name: "job"}
    """
    assert ev(src) == {"kind": "local", "name": "job"}


# ---------------------------------------------------------------------------------------------
# unification, disjunctions, constraints


def test_scalar_unification_and_types() -> None:
    src = """
    a: int & 3
    b: string
    b: "s"
    c: number & 2.5
    d: >=0 & <10 & 4
    e: !=3 & 4
    f: =~"^x" & "xy"
    g: _ & 5
    h: null
    """
    assert ev(src) == {"a": 3, "b": "s", "c": 2.5, "d": 4, "e": 4, "f": "xy", "g": 5, "h": None}


def test_defaults() -> None:
    src = """
    a: *1 | 2
    b: *"x" | string
    b: "y"
    c: bool | *true
    d: _ | *[]
    e: _ | *[]
    e: [1]
    f: int | *null
    """
    assert ev(src) == {"a": 1, "b": "y", "c": True, "d": [], "e": [1], "f": None}


def test_disjunction_selected_by_unification() -> None:
    src = """
    #A: {kind: "a", x: int}
    #B: {kind: "b", y: int}
    v: #A | #B
    v: {kind: "b", y: 2}
    """
    assert ev(src) == {"v": {"kind": "b", "y": 2}}


def test_disjunction_of_struct_literals_in_template() -> None:
    src = """
    #T: {
        fn: {
            "@type": "Enc"
            path: string
        } | {
            "@type": "Coarse"
            path: string
            size: int
        }
    }
    a: #T & {fn: {"@type": "Coarse", path: "p", size: 3}}
    """
    assert ev(src) == {"a": {"fn": {"@type": "Coarse", "path": "p", "size": 3}}}


def test_default_from_referenced_disjunction_can_be_overridden() -> None:
    src = """
    a: *1 | 2
    b: a & 2
    c: a + 10
    """
    assert ev(src) == {"a": 1, "b": 2, "c": 11}


def test_identical_disjuncts_collapse() -> None:
    assert ev('a: "x" | "x"') == {"a": "x"}


def test_and_or_builtins() -> None:
    src = """
    a: and([int, >0, 5])
    b: or([1, 2]) & 2
    """
    assert ev(src) == {"a": 5, "b": 2}


def test_predeclared_bounded_types() -> None:
    assert ev("a: uint8 & 200\nb: int32 & -5") == {"a": 200, "b": -5}


# ---------------------------------------------------------------------------------------------
# files


def test_load_cue_from_path(tmp_path: Path) -> None:
    p = tmp_path / "spec.cue"
    p.write_text('import "strings"\nname: strings.ToUpper("job")\n')
    assert load_cue(p) == {"name": "JOB"}
    assert load_cue(str(p)) == {"name": "JOB"}


def test_result_is_plain_json_data() -> None:
    out = ev('a: [1, 2.5, "s", true, null, {b: 1}]')
    assert json.loads(json.dumps(out)) == out


def test_int_and_float_do_not_unify() -> None:
    from specflow.spec.errors import SpecError

    with pytest.raises(SpecError, match="mismatched types int and float"):
        ev("a: 1 & 1.0")


def test_list_of_disjunction_of_definitions() -> None:
    src = """
    #A: {kind: "a", v: int}
    #B: {kind: "b", w: string}
    stages: [...(#A | #B)]
    stages: [{kind: "a", v: 1}, {kind: "b", w: "s"}]
    """
    assert ev(src) == {"stages": [{"kind": "a", "v": 1}, {"kind": "b", "w": "s"}]}


def test_pattern_constraint_with_template_definition() -> None:
    src = """
    m: [string]: #T
    #T: {n: int, d: n * 2}
    m: {a: n: 1, b: n: 2}
    """
    assert ev(src) == {"m": {"a": {"n": 1, "d": 2}, "b": {"n": 2, "d": 4}}}


def test_templates_instantiated_in_list_comprehension() -> None:
    src = """
    #T: {a: int, b: a + 1}
    l: [for i in [1, 2, 3] {#T & {a: i}}]
    """
    assert ev(src) == {"l": [{"a": 1, "b": 2}, {"a": 2, "b": 3}, {"a": 3, "b": 4}]}


def test_definitions_and_hidden_fields_inside_structs() -> None:
    src = """
    out: {
        #priv: 3
        _h: 4
        pub: #priv + _h
    }
    """
    assert ev(src) == {"out": {"pub": 7}}


def test_repeated_unification_is_idempotent_and_fast() -> None:
    lines = ["x0: {v: 1, w: [1, 2]}"] + [f"x{i + 1}: x{i} & x{i}" for i in range(40)]
    assert ev("\n".join(lines))["x40"] == {"v": 1, "w": [1, 2]}


def test_field_alias_and_pattern_label_alias() -> None:
    src = """
    X="my-field": 3
    y: X + 1
    servers: [Name=string]: {name: Name, port: *80 | int}
    servers: web: {}
    servers: db: port: 5432
    """
    assert ev(src) == {
        "my-field": 3,
        "y": 4,
        "servers": {"web": {"name": "web", "port": 80}, "db": {"name": "db", "port": 5432}},
    }
