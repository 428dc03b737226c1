"""Types registered with an opt-in build only when the caller grants it."""

from __future__ import annotations

import pickle

import pytest

from specflow import SpecError, build, register
from specflow.builder import unregister
from specflow.builder.check import check_spec


def test_opt_in_types_need_the_grant() -> None:
    @register("test.evaluates", opt_in="eval")
    def evaluates(text: str) -> str:
        return text.upper()

    try:
        spec = {"outer": [{"@type": "test.evaluates", "text": "a"}]}
        with pytest.raises(SpecError) as err:
            build(spec)
        assert err.value.path == "outer[0].@type" and "--allow-eval" in str(err.value)
        assert build(spec, opt_ins={"eval"}) == {"outer": ["A"]}
        with pytest.raises(SpecError, match="--allow-eval"):
            build(spec, opt_ins={"shell"})
        problems = check_spec(spec, opt_ins=frozenset())
        assert [p.path for p in problems] == ["outer[0].@type"]
        assert check_spec(spec) == []  # without opt_ins, check_spec does not judge them
    finally:
        unregister("test.evaluates")


def test_unknown_opt_in_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown opt_in"):
        register("test.bad", opt_in="network")


def test_shell_and_lambda() -> None:
    with pytest.raises(SpecError, match="--allow-shell"):
        build({"@type": "shell", "command": "true"})
    fn = build({"@type": "lambda", "lambda_str": "lambda data: data * 3"}, opt_ins={"eval"})
    assert fn(2) == 6
    again = pickle.loads(pickle.dumps(fn))
    assert again(5) == 15 and again.__specflow_id__() == fn.__specflow_id__()
    with pytest.raises(SpecError, match="must start with 'lambda'"):
        build({"@type": "lambda", "lambda_str": "print(1)"}, opt_ins={"eval"})
