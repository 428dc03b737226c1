"""Specs the CUE evaluator must refuse, and how the refusal reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from specflow.spec.cue import load_cue, loads_cue
from specflow.spec.errors import Location, SpecError


def refuse(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        loads_cue(text, "spec.cue")
    return info.value


def test_syntax_error_has_line_and_column() -> None:
    err = refuse("a: 1\nb: {\n  c: )\n}")
    assert err.locations == (Location("spec.cue", 3, 6),)
    assert "expected operand" in err.message
    assert str(err).splitlines()[1].strip() == "spec.cue:3:6"


def test_unterminated_struct() -> None:
    err = refuse("a: {")
    assert "expected '}'" in str(err)
    assert err.locations[0].line == 1


@pytest.mark.parametrize(
    "text",
    [
        'a: "abc',
        "a: 'abc",
        'a: "\\q"',
        "a: 1 +",
        "a: [1, 2",
        "a: 0x",
        "a: 09",
        "a: @",
        'a: """abc"""',
        "for x in [1] x",
    ],
)
def test_lexical_and_syntax_errors(text: str) -> None:
    err = refuse(text)
    assert err.locations and err.locations[0].line >= 1


def test_conflicting_values_names_path_and_both_positions() -> None:
    err = refuse("job: n: 1\njob: n: 2")
    assert str(err).startswith("job.n: conflicting values 1 and 2")
    assert [(loc.line, loc.col) for loc in err.locations] == [(1, 9), (2, 9)]


def test_mismatched_types() -> None:
    err = refuse('a: 1 & "s"')
    assert str(err).startswith('a: conflicting values 1 and "s" (mismatched types int and string)')


def test_out_of_bound() -> None:
    err = refuse("bad: n: <10\nbad: n: 12")
    assert str(err).startswith("bad.n: invalid value 12 (out of bound <10)")
    assert Location("spec.cue", 2, 9) in err.locations


def test_empty_range() -> None:
    assert "empty range" in refuse("a: >10 & <5").message


def test_regex_mismatch() -> None:
    assert str(refuse('a: =~"^x" & "y"')).startswith('a: invalid value "y" (out of bound =~"^x")')


def test_incomplete_type_at_export() -> None:
    err = refuse("cfg: {workers: int}")
    assert str(err).startswith("cfg.workers: incomplete value int")


def test_incomplete_top_at_export() -> None:
    assert str(refuse("a: b: _")).startswith("a.b: incomplete value _")


def test_incomplete_in_list_uses_index_path() -> None:
    assert str(refuse("stages: [{x: 1}, {x: _}]")).startswith("stages.1.x: incomplete value _")


def test_ambiguous_disjunction_is_incomplete() -> None:
    assert str(refuse("a: 1 | 2")).startswith("a: incomplete value 1 | 2")


def test_empty_disjunction() -> None:
    assert str(refuse("a: (1 | 2) & 3")).startswith("a: ")


def test_missing_reference_reports_static_path() -> None:
    err = refuse("target: src: path: #SRC_PATH")
    assert str(err).startswith('target.src.path: reference "#SRC_PATH" not found')
    assert err.locations == (Location("spec.cue", 1, 20),)


def test_missing_reference_in_unused_definition() -> None:
    assert str(refuse("#T: x: nope\na: 1")).startswith('#T.x: reference "nope" not found')


def test_field_not_allowed_in_closed_definition() -> None:
    err = refuse("#A: {x: int}\nb: #A & {x: 1, y: 2}")
    assert str(err).startswith("b: field y not allowed")


def test_field_not_allowed_nested() -> None:
    err = refuse("#A: {sub: {x: int}}\nb: #A & {sub: {x: 1, y: 2}}")
    assert str(err).startswith("b.sub: field y not allowed")


def test_error_inside_referenced_definition_keeps_its_path() -> None:
    err = refuse('#P: ""\n#P: "gs://x"\nout: #P')
    assert str(err).startswith('#P: conflicting values "" and "gs://x"')


def test_reference_cycle() -> None:
    err = refuse("a: b + 1\nb: a + 1")
    assert err.path in ("a", "b")
    assert "cycle" in err.message


def test_structural_cycle() -> None:
    assert "structural cycle" in refuse("a: {b: a}").message


def test_division_by_zero() -> None:
    assert str(refuse("a: 1 / 0")).startswith("a: division by zero")
    assert str(refuse("a: div(1, 0)")).startswith("a: division by zero")


def test_undefined_field() -> None:
    assert str(refuse("a: {b: 1}\nc: a.d")).startswith("c: undefined field: d")


def test_index_out_of_range() -> None:
    assert str(refuse("l: [1]\nx: l[3]")).startswith("x: index out of range [3] with length 1")


def test_invalid_operands() -> None:
    assert str(refuse('a: 1 + "s"')).startswith("a: invalid operands 1 and \"s\" to '+'")


def test_list_length_mismatch() -> None:
    assert str(refuse("a: [1, 2] & [1]")).startswith("a: incompatible list lengths (1 and 2)")


def test_required_field_missing() -> None:
    assert str(refuse("#T: {a!: int}\nx: #T")).startswith("x.a: field is required but not present")


def test_non_bool_if_condition() -> None:
    assert "want bool" in refuse("a: [for x in [1] if 1 {x}]").message


def test_explicit_bottom() -> None:
    assert str(refuse("a: _|_")).startswith("a: explicit error")


def test_unknown_import() -> None:
    err = refuse('import "zetta.ai/pkg:x"\na: 1')
    assert err.message == 'import failed: cannot find package "zetta.ai/pkg:x"'


def test_unknown_package_member() -> None:
    assert str(refuse('import "strings"\na: strings.Nope("x")')).startswith(
        "a: undefined: strings.Nope"
    )


def test_builtin_argument_errors() -> None:
    assert str(refuse('import "list"\na: list.Min([])')).startswith("a: ")
    assert str(refuse("a: len(1)")).startswith("a: len: invalid argument 1")


def test_interpolating_a_struct() -> None:
    assert str(refuse('a: "\\(b)"\nb: {}')).startswith("a: invalid interpolation")


def test_comprehension_over_scalar() -> None:
    assert "cannot range over" in refuse("a: [for x in 3 {x}]").message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_cue(tmp_path / "absent.cue")
    assert "cannot read" in str(info.value)


def test_deeply_nested_input_is_refused_cleanly() -> None:
    err = refuse("a: " + "(" * 5000 + "1" + ")" * 5000)
    assert isinstance(err, SpecError)


def test_error_str_renders_path_then_locations() -> None:
    err = refuse("x: 1\nx: 2")
    lines = str(err).splitlines()
    assert lines[0].startswith("x: conflicting values")
    assert lines[1:] == ["    spec.cue:1:4", "    spec.cue:2:4"]


def test_empty_disjunction_lists_each_failure() -> None:
    err = refuse('#A: {type: "a" | "b"}\nx: #A & {type: "c"}')
    assert str(err).startswith("x.type: 2 errors in empty disjunction")
    assert 'conflicting values "c" and "a"' in err.message
    assert 'conflicting values "c" and "b"' in err.message


def test_conflict_in_unused_top_level_definition() -> None:
    assert str(refuse("#A: 1 & 2\na: 3")).startswith("#A: conflicting values 1 and 2")


def test_ambiguous_struct_disjunction_is_incomplete() -> None:
    assert "incomplete value" in refuse("x: y.z\ny: {z: 1} | {z: 2}").message
