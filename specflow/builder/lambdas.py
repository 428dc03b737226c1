"""``lambda``: a function written in the spec as Python text (``"lambda data: data + 1"``).

It evaluates Python, so its type needs the ``eval`` opt-in: a spec that names it is refused
unless the run is started with ``--allow-eval``. The built function holds only its text and
compiles it on first call, in whatever process calls it, so it pickles to workers as text.
"""

from __future__ import annotations

import math
from typing import Any

from specflow.builder.registry import register


def _eval_globals(text: str = "") -> dict[str, Any]:
    import numpy

    out: dict[str, Any] = {"np": numpy, "numpy": numpy, "math": math}
    if "torch" in text:  # as zetta: torch for lambdas that name it (a numpy stand-in without it)
        from specflow.builder.torch_standin import torch_module

        out["torch"] = torch_module()
    return out


class LambdaFn:
    """A callable built from ``lambda ...`` text, compiled lazily."""

    def __init__(self, lambda_str: str, name: str | None = None) -> None:
        self.lambda_str = lambda_str
        self.name = name
        self._fn: Any = None

    def _compiled(self) -> Any:
        if self._fn is None:
            code = compile(self.lambda_str, f"<lambda {self.name or 'from the spec'}>", "eval")
            self._fn = eval(code, _eval_globals(self.lambda_str))  # noqa: S307 - granted by --allow-eval
        return self._fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._compiled()(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {"lambda_str": self.lambda_str, "name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lambda_str = state["lambda_str"]
        self.name = state.get("name")
        self._fn = None

    def __specflow_id__(self) -> Any:
        return {"lambda_str": self.lambda_str}

    def __repr__(self) -> str:
        return f"LambdaFn({self.lambda_str!r})"


@register("lambda", opt_in="eval")
def build_lambda(lambda_str: str, name: str | None = None) -> LambdaFn:
    """A function from Python text (``lambda src: src + 1``); needs ``--allow-eval``.

    numpy is available as ``np``; arrays are (C, X, Y, Z)."""
    if not lambda_str.lstrip().startswith("lambda"):
        raise ValueError(f"lambda_str must start with 'lambda', got {lambda_str!r}")
    return LambdaFn(lambda_str, name)
