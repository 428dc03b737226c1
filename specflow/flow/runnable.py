"""Whether a built spec is something a run can execute, said as a spec error."""

from __future__ import annotations

from typing import Any

from specflow.flow.core import Flow, FlowSchema
from specflow.flow.task import Task
from specflow.spec.errors import SpecError

_RUNNABLE = "a task, a flow, or a list of them: a node with an \"@type\" naming an operation " \
    "or a flow (see `specflow types`)"


def check_runnable(target: Any, path: str = "") -> None:
    """Raise a :class:`SpecError` at the spec path of what in ``target`` is not runnable."""
    where = path or None
    if target is None:
        raise SpecError(
            "the spec is empty: there is nothing to run" if not path else
            "is empty: there is nothing to run", path=where,
            hint=f"a spec's top level is {_RUNNABLE}, or an execute node holding one as target")
    if isinstance(target, (Task, Flow, FlowSchema)):
        return
    if callable(target) and callable(getattr(target, "flow", None)):
        return
    if isinstance(target, dict):
        what = "the top level" if not path else "this"
        raise SpecError(
            f"{what} is a mapping without \"@type\", so there is nothing to run"
            + (f" (its keys: {', '.join(map(str, list(target)[:6]))})" if target else ""),
            path=where, hint=f"give it an \"@type\": a spec runs {_RUNNABLE}")
    if isinstance(target, (list, tuple)):
        if not target:
            return  # an empty list runs nothing, successfully
        for i, item in enumerate(target):
            if isinstance(item, (list, tuple)) or item is None or isinstance(item, dict):
                check_runnable(item, f"{path}[{i}]")
            elif not isinstance(item, (Task, Flow, FlowSchema)):
                raise SpecError(
                    f"is {_describe(item)}, which is not runnable", path=f"{path}[{i}]",
                    hint=f"every item of a list to run is {_RUNNABLE}")
        return
    raise SpecError(
        f"{'the spec' if not path else 'this'} is {_describe(target)}, which is not runnable",
        path=where, hint=f"a spec runs {_RUNNABLE}")


def _describe(value: Any) -> str:
    if isinstance(value, (str, int, float, bool)):
        r = repr(value)
        return f"the value {r if len(r) < 40 else r[:37] + '...'}"
    name = type(value).__name__
    return f"a {name}"


__all__ = ["check_runnable"]
