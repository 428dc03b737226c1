"""Loaded CUE specs know the file position of every value, for error messages."""

from __future__ import annotations

from pathlib import Path

from specflow.spec import load_spec_with_source
from specflow.spec.cue import loads_cue_with_positions


def test_positions_follow_references_into_definitions() -> None:
    text = ('#FN: {\n'
            '\t"@type": "echo"\n'
            '\tmessage: "hi"\n'
            '}\n'
            'stages: [#FN, {x: 1}]\n'
            'top: 3\n')
    value, positions = loads_cue_with_positions(text, "s.cue")
    assert value == {"stages": [{"@type": "echo", "message": "hi"}, {"x": 1}], "top": 3}
    assert positions["top"] == (6, 6)
    assert positions["stages[0].message"][0] == 3  # written in the definition
    assert positions["stages[1].x"][0] == 5


def test_source_map_of_a_cue_file(tmp_path: Path) -> None:
    f = tmp_path / "s.cue"
    f.write_text('a: {\n\tb: [1, {c: "x"}]\n}\n')
    _, source = load_spec_with_source(f)
    assert str(source.locate("a.b[1].c")) == f"{f}:2:13"
    assert str(source.locate("a.b[1].c.missing")) == f"{f}:2:13"
