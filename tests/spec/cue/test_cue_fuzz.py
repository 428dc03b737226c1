"""Random and mutated CUE text: the evaluator either answers or raises SpecError, nothing else."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specflow.spec.cue import loads_cue
from specflow.spec.errors import SpecError

SEEDS = [
    "a: b: c: 1\nd: a.b.c + 1",
    '#T: {n: int, s: "v\\(n)"}\nx: #T & {n: 2}',
    "xs: [1, 2, 3]\nys: [for x in xs if x > 1 {x * 2}]",
    'import "list"\nr: list.Range(0, 4, 1)\nm: list.Min(r)',
    'import "math"\np: math.Pow(2, 3)\nc: math.Ceil(7 / 2)',
    'import "strings"\nj: strings.Join(["a", "b"], "-")',
    "a: *1 | 2\nb: bool | *true\nc: _ | *[]",
    "[string]: int\nx: 1\ny: 2",
    "let v = 3\nout: {k: v, if v > 2 {big: true}}",
    '#A: {x: int, ...}\nb: #A & {x: 1, y: "s"}',
    's: """\n    multi\n    line\n    """\nr: #"raw \\(x)"#',
    "a: 0x1F + 0b11 + 0o7 + 1_000 + 2Ki\nf: 1.5e3 / 4",
    'm: {a: 1, b: 2}\nl: [for k, v in m {"\\(k)": v}]',
    "#S: [{z: 1}, {z: 2}]\nlast: #S[len(#S)-1].z",
    'x: >=0 & <10\nx: 5\ny: =~"^a" & "ab"',
    "a: [1, 2] + [3]\nb: [0] * 2\nc: 7 div 2\nd: mod(7, 2)",
    "if true {\n  a: 1\n}\nb: close({c: 1})",
    "#D: a: int\n#D: b: int\nv: #D & {a: 1, b: 2}",
    'A="a-b": 1\nc: A\ns: [N=string]: {n: N}\ns: x: {}',
]

ALPHABET = st.sampled_from(
    list("ab#_:{}[]()\"'\\,.|&*+-/<>=!?1.0xe \n\t") + ["for", "if", "let", "in", "..."]
)


def _check(text: str) -> None:
    try:
        out = loads_cue(text, "fuzz.cue")
    except SpecError as e:
        assert str(e)
        return
    json.dumps(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_random_text_never_crashes(text: str) -> None:
    _check(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALPHABET, max_size=40).map("".join))
def test_random_tokens_never_crash(text: str) -> None:
    _check(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "swap", "duplicate"]))
        i = draw(st.integers(0, max(len(text) - 1, 0)))
        if op == "delete" and text:
            j = draw(st.integers(i, min(len(text), i + 3)))
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(ALPHABET) + text[i:]
        elif op == "swap" and len(text) > 1:
            j = draw(st.integers(0, len(text) - 1))
            chars = list(text)
            chars[i], chars[j] = chars[j], chars[i]
            text = "".join(chars)
        elif op == "duplicate":
            j = draw(st.integers(i, min(len(text), i + 10)))
            text = text[:j] + text[i:j] + text[j:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_specs_never_crash(text: str) -> None:
    _check(text)


def test_seeds_are_valid() -> None:
    for seed in SEEDS:
        if "b: #A & {x: 1, y" in seed:
            assert loads_cue(seed)["b"] == {"x": 1, "y": "s"}
        else:
            assert isinstance(loads_cue(seed), dict | list)
